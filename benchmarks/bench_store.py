"""Reading faces from the memory-mapped image store vs decoding JPEGs with Pillow every epoch.

    python benchmarks/bench_store.py                 # 10,000 images, 112 px, about 3 minutes on 2 cores
    python benchmarks/bench_store.py --n 1000 --no-record   # a quick look

For each source size it writes ``--n`` JPEGs (synthetic faces from
``make_synthetic_faces``, each with its own brightness, contrast, shift and
noise so no two files are alike) in AgeDB naming into a temporary folder, runs
``prepare`` on them once, and then times one epoch of shuffled batches of 64:

* store: ``store[batch_index]`` -> uint8 [64, 3, S, S];
* Pillow: open, decode, square and resize each JPEG of the batch (``load_face``)
  and stack them, in one thread and in ``--workers`` threads.

Results are printed and written to benchmarks/store.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from agekit.data import make_synthetic_faces
from agekit.data.prepare import load_face, prepare
from agekit.data.store import ImageStore

RECORD = Path(__file__).with_name("store.md")


def write_jpegs(folder: Path, n: int, source_size: int, seed: int = 0) -> list[Path]:
    """n distinct JPEGs of side ``source_size`` in AgeDB naming, from a small pool of synthetic faces."""
    pool = make_synthetic_faces(n=min(n, 96), image_size=112, seed=seed)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        face = pool.images[i % len(pool.images)].permute(1, 2, 0).numpy().astype(np.float32)
        face = face * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20) + rng.normal(0, 3, face.shape)
        face = np.roll(face, tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
        image = Image.fromarray(np.clip(face, 0, 255).astype(np.uint8))
        if source_size != 112:
            image = image.resize((source_size, source_size), Image.Resampling.BICUBIC)
        age = int(pool.ages[i % len(pool.ages)])
        path = folder / f"{i}_Person{i // 8}_{age}_{'mf'[int(pool.genders[i % len(pool.genders)])]}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def epoch_store(store: ImageStore, order: torch.Tensor, batch: int) -> float:
    start = time.perf_counter()
    for first in range(0, len(order), batch):
        images = store[order[first : first + batch]]
    assert images.dtype == torch.uint8
    return time.perf_counter() - start


def epoch_pillow(paths: list[Path], order: torch.Tensor, batch: int, size: int, pool=None) -> float:
    decode = lambda i: load_face(paths[i], size)  # noqa: E731
    start = time.perf_counter()
    for first in range(0, len(order), batch):
        index = order[first : first + batch].tolist()
        faces = list(pool.map(decode, index)) if pool else [decode(i) for i in index]
        images = torch.from_numpy(np.stack(faces))
    assert images.shape[1:] == (3, size, size)
    return time.perf_counter() - start


def bench(n: int, size: int, source_size: int, batch: int, epochs: int, workers: int, scratch: Path) -> dict:
    folder = scratch / f"jpeg{source_size}"
    paths = write_jpegs(folder, n, source_size)
    jpeg_bytes = sum(p.stat().st_size for p in paths)
    start = time.perf_counter()
    prepare("agedb", folder, scratch / f"store{source_size}", image_size=size, workers=workers, progress=False,
            verbose=False)
    prepare_s = time.perf_counter() - start
    store = ImageStore.open(scratch / f"store{source_size}")
    generator = torch.Generator().manual_seed(0)
    store_times = [epoch_store(store, torch.randperm(n, generator=generator), batch) for _ in range(epochs)]
    order = torch.randperm(n, generator=generator)
    pillow_1 = epoch_pillow(paths, order, batch, size)
    with ThreadPoolExecutor(workers) as pool:
        pillow_n = epoch_pillow(paths, order, batch, size, pool)
    return {
        "source": source_size, "jpeg_mb": jpeg_bytes / 2**20, "store_mb": store.data_path.stat().st_size / 2**20,
        "prepare_s": prepare_s, "store_first_s": store_times[0], "store_best_s": min(store_times),
        "pillow_1_s": pillow_1, "pillow_n_s": pillow_n, "n": n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--source-sizes", type=int, nargs="+", default=[112, 250])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="store epochs (Pillow runs one; it is slow)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-record", action="store_true", help="do not write benchmarks/store.md")
    args = parser.parse_args()
    args.load_before = os.getloadavg()[0]
    torch.set_num_threads(max(1, args.workers))

    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for source_size in args.source_sizes:
            result = bench(args.n, args.size, source_size, args.batch, args.epochs, args.workers, Path(scratch))
            results.append(result)
            n = result["n"]
            print(
                f"source {source_size} px: prepare {result['prepare_s']:.1f} s once; per epoch: store "
                f"{result['store_best_s']:.2f} s ({n / result['store_best_s']:,.0f} img/s), Pillow 1 thread "
                f"{result['pillow_1_s']:.1f} s ({n / result['pillow_1_s']:,.0f} img/s), Pillow {args.workers} threads "
                f"{result['pillow_n_s']:.1f} s ({n / result['pillow_n_s']:,.0f} img/s)",
                flush=True,
            )
    if not args.no_record:
        RECORD.write_text(record(results, args), encoding="utf-8")
        print(f"wrote {RECORD}")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def record(results: list[dict], args) -> str:
    command = "python benchmarks/bench_store.py " + " ".join(sys.argv[1:])
    lines = [
        "# Image store vs JPEG decoding",
        "",
        f"- command: `{command.strip()}`",
        f"- machine: {os.cpu_count()}-core CPU ({cpu_model()}), "
        f"{platform.system()}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"Pillow {Image.__version__}",
        f"- date: {datetime.date.today().isoformat()}; load average (1 min) before / after the run: "
        f"{args.load_before:.1f} / {os.getloadavg()[0]:.1f} (other processes share the cores)",
        f"- {results[0]['n']:,} images stored at {args.size} px, one epoch = every image once in shuffled "
        f"batches of {args.batch}; store time is the best of {args.epochs} epochs (file in the page cache)",
        "",
        "| source JPEG | JPEG files | store file | prepare (once) | store epoch | store img/s "
        f"| Pillow epoch, 1 thread | img/s | Pillow epoch, {args.workers} threads | img/s | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        n = r["n"]
        lines.append(
            f"| {r['source']} px | {r['jpeg_mb']:.0f} MiB | {r['store_mb']:.0f} MiB | {r['prepare_s']:.1f} s "
            f"| {r['store_best_s']:.2f} s | {n / r['store_best_s']:,.0f} | {r['pillow_1_s']:.1f} s "
            f"| {n / r['pillow_1_s']:,.0f} | {r['pillow_n_s']:.1f} s | {n / r['pillow_n_s']:,.0f} "
            f"| {min(r['pillow_1_s'], r['pillow_n_s']) / r['store_best_s']:.0f}x |"
        )
    lines += [
        "",
        "Speed-up = the faster Pillow epoch / the store epoch. The first store epoch after preparing took "
        + ", ".join(f"{r['store_first_s']:.2f} s ({r['source']} px)" for r in results)
        + ". A store larger than RAM is read from disk instead of the page cache and is then bound by the "
        "disk's random-read speed; the JPEG path pays the decoding on top of that.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

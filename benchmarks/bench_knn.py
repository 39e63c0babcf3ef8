"""Benchmark: agekit's k-NN (L1, k = 20) against scikit-learn brute force and faiss-cpu exact L1.

    python benchmarks/bench_knn.py            # 5,000 queries x 50,000 gallery x 70 dims; gallery up to 1,000,000
    python benchmarks/bench_knn.py --quick    # 500 x 5,000, a smoke run (no record)

The task is Jeong et al. 2018, Section 2.5: each query's age is the mean age of its 20
nearest gallery embeddings under the L1 distance (70 dims, the paper's N_a). Contenders,
run in turn in one process with the same thread count:

* ours: ``agekit.knn.knn_predict`` as installed with faiss-cpu: faiss's exact L1 candidates (k + 2
  per query), re-ranked by ``torch.cdist(p=1)``; queries whose k-th place is within rounding of the
  last candidate go through the torch path;
* ours, torch only: the same call with ``AGEKIT_KNN=torch`` (chunks of queries, ``torch.cdist(p=1)``,
  ``topk``), what agekit does without faiss-cpu;
* scikit-learn: ``KNeighborsRegressor(n_neighbors=20, metric="manhattan", algorithm="brute")``,
  fit + predict, threads limited with ``threadpoolctl``;
* faiss-cpu: ``IndexFlat(d, METRIC_L1)``, add + search, then the mean of the neighbours' ages,
  threads set with ``faiss.omp_set_num_threads``.

All three must find the same neighbours: their sorted distances are compared (float32 sums
in different orders differ in the last bits, and exact ties may be ordered differently).
scikit-learn and faiss-cpu are needed only here (``pip install -e '.[bench]'``).
Writes ``benchmarks/knn.md`` and ``benchmarks/knn.png``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _alternate import alternate, cores, growth, header, save_figure  # noqa: E402

from agekit._io import atomic_write_text  # noqa: E402
from agekit.knn import DEFAULT_MEMORY_MB, chunk_rows, knn_neighbours, knn_predict  # noqa: E402

K = 20
DIM = 70
RECORD = Path(__file__).with_name("knn.md")
PLOT = Path(__file__).with_name("knn.png")
TARGET_VS_SKLEARN = 3.0


def make_data(queries: int, gallery: int, seed: int = 0):
    """Uniform float32 embeddings and whole ages 1-80 (seed 0)."""
    rng = np.random.default_rng(seed)
    query = rng.random((queries, DIM), dtype=np.float32)
    bank = rng.random((gallery, DIM), dtype=np.float32)
    ages = rng.integers(1, 81, size=gallery).astype(np.float32)
    return query, bank, ages


def _status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def peak_rss(run) -> tuple[object, float | None]:
    """(run(), peak resident set above the one before it, MiB); None where Linux's counter cannot be reset."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset VmHWM to the current RSS
    except OSError:
        return run(), None
    before = _status_mib("VmRSS")
    result = run()
    return result, max(0.0, _status_mib("VmHWM") - before)


def contenders(query, bank, ages, threads: int):
    """name -> a call returning predicted ages [m] (float64), each at ``threads`` threads."""
    import faiss
    from sklearn.neighbors import KNeighborsRegressor
    from threadpoolctl import threadpool_limits

    q, g, a = torch.from_numpy(query), torch.from_numpy(bank), torch.from_numpy(ages)

    def ours():
        torch.set_num_threads(threads)
        return knn_predict(q, g, a, k=K).double().numpy()

    def ours_torch_only():
        torch.set_num_threads(threads)
        os.environ["AGEKIT_KNN"] = "torch"
        try:
            return knn_predict(q, g, a, k=K).double().numpy()
        finally:
            del os.environ["AGEKIT_KNN"]

    def sklearn_brute():
        with threadpool_limits(limits=threads):
            model = KNeighborsRegressor(n_neighbors=K, metric="manhattan", algorithm="brute", n_jobs=threads)
            return model.fit(bank, ages).predict(query).astype(np.float64)

    def faiss_flat():
        faiss.omp_set_num_threads(threads)
        index = faiss.IndexFlat(DIM, faiss.METRIC_L1)
        index.add(bank)
        _, found = index.search(query, K)
        return ages[found].astype(np.float64).mean(axis=1)

    return {"ours": ours, "ours, torch only": ours_torch_only, "scikit-learn": sklearn_brute, "faiss-cpu": faiss_flat}


def neighbour_check(query, bank, threads: int) -> dict:
    """Compare the three contenders' k nearest distances and sets (not timed)."""
    import faiss
    from sklearn.neighbors import NearestNeighbors
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    index, distance = knn_neighbours(torch.from_numpy(query), torch.from_numpy(bank), k=K + 1)
    ties = int((distance[:, K - 1] == distance[:, K]).sum())
    index, distance = index[:, :K].numpy(), distance[:, :K].double().numpy()
    with threadpool_limits(limits=threads):
        sk_distance, sk_index = NearestNeighbors(n_neighbors=K, metric="manhattan", algorithm="brute").fit(
            bank).kneighbors(query)
    faiss.omp_set_num_threads(threads)
    flat = faiss.IndexFlat(DIM, faiss.METRIC_L1)
    flat.add(bank)
    fa_distance, fa_index = flat.search(query, K)
    out = {"boundary_ties": ties}
    for name, (other_distance, other_index) in {"scikit-learn": (sk_distance, sk_index),
                                                  "faiss-cpu": (fa_distance, fa_index)}.items():
        gap = np.abs(np.sort(other_distance.astype(np.float64), axis=1) - distance)
        same = sum(set(x) == set(y) for x, y in zip(index.tolist(), other_index.tolist()))
        out[name] = {"max_distance_gap": float(gap.max()), "relative_gap": float((gap / distance.clip(1e-12)).max()),
                     "same_sets": same}
    return out


def kernels(query, bank, threads: int, repeats: int) -> dict:
    """Exact L1 distance blocks alone (no top-k), alternately: G terms |x - y| per second (min)."""
    import faiss

    q, g = torch.from_numpy(query), torch.from_numpy(bank)
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)

    def blocked(rows: int = 8, columns: int = 2048):
        # a hand-blocked torch kernel: broadcast |x - y| over tiles small enough for the cache
        out = torch.empty(q.shape[0], g.shape[0])
        for i in range(0, q.shape[0], rows):
            for j in range(0, g.shape[0], columns):
                out[i:i + rows, j:j + columns] = (q[i:i + rows, None] - g[None, j:j + columns]).abs_().sum(-1)
        return out

    def faiss_pairwise():
        return faiss.pairwise_distances(query, bank, faiss.METRIC_L1)

    times, results = alternate({"torch.cdist(p=1)": lambda: torch.cdist(q, g, p=1),
                                "hand-blocked torch broadcast": blocked,
                                "faiss pairwise_distances (L1)": faiss_pairwise}, repeats)
    reference = results["torch.cdist(p=1)"].double()
    work = query.shape[0] * bank.shape[0] * DIM
    return {name: (work / min(seconds) / 1e9, float((torch.as_tensor(results[name]).double() - reference).abs().max()))
            for name, seconds in times.items()}


def cpu_flags() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    return ", ".join(flag for flag in ("avx2", "fma", "avx512f") if flag in flags) or "no AVX2"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 x 5,000, print only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="threads for every contender (torch's default)")
    args = parser.parse_args(argv)
    import faiss
    import sklearn

    threads = args.threads or torch.get_num_threads()
    queries, gallery = (500, 5_000) if args.quick else (5_000, 50_000)
    scale_queries = 100 if args.quick else 200
    scale_sizes = [5_000, 20_000] if args.quick else [10_000, 30_000, 100_000, 300_000, 1_000_000]
    load_before = os.getloadavg()

    query, bank, ages = make_data(queries, gallery)
    runs = contenders(query, bank, ages, threads)
    tiny = contenders(query[:2], bank[:100], ages[:100], threads)
    for run in tiny.values():  # load the code and thread pools before memory is read
        run()
    peaks = {}
    for name, run in runs.items():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        _, peaks[name] = peak_rss(run)
        peaks[name] = (peaks[name], resource.getrusage(resource.RUSAGE_SELF).ru_utime - usage.ru_utime)
    times, results = alternate(runs, args.repeats)
    check = neighbour_check(query, bank, threads)
    rates = kernels(query[:100], bank, threads, args.repeats)
    prediction_gap = {name: float(np.abs(results[name] - results["ours"]).max()) for name in results}

    scale = {name: [] for name in runs}
    for size in scale_sizes:
        s_query, s_bank, s_ages = make_data(scale_queries, size, seed=1)
        scale_times, _ = alternate(contenders(s_query, s_bank, s_ages, threads), 1)
        for name in runs:
            scale[name].append(scale_times[name][0])
    load_after = os.getloadavg()

    work = queries * gallery * DIM  # |x - y| terms summed
    ours, plain, sk, fa = (min(times[name]) for name in ("ours", "ours, torch only", "scikit-learn", "faiss-cpu"))
    vs_sklearn, vs_faiss = sk / ours, fa / ours
    chunk = chunk_rows(gallery)
    lines = header("k-NN age estimation (L1, k = 20): agekit vs scikit-learn and faiss-cpu",
                   load_before, load_after, threads,
                   f", scikit-learn {sklearn.__version__}, faiss-cpu {faiss.__version__}, numpy {np.__version__}")
    lines += [
        f"Task: for each of {queries:,} queries, the mean age of its {K} nearest neighbours among "
        f"{gallery:,} gallery rows, {DIM} dims, L1; uniform float32 data, whole ages 1-80, seed 0.",
        "Contenders alternately in one process, each at the same thread count: `knn_predict` (default memory",
        f"budget {DEFAULT_MEMORY_MB:g} MiB: chunks of {chunk} queries, one {chunk} x {gallery:,} float32 distance block",
        f"= {chunk * gallery * 4 / 2**20:.0f} MiB at a time); `KNeighborsRegressor(n_neighbors=20, metric=\"manhattan\",",
        "algorithm=\"brute\")` fit + predict under `threadpoolctl`; faiss `IndexFlat(70, METRIC_L1)` add + search",
        "+ mean of the ages.",
        "",
        f"## {queries:,} x {gallery:,} x {DIM} ({args.repeats} repeats)",
        "",
        "| contender | min | median | abs-diff terms per second (min) | peak RSS, first call "
        "| CPU time (user, all threads), first call |",
        "|---|---|---|---|---|---|",
        *[f"| {name} | {min(times[name]):.2f} s | {statistics.median(times[name]):.2f} s | "
          f"{work / min(times[name]) / 1e9:.2f} G/s | "
          f"{'n/a' if peaks[name][0] is None else f'+{peaks[name][0]:.0f} MiB'} | {peaks[name][1]:.2f} s |"
          for name in runs],
        "",
        f"- speed-up over scikit-learn brute force: {vs_sklearn:.2f}x (min), "
        f"{statistics.median(times['scikit-learn']) / statistics.median(times['ours']):.2f}x (median); "
        f"target >= {TARGET_VS_SKLEARN:.0f}x: **{'met' if vs_sklearn >= TARGET_VS_SKLEARN else 'not met'}**",
        f"- against faiss-cpu exact L1: ours takes {ours / fa:.2f}x its time (min), "
        f"{statistics.median(times['ours']) / statistics.median(times['faiss-cpu']):.2f}x (median); target at least as fast: "
        f"**{'met' if vs_faiss >= 1.0 else 'not met'}** (ours is faiss's search plus the re-ranking that makes its answer "
        "the torch path's, bit for bit)",
        f"- without faiss-cpu (torch only): {sk / plain:.2f}x scikit-learn's speed (min), {plain / fa:.2f}x faiss-cpu's time",
        f"- same neighbours: largest gap between sorted k-nearest distances, ours vs scikit-learn "
        f"{check['scikit-learn']['max_distance_gap']:.1e} (relative {check['scikit-learn']['relative_gap']:.1e}), "
        f"vs faiss-cpu {check['faiss-cpu']['max_distance_gap']:.1e} (relative {check['faiss-cpu']['relative_gap']:.1e}); "
        f"identical neighbour sets: {check['scikit-learn']['same_sets']:,} and {check['faiss-cpu']['same_sets']:,} "
        f"of {queries:,} queries ({check['boundary_ties']} queries have an exact tie at the {K}th place)",
        f"- largest difference of predicted ages from ours: scikit-learn {prediction_gap['scikit-learn']:.2g}, "
        f"faiss-cpu {prediction_gap['faiss-cpu']:.2g} years",
        "",
        "## Where the limit is",
        "",
        "All are exact brute force: m x g x d terms |x - y| summed, nothing skipped. The column",
        "'abs-diff terms per second' is that work over the time. faiss-cpu runs a hand-written SIMD loop",
        "per (query, gallery) pair; `torch.cdist(p=1)`, the fastest exact L1 kernel in torch on a CPU,",
        "reaches the rate shown for 'ours, torch only' (its top-k and chunking cost little beside it). L1 has no",
        "matrix-multiply form (L2 has one, which is why L2 search is much faster), so torch alone cannot",
        "close the gap to faiss-cpu; that is why agekit takes faiss's candidates when faiss-cpu is installed",
        "and keeps the torch path (exact, bounded in memory, runs on a GPU) as the reference it must equal.",
        "",
        f"The distance kernels alone, 100 queries x {gallery:,} rows x {DIM} dims, {threads} threads, "
        f"min of {args.repeats} (CPU SIMD: {cpu_flags()}):",
        "",
        "| kernel | G terms/s | largest difference from cdist |",
        "|---|---|---|",
        *[f"| {name} | {rate:.2f} | {gap:.1e} |" for name, (rate, gap) in rates.items()],
        "",
        f"## Scale: {scale_queries} queries, gallery up to {scale_sizes[-1]:,} (one run each, memory bounded by the chunk)",
        "",
        "| gallery | ours | ours, torch only | scikit-learn | faiss-cpu | torch path's chunk |",
        "|---|---|---|---|---|---|",
        *[f"| {size:,} | {scale['ours'][i]:.2f} s | {scale['ours, torch only'][i]:.2f} s | {scale['scikit-learn'][i]:.2f} s "
          f"| {scale['faiss-cpu'][i]:.2f} s | {chunk_rows(size)} queries |" for i, size in enumerate(scale_sizes)],
        "",
        "Growth with the gallery size (least-squares log-log slope, 1 = linear): "
        + ", ".join(f"{name} {growth(scale_sizes, scale[name]):.2f}" for name in runs) + ". Plot: `benchmarks/knn.png`.",
        "",
    ]
    if max(load_before[0], load_after[0]) > cores():
        lines.append(f"**The machine was busy** (1-minute load above its {cores()} cores): wall times are inflated "
                     "and contenders that use more threads lose most; rerun on an idle machine before reading the targets.")
    text = "\n".join(lines)
    print(text)
    if args.quick:
        return
    atomic_write_text(RECORD, text)
    plot(scale_sizes, scale, scale_queries, PLOT)
    print(f"wrote {RECORD} and {PLOT}")


def plot(sizes, scale, queries, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for name, seconds in scale.items():
        axis.plot(sizes, seconds, "o-", label=name)
    first = scale["ours"][0]
    axis.plot(sizes, [first * size / sizes[0] for size in sizes], "k:", label="linear (from ours' first point)")
    axis.set(xscale="log", yscale="log", xlabel=f"gallery rows ({queries} queries, 70 dims, k = 20)",
             ylabel="time (s)", title="k-NN (L1, exact): time vs gallery size")
    axis.legend()
    save_figure(figure, path)
    plt.close(figure)


if __name__ == "__main__":
    main()

"""``agekit data synth``: synthetic faces written as a prepared data set.

The layout is that of ``data_scripts/prepare.py``. The faces are drawn by
``make_synthetic_faces`` and saved as lossless PNG files named in AgeDB's layout,
``{k}_person{identity}_{age}_{m|f}.png``; then ``agekit.data.prepare.prepare`` turns
that folder into ``manifest.csv``, the image store and an identity-disjoint split,
exactly as it does a real data set. So ``agekit train --data DIR/manifest.csv``,
``agekit eval --data ...`` and ``agekit.data.prepare.load_prepared`` read it like any
prepared data set, and with ``--png`` the PNG files stay in ``DIR/faces/`` for
``agekit predict``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from agekit.cli._parser import add_command

SYNTH_EXAMPLES = (
    "agekit data synth --out D --n 240 --size 24            # a smoke-sized set",
    "agekit data synth --out runs/synth --n 2000 --size 64 --png --preview",
)
PNG_FOLDER = "faces"
PREVIEW_COLUMNS = 8
PREVIEW_ROWS = 2  # faces per gender and column


def add_data_commands(subparsers) -> None:
    """Register ``agekit data synth``."""
    from agekit.config import DIFFICULTIES

    data = add_command(subparsers, "data", "make data sets")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    synth = add_command(data_sub, "synth", "write synthetic aging faces as a prepared data set", SYNTH_EXAMPLES,
                        "Write synthetic aging faces as a prepared data set, the layout data_scripts/prepare.py\n"
                        "writes: manifest.csv (an identity-disjoint 60/20/20 split), the image store images.u8 +\n"
                        "images.json, prepare.json, skipped.csv; and faces.pt, the tensors, for\n"
                        "agekit.data.synthetic.load_synthetic_faces.")
    synth.add_argument("--out", required=True, metavar="DIR", help="output folder")
    synth.add_argument("--n", type=int, metavar="N", default=2000, help="number of faces")
    synth.add_argument("--size", type=int, metavar="S", default=64, help="image side in pixels")
    synth.add_argument("--seed", type=int, metavar="K", default=0, help="random seed of the faces and of the split")
    synth.add_argument("--difficulty", default="standard", choices=DIFFICULTIES, help="how hard the faces are")
    synth.add_argument("--png", action="store_true",
                       help=f"also keep every face as DIR/{PNG_FOLDER}/{{k}}_person{{id}}_{{age}}_{{m|f}}.png")
    synth.add_argument("--preview", action="store_true",
                       help="also write preview.png: faces by age (columns) and gender (rows)")
    synth.set_defaults(handler=_data_synth)


def png_name(k: int, identity: int, age: int, gender: int) -> str:
    """AgeDB's file-name layout ``{image_id}_{Name}_{age}_{m|f}``.

    ``png_name(7, 3, 41, 1)`` -> ``"00007_person0003_41_f.png"`` (face 7, person 3, 41 years, female).
    """
    return f"{k:05d}_person{identity:04d}_{age}_{'f' if gender == 1 else 'm'}.png"


def write_pngs(faces, folder: Path) -> list[Path]:
    """Every face as a lossless PNG named by :func:`png_name` in a new ``folder``; returns the paths.

    The files are plain writes: the caller writes into a temporary folder and renames the whole
    folder into place, so no half-written set is ever seen under its final name.
    """
    from PIL import Image

    folder.mkdir(parents=True)
    pixels = faces.images.permute(0, 2, 3, 1).numpy()
    paths = []
    for k, (age, gender, person) in enumerate(zip(faces.ages.tolist(), faces.genders.tolist(),
                                                  faces.identities.tolist())):
        paths.append(folder / png_name(k, person, age, gender))
        Image.fromarray(pixels[k]).save(paths[-1], format="PNG")
    return paths


def preview_ages(ages, genders, columns: int = PREVIEW_COLUMNS, rows: int = PREVIEW_ROWS) -> list[int]:
    """Up to ``columns`` ages, youngest to oldest, each held by at least ``rows`` faces of both genders.

    A preview column labelled with one of them shows faces of exactly that age
    (``face_grid`` picks the faces nearest the column's age). ``[]`` when no age qualifies.
    """
    import torch

    held = [torch.unique(ages[genders == g], return_counts=True) for g in (0, 1)]
    enough = [set(values[counts >= rows].tolist()) for values, counts in held]
    candidates = sorted(enough[0] & enough[1])
    if len(candidates) <= columns:
        return candidates
    picks = {candidates[round(i * (len(candidates) - 1) / (columns - 1))] for i in range(columns)}
    return sorted(picks)


def _data_synth(args) -> int:
    from agekit.data.prepare import MANIFEST_NAME, prepare
    from agekit.data.synthetic import make_synthetic_faces, preview_grid, save_synthetic_faces

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; give a folder.")
    faces = make_synthetic_faces(n=args.n, image_size=args.size, seed=args.seed, difficulty=args.difficulty)
    out.mkdir(parents=True, exist_ok=True)
    written = {"faces": save_synthetic_faces(faces, out)}
    with tempfile.TemporaryDirectory(dir=out, prefix=".synth-") as scratch:
        pngs = Path(scratch) / PNG_FOLDER
        write_pngs(faces, pngs)
        origin = (f"agekit data synth --n {args.n} --size {args.size} --seed {args.seed} "
                  f"--difficulty {args.difficulty}")  # the PNG folder is temporary
        summary = prepare("agedb", pngs, out, image_size=args.size, seed=args.seed, progress=False, verbose=False,
                          source=origin)
        if args.png:
            kept = out / PNG_FOLDER
            if kept.exists():
                shutil.rmtree(kept)  # an earlier run's faces: they are not in this manifest
            os.replace(pngs, kept)
            written["png"] = kept
    written["manifest"] = out / MANIFEST_NAME
    if args.preview:
        ages = preview_ages(faces.ages, faces.genders)
        if ages:
            written["preview"] = preview_grid(out / "preview.png", faces=faces, ages=ages, rows_per_gender=PREVIEW_ROWS)
        else:
            print(f"agekit: warning: no preview: no age has {PREVIEW_ROWS} faces of each gender; use a larger --n",
                  file=sys.stderr)
    print(summary.describe())
    for what, path in written.items():
        print(f"{what}: {path}")
    return 0

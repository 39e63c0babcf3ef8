"""The ``agekit`` command line.

    agekit data synth --out DIR --n N --size S --seed K [--difficulty D] [--preview]

Every error the user can cause (bad value, missing file) ends in one clear line on
stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import sys


class UserError(Exception):
    """An error caused by the command's input; printed as one line."""


def _add_data_commands(subparsers) -> None:
    data = subparsers.add_parser("data", help="make or inspect data sets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    synth = data_sub.add_parser("synth", help="write a synthetic aging-faces data set to disk")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--n", type=int, default=2000, help="number of faces (default 2000)")
    synth.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--difficulty", default="standard", choices=["easy", "standard", "hard"])
    synth.add_argument("--preview", action="store_true", help="also write preview.png, faces by age and gender")
    synth.set_defaults(handler=_data_synth)


def _data_synth(args) -> int:
    from agekit.data.synthetic import write_synthetic_dataset

    written = write_synthetic_dataset(
        args.out, n=args.n, image_size=args.size, seed=args.seed, difficulty=args.difficulty, preview=args.preview
    )
    for what, path in written.items():
        print(f"{what}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agekit", description="Face-based age estimation: RAPL and a Siamese baseline.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_data_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (UserError, ValueError, TypeError, FileNotFoundError, PermissionError) as error:
        print(f"agekit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("agekit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

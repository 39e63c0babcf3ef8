"""Prepare a real face data set you already have for agekit.

    python data_scripts/prepare.py --format agedb --root ~/data/AgeDB --out runs/data/agedb

writes OUT/manifest.csv, the image store (OUT/images.u8 + OUT/images.json),
OUT/skipped.csv and OUT/prepare.json. Formats and what --root must hold are
listed by --help; the details are in agekit/data/formats.py and the README.
Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from agekit.data.formats import FORMATS
from agekit.data.prepare import DEFAULT_AGE_RANGE, SPLIT_MODES, prepare


def build_parser() -> argparse.ArgumentParser:
    layouts = "\n".join(
        f"  {name:14s} {spec.layout}  (splits: {', '.join(spec.split_modes)})" for name, spec in FORMATS.items()
    )
    parser = argparse.ArgumentParser(
        description="Prepare a face data set: manifest.csv + memory-mapped image store.",
        epilog="formats:\n" + layouts,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--format", required=True, choices=sorted(FORMATS), help="the data set's layout")
    parser.add_argument("--root", required=True, help="folder holding the data set (MORPH: or its CSV)")
    parser.add_argument("--out", required=True, help="output folder (created if needed)")
    parser.add_argument("--size", type=int, default=112, help="side S of the stored square faces (default 112)")
    parser.add_argument(
        "--split", default="identity", choices=SPLIT_MODES,
        help="identity: identity-disjoint age-stratified 60/20/20 (default); rank: CACD ranks; "
        "predefined: the data set's own split",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    parser.add_argument("--min-age", type=int, default=DEFAULT_AGE_RANGE[0], help="youngest age kept (default 0)")
    parser.add_argument("--max-age", type=int, default=DEFAULT_AGE_RANGE[1], help="oldest age kept (default 120)")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: CPU count, at most 8)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            prepare(
                args.format, args.root, args.out, image_size=args.size, split=args.split, seed=args.seed,
                age_range=(args.min_age, args.max_age), workers=args.workers, progress=not args.no_progress,
            )
        except KeyboardInterrupt:
            print(f"interrupted: temporary files removed; {args.out} keeps its previous result, if any.",
                  file=sys.stderr)
            return 130
        except (ValueError, TypeError, OSError, ImportError) as error:
            if args.debug:
                raise
            print(f"error: {error}", file=sys.stderr)
            return 2
        finally:
            for warning in caught:
                print(f"warning: {warning.message}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``agekit`` command line.

    agekit data synth --out DIR [--n N] [--size S] [--seed K] [--difficulty D] [--png] [--preview]
    agekit train --data DIR/manifest.csv --preset smoke --out runs/rapl [--method rapl] [--variant EVR+RAPL+GP]
                 [--config FILE] [--set key=value ...] [--epochs N] [--seed S] [--resume] [--device auto]
    agekit eval --checkpoint runs/rapl/best.pt [--data MANIFEST] [--split test] [--json]
    agekit predict --checkpoint runs/rapl/best.pt face1.jpg face2.png [--json]
    agekit grade SUBMISSION.ipynb ... --out DIR [--timeout S] [--full] [--no-run] [--lesson NN] [--jobs N]
    agekit convert rapl-authors agedb.pt runs/authors_agedb.pt --ages-from datalists/agedb.csv

``torchrun --nproc_per_node N -m agekit train ...`` trains on N processes.

Building the parser and answering ``--help`` or a wrong argument import no torch:
each command imports what it needs when it runs. Every error the user can cause
(bad value, missing file) ends in one clear line on stderr and exit status 2,
never a traceback; a mistyped command, option or ``--set`` key gets a "did you
mean". One module per command group: ``data`` (synth), ``runs`` (train, eval,
predict), ``convert``.
"""

from __future__ import annotations

import argparse
import sys

from agekit.cli._parser import Parser, UserError, add_command
from agekit.cli.convert import add_convert_commands
from agekit.cli.data import add_data_commands
from agekit.cli.runs import add_run_commands
from agekit.course import add_course_command
from agekit.grade import add_grade_command

EXAMPLES = """examples:
  agekit data synth --out D --n 240 --size 24 --png
  agekit train --data D/manifest.csv --preset smoke --out R
  agekit eval --checkpoint R/best.pt --data D/manifest.csv
  agekit predict --checkpoint R/best.pt D/faces/*.png
  agekit train --help                 # the presets, and every setting --set can change
"""

# the examples of the commands other modules define (course, grade)
_MORE_EXAMPLES = {
    "course": ["agekit course --fast", "agekit course --only 01 06", "agekit course --student ~/agekit-lessons"],
    "grade": ["agekit grade submissions/*.ipynb --out grades/", "agekit grade hw.ipynb --out grades/ --no-run"],
}


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; imports no torch."""
    from agekit import __version__

    parser = Parser(prog="agekit", description="Face-based age estimation: RAPL and a Siamese baseline.",
                    epilog=EXAMPLES)
    parser.add_argument("--version", action="version", version=f"agekit {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    add_data_commands(subparsers)
    add_run_commands(subparsers)
    add_convert_commands(subparsers)
    add_course_command(subparsers)
    add_grade_command(subparsers)
    for name, lines in _MORE_EXAMPLES.items():
        subparsers.choices[name].epilog = "examples:\n" + "".join(f"  {line}\n" for line in lines)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean bad input (printed as one line); the trainer's only once it is loaded."""
    from agekit._io import WriteError

    errors = (UserError, ValueError, TypeError, FileNotFoundError, PermissionError, WriteError)
    if "torch" in sys.modules:  # a command that trains has run: its divergence error is the user's to fix
        from agekit.training.trainer import TrainingDiverged

        errors += (TrainingDiverged,)
    return errors


def main(argv: list[str] | None = None) -> int:
    """``agekit ...``: parse ``argv`` (default ``sys.argv[1:]``), run the command, return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("agekit: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if not isinstance(error, _user_errors()):
            raise
        print(f"agekit: error: {error}", file=sys.stderr)
        return 2


__all__ = ["Parser", "UserError", "add_command", "build_parser", "main"]

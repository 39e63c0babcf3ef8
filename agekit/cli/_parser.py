"""The command line's parser: help with examples and defaults, and "did you mean" for typing mistakes.

Standard library only, so that ``agekit --help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import difflib


class UserError(Exception):
    """An error caused by the command's input; printed as one line."""


def did_you_mean(word: str, options) -> str:
    """``" (did you mean 'train'?)"`` for the nearest of ``options``, or ``""`` when none is near."""
    close = difflib.get_close_matches(word, [str(o) for o in options], n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks; adds ``(default: X)`` to every option whose help does not say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = not (default is None or default is False or default == [] or default == argparse.SUPPRESS)
        if shown and action.option_strings and "default" not in text:
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that suggests the nearest command, choice or option and shows the right usage.

    An unknown option is reported with the usage of the (sub)command it was given to.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)
        self.set_defaults(_parser=self)  # the deepest (sub)command parsed wins, so errors show its usage

    def _check_value(self, action: argparse.Action, value) -> None:
        if action.choices is not None and value not in action.choices:
            name = argparse._get_action_name(action) or "command"
            choices = ", ".join(map(str, action.choices))
            raise argparse.ArgumentError(
                None, f"argument {name}: invalid choice {value!r}{did_you_mean(value, action.choices)}; "
                      f"choose from {choices}")

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = getattr(parsed, "_parser", self)
            options = [o for action in parser._actions for o in action.option_strings]
            hints = "".join(did_you_mean(e.partition("=")[0], options) for e in extras if e.startswith("-"))
            parser.error(f"unrecognized arguments: {' '.join(extras)}{hints}")
        return parsed


def add_command(subparsers, name: str, help: str, examples=(), description: str | None = None) -> Parser:
    """A subcommand with its one-line ``help``, a description and an ``examples:`` epilog."""
    epilog = "examples:\n" + "".join(f"  {line}\n" for line in examples) if examples else None
    return subparsers.add_parser(name, help=help, description=description or help[:1].upper() + help[1:] + ".",
                                 epilog=epilog)

"""What every ``replibatch`` subcommand shares: the one-line error and the way it prints.

Nothing here imports pandas or the simulator: the parser and ``--help`` are built from these.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["CliError", "Subcommand", "error", "first_line", "positive", "say"]


class CliError(Exception):
    """A problem to report as one line and exit with `code` (2: the command, 1: the run)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class Subcommand(Protocol):
    """A module of ``replibatch._cli`` that adds one subcommand (see ``main.SUBCOMMANDS``).

    ``add_parser`` adds its parser to `subparsers` and sets the default ``handler``: a function
    ``(argparse.Namespace) -> int`` returning the exit code or raising `CliError`. It must not
    import pandas, matplotlib or the simulator (``replibatch --help`` builds every parser).
    """

    def add_parser(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...


def error(message: str) -> None:
    """Print `message` as the command's one-line error on stderr."""
    print(f"replibatch: error: {message}", file=sys.stderr)


def say(message: str, quiet: bool = False) -> None:
    """Print a progress line on stdout unless `quiet`."""
    if not quiet:
        print(message, flush=True)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 300 characters), else its type name."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def positive(kind: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    """An argparse ``type=`` converting with `kind` and refusing values <= 0 or not finite
    (argparse.ArgumentTypeError naming `what`)."""

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not value > 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        return value

    return convert

"""The ``replibatch`` command line: run a file of prompts, manage the cache, start the simulator.

    replibatch run data/prompts.csv --model replibatch/tiny-llama --param temperature=0.2,0.9 \\
        --offline --out results.parquet --report report.html
    replibatch cache info
    replibatch cache clear --older-than 7d
    replibatch spend --since 7d
    replibatch sim --port 8787

Exit codes: 0 success (at least one row succeeded); 1 the run ended but nothing succeeded, or the
service refused the call; 2 a problem with the command (file, column, parameter, missing token);
130 interrupted. Errors are one line on stderr, never a traceback, never the token.

Each subcommand is a module of this package exposing ``add_parser(subparsers)`` (which sets the
``handler``); adding one is a line in `SUBCOMMANDS`. Building the parser imports no pandas,
matplotlib or simulator, so ``--help`` and ``cache info`` start fast; handlers import lazily.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from replibatch._cli import cache, run, sim, spend, train
from replibatch._cli.common import CliError, Subcommand, error

__all__ = ["SUBCOMMANDS", "CliError", "build_parser", "main"]

# In the order `replibatch --help` lists them.
SUBCOMMANDS: tuple[Subcommand, ...] = (run, train, cache, spend, sim)


def build_parser() -> argparse.ArgumentParser:
    """The ``replibatch`` argument parser with every subcommand of `SUBCOMMANDS`."""
    from replibatch import __version__

    parser = argparse.ArgumentParser(
        prog="replibatch",
        description="Run tables of prompts against Replicate models: concurrent, rate-limited, "
        "cached, with output, timing and cost columns.",
    )
    parser.add_argument("--version", action="version", version=f"replibatch {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for subcommand in SUBCOMMANDS:
        subcommand.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default ``sys.argv[1:]``); return the exit code.

    Never raises for a user error: it prints one line to stderr and returns 2 (or 1 when the run
    or the service failed, 130 on Ctrl-C).
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help, --version, or argparse's own usage error
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args))
    except CliError as exc:
        error(str(exc))
        return exc.code
    except KeyboardInterrupt:
        error("interrupted: predictions in flight were canceled; finished ones are in the cache")
        return 130


# Names this module had before the subcommands moved to their own modules, for callers that
# still import them from here; loaded on first use so that `--help` stays free of pandas.
_MOVED = {
    "OFFLINE_SIM_OPTIONS": "replibatch._cli.run",
    "OFFLINE_TOKEN": "replibatch._cli.run",
    "TOKEN_ENV": "replibatch._cli.run",
    "parse_value": "replibatch._cli.params",
    "parse_param": "replibatch._cli.params",
    "parse_duration": "replibatch._cli.params",
    "output_format": "replibatch._cli.files",
    "read_frame": "replibatch._cli.files",
    "write_frame": "replibatch._cli.files",
}


def __getattr__(name: str) -> Any:
    """A moved name (see `_MOVED`) from its new module; AttributeError for any other."""
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

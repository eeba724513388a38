"""``replibatch sim``: run the local Replicate-compatible simulator in the foreground.

The simulator keeps its own options and parser (`replibatch.sim.cli`); importing it starts
aiohttp, so the parser here only collects the words after ``sim`` and hands them over unchanged
when the command runs. ``replibatch sim --help`` is the simulator's own help.
"""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "handle"]

# A prefix no option uses: every word after `sim`, `--port` and `--help` included, is collected
# as text for the simulator's parser (argparse's REMAINDER alone drops a leading option).
_NO_PREFIX = "\0"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sim`` to the top-level subcommands."""
    sim = commands.add_parser(
        "sim",
        add_help=False,
        prefix_chars=_NO_PREFIX,
        help="run the local Replicate-compatible simulator in the foreground",
        description="Run a local Replicate-compatible API with the demo models until Ctrl-C.",
    )
    sim.add_argument("sim_argv", nargs=argparse.REMAINDER, metavar="OPTIONS",
                     help="the simulator's options: see 'replibatch sim --help'")
    sim.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C; return 0, or 2 for an option the simulator's parser refuses (it has
    printed its usage and the error)."""
    from replibatch.sim.cli import main as sim_main

    try:
        return sim_main(list(args.sim_argv), prog="replibatch sim")
    except SystemExit as exc:  # its --help (0) or its own usage error (2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2

"""``replibatch cache info`` / ``replibatch cache clear``: where the cache is, what it holds, and
removing results (all, by model or by age). Imports no pandas: ``cache info`` starts fast.
"""

from __future__ import annotations

import argparse
import sys

from replibatch._cli.common import CliError
from replibatch._cli.params import parse_duration

__all__ = ["add_parser", "handle"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cache`` (with ``info`` and ``clear``) to the top-level subcommands."""
    cache = commands.add_parser(
        "cache",
        help="show or clear the result cache",
        description="Show or clear the result cache (REPLIBATCH_CACHE_DIR overrides its place).",
    )
    cache_commands = cache.add_subparsers(dest="cache_command", metavar="ACTION")
    cache_commands.add_parser("info", help="where the cache is, what it holds, how big it is")
    clear = cache_commands.add_parser(
        "clear", help="delete cached results (all of them, or those matching the filters)"
    )
    clear.add_argument("--model", metavar="MODEL", help="only results of this model reference")
    clear.add_argument("--older-than", metavar="AGE",
                       help="only results stored longer ago than AGE: 7d, 12h, 30m or seconds")
    clear.add_argument("--yes", "-y", action="store_true",
                       help="do not ask before deleting every result (asked only on a terminal)")
    cache.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Show or clear the cache; return 0. Raises CliError without an action or for an unusable
    cache directory or a bad ``--older-than``."""
    from replibatch._store.cache import open_cache
    from replibatch.errors import ConfigurationError

    if args.cache_command is None:
        raise CliError("say what to do with the cache: 'replibatch cache info' or 'replibatch cache clear'")
    try:
        store = open_cache(True)
        assert store is not None
        if args.cache_command == "info":
            info = store.info()
            print(f"cache: {info.directory}")
            print(f"  {info.entries} result{'s' if info.entries != 1 else ''}, {info.pending} pending, "
                  f"{info.files} output file{'s' if info.files != 1 else ''}, "
                  f"{info.bytes / 1e6:.1f} MB on disk")
            for model, count in sorted(info.entries_by_model.items()):
                print(f"  {model or '(unknown model)'}: {count}")
            return 0
        older = parse_duration(args.older_than) if args.older_than is not None else None
        before = store.info()
        if args.model is None and older is None and not args.yes and _interactive():
            # Everything goes, paid results included: ask first (scripts, off a terminal, don't).
            try:
                answer = input(
                    f"delete all {before.entries} cached results and {before.files} output files "
                    f"in {store.directory}? They were paid for. [y/N] "
                )
            except EOFError:
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return 0
        removed = store.clear(model=args.model, older_than=older)
        freed = max(0, before.files - store.info().files)
    except ConfigurationError as exc:
        raise CliError(f"{exc} (set REPLIBATCH_CACHE_DIR to a writable directory)") from None
    what = []
    if args.model:
        what.append(f"of {args.model}")
    if args.older_than:
        what.append(f"older than {args.older_than}")
    print(f"removed {removed} cached result{'s' if removed != 1 else ''}"
          + (f" {' '.join(what)}" if what else "") + f" and {freed} output file"
          + ("s" if freed != 1 else "") + f" no result uses any more, from {store.directory}")
    return 0


def _interactive() -> bool:
    return bool(getattr(sys.stdin, "isatty", lambda: False)())



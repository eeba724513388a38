"""``replibatch spend``: the ledger as a table on the command line."""

from __future__ import annotations

import argparse
import math

__all__ = ["add_parser", "add_spend_parser", "handle", "spend_command"]

_BY_CHOICES = ("model", "version", "day", "token", "status", "kind")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``spend`` to the top-level subcommands."""
    spend = commands.add_parser(
        "spend",
        help="what replibatch created and what it cost, from the ledger in the cache directory",
        description="Show what replibatch created on this machine (every prediction and "
        "training, once; cached rows cost nothing) and the standing budgets.",
    )
    spend.add_argument("--since", metavar="WHEN", default=None,
                       help="only since WHEN: 7d, 24h, 90m, or an ISO date (default: everything)")
    spend.add_argument("--by", metavar="COLUMN", default="model", choices=_BY_CHOICES,
                       help=f"group by one of {', '.join(_BY_CHOICES)} (default: model)")
    spend.set_defaults(handler=handle)


add_spend_parser = add_parser  # the name before subcommands were registered by module


def handle(args: argparse.Namespace) -> int:
    """`spend_command`, its ConfigurationError (a bad ``--since``) as a CliError line."""
    from replibatch._cli.common import CliError
    from replibatch.errors import ConfigurationError

    try:
        return spend_command(args)
    except ConfigurationError as exc:
        raise CliError(str(exc)) from None


def spend_command(args: argparse.Namespace) -> int:
    """Print the grouped spend and the budgets in force. Raises ConfigurationError for a bad
    ``--since`` (the caller turns it into a one-line error)."""
    from replibatch._spend.spend import budgets_from_env, ledger_for, spend

    table = spend(since=args.since, by=args.by)
    if table.empty:
        print("nothing spent" + (f" since {args.since}" if args.since else "") + " (the ledger is empty)")
    else:
        shown = table.copy()
        shown["cost_usd"] = [_usd(v) for v in shown["cost_usd"]]
        shown["predict_s"] = [f"{v:.1f}" if not math.isnan(v) else "—" for v in shown["predict_s"]]
        print(shown.to_string())
        total = float(table["cost_usd"].sum())
        unknown = int(table["cost_unknown"].sum())
        line = f"total: {int(table['predictions'].sum())} created, {_usd(total)}"
        if unknown:
            line += f" (cost unknown for {unknown})"
        print(line)
    ledger = ledger_for(True)
    caps = ledger.budgets()
    for period, usd in budgets_from_env().items():
        caps[period] = min(usd, caps.get(period, math.inf))
    for period, cap in sorted(caps.items()):
        committed = ledger.committed(period)
        print(f"{period} budget: {_usd(cap)}, {_usd(committed)} spent or in flight, "
              f"{_usd(max(0.0, cap - committed))} left")
    return 0


def _usd(value: float) -> str:
    if value is None or math.isnan(value):
        return "—"
    if 0 < value < 0.001:  # a few cents of sweeps must not read $0.0000
        from replibatch._table.summary import format_usd

        return format_usd(value)
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


"""What the account spent, from the ledger: `spend`, and standing budgets (`set_budget`).

    rb.spend(since="7d", by="model")      # a frame: predictions, succeeded, cost_usd, ...
    rb.set_budget(daily=5.0)              # every run on this machine stops at $5 a day

Budgets are stored in the ledger beside the cache, so they hold for every notebook and process
that uses that cache directory. ``REPLIBATCH_DAILY_BUDGET`` / ``_WEEKLY_`` / ``_MONTHLY_`` add caps
from the environment (the lower of the stored and the environment's cap applies).
"""

from __future__ import annotations

import math
import os
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from replibatch._spend.ledger import SpendLedger
from replibatch._table.durations import duration_seconds
from replibatch.errors import ConfigurationError

if TYPE_CHECKING:  # pandas is imported when a frame is built, not by the command line's help
    import pandas as pd

    from replibatch._store.cache import ResultCache

__all__ = ["BUDGET_ENV", "budgets_from_env", "ledger_for", "parse_since", "set_budget", "spend"]

BUDGET_ENV = {
    "daily": "REPLIBATCH_DAILY_BUDGET",
    "weekly": "REPLIBATCH_WEEKLY_BUDGET",
    "monthly": "REPLIBATCH_MONTHLY_BUDGET",
}
_BY = ("model", "version", "day", "token", "status", "kind")
_LEDGERS: dict[Path, SpendLedger] = {}


def ledger_for(cache: Any = True) -> SpendLedger:
    """The ledger of the cache directory `cache=` names (True: the default directory, a path, or
    a ResultCache). Raises ConfigurationError for ``cache=False`` (no directory to keep it in)."""
    from replibatch._store.cache import cache_directory

    directory = cache_directory(cache)
    if directory is None:
        raise ConfigurationError("the spend ledger lives in the cache directory; cache=False has none")
    if directory not in _LEDGERS or not (directory / "ledger.db").exists():
        _LEDGERS[directory] = SpendLedger(directory)
    return _LEDGERS[directory]


def parse_since(since: Any, *, now: float | None = None) -> float | None:
    """Epoch seconds from `since`: None (everything), a number (epoch seconds), a datetime or
    date, a timedelta or a duration text (``"90m"``, ``"7d"``, ``"2w"``: that long ago), or an ISO
    date/time text. Raises ConfigurationError for anything else."""
    now = time.time() if now is None else now
    if since is None:
        return None
    if isinstance(since, bool):
        raise ConfigurationError(f"since must be a time, a duration or None, got {since!r}")
    if isinstance(since, (int, float)):
        return float(since)
    if isinstance(since, timedelta):
        return now - since.total_seconds()
    if isinstance(since, datetime):
        return since.timestamp()
    if isinstance(since, date):
        return datetime(since.year, since.month, since.day).timestamp()
    if isinstance(since, str):
        ago = duration_seconds(since, unit_required=True)
        if ago is not None:
            return now - ago
        try:
            return datetime.fromisoformat(since.strip()).timestamp()
        except ValueError:
            pass
    raise ConfigurationError(
        f"since must be a duration like '7d' / '24h', an ISO date, a datetime or epoch seconds, "
        f"got {since!r}"
    )


def budgets_from_env() -> dict[str, float]:
    """Standing caps set in the environment. Raises ConfigurationError for a value that is not
    a number of USD >= 0, naming the variable."""
    caps: dict[str, float] = {}
    for period, name in BUDGET_ENV.items():
        text = os.environ.get(name)
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if math.isnan(value) or value < 0:
            raise ConfigurationError(f"{name} must be a number of USD >= 0, got {text!r}")
        caps[period] = value
    return caps


def set_budget(
    *,
    daily: float | None = None,
    weekly: float | None = None,
    monthly: float | None = None,
    clear: bool = False,
    cache: bool | str | os.PathLike[str] | ResultCache = True,
) -> dict[str, float]:
    """Store standing caps (USD) that every run using this cache directory respects, across
    cells, notebooks and processes; return the caps now in force.

    Periods are calendar periods in local time (today, this week from Monday, this month). A
    run never starts a prediction whose worst case would pass a cap; rows not started end
    ``skipped_budget`` with the budget and what is left in the error. ``clear=True`` removes every
    stored cap first; a period not given keeps its cap. Raises ConfigurationError for a negative
    or non-numeric cap.
    """
    ledger = ledger_for(cache)
    if clear:
        for period in list(ledger.budgets()):
            ledger.set_budget(period, None)
    for period, usd in (("daily", daily), ("weekly", weekly), ("monthly", monthly)):
        if usd is not None:
            ledger.set_budget(period, usd)
    return ledger.budgets()


def spend(
    since: Any = None,
    by: str | list[str] | None = None,
    *,
    cache: bool | str | os.PathLike[str] | ResultCache = True,
) -> pd.DataFrame:
    """What replibatch created on this machine's cache directory, from the spend ledger.

    Without `by`: one row per prediction or training (``created_at`` as a local datetime, model,
    version, status, ``predict_s``, ``cost_usd``, ``cost_basis``, ``token`` fingerprint). With
    `by` (``"model"``, ``"version"``, ``"day"``, ``"token"``, ``"status"``, ``"kind"`` or a list):
    one row per group with ``predictions``, ``succeeded``, ``cost_usd`` (sum of known costs),
    ``cost_unknown`` (predictions whose cost is unknown), ``predict_s``, sorted by cost.

    Rows served from the cache are not in the ledger: they cost nothing. Raises
    ConfigurationError for an unknown `by` or an unparseable `since`.
    """
    import pandas as pd

    groups = [by] if isinstance(by, str) else list(by or [])
    unknown = [g for g in groups if g not in _BY]
    if unknown:
        raise ConfigurationError(f"by must be among {', '.join(_BY)}, got {unknown[0]!r}")
    entries = ledger_for(cache).entries(parse_since(since))
    frame = pd.DataFrame(
        {
            "created_at": pd.to_datetime(
                [e.created_at for e in entries], unit="s", utc=True
            ).tz_convert(_local_zone()),
            "kind": [e.kind for e in entries],
            "model": [e.model for e in entries],
            "version": [e.version for e in entries],
            "status": [e.status for e in entries],
            "predict_s": [_nan(e.predict_s) for e in entries],
            "cost_usd": [_nan(e.cost_usd) for e in entries],
            "cost_basis": [e.cost_basis for e in entries],
            "token": [e.token for e in entries],
            "prediction_id": [e.prediction_id for e in entries],
        }
    )
    if not groups:
        return frame
    frame["day"] = frame["created_at"].dt.strftime("%Y-%m-%d")
    grouped = frame.groupby(groups, dropna=False, sort=False)
    summary = pd.DataFrame(
        {
            "predictions": grouped.size(),
            "succeeded": grouped["status"].agg(lambda s: int((s == "succeeded").sum())),
            "cost_usd": grouped["cost_usd"].sum(min_count=0),
            "cost_unknown": grouped["cost_usd"].agg(lambda s: int(s.isna().sum())),
            "predict_s": grouped["predict_s"].sum(min_count=0),
        }
    )
    return summary.sort_values("cost_usd", ascending=False)


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _local_zone() -> Any:
    return datetime.now().astimezone().tzinfo

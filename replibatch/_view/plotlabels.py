"""The text of the plots: axis labels with units, tick labels that fit, titles' notes, and the
dollar figures on cost axes (pure: no matplotlib).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from replibatch._table.summary import format_usd

__all__ = [
    "axis_label",
    "left_out_note",
    "sentence_case",
    "short_label",
    "tick_decimals",
    "tick_label",
    "usd",
]

UNITS = {
    "latency_s": "latency (s)",
    "queue_s": "queue time (s)",
    "predict_s": "predict time (s)",
    "cost_usd": "cost (USD)",
    "time_to_first_token": "time to first token (s)",
    "tokens_per_second": "tokens per second",
    "input_token_count": "input tokens",
    "output_token_count": "output tokens",
}
_VERSIONED = re.compile(r"^(?P<name>[^:]+):(?P<version>[0-9a-f]{64})$")
MAX_LABEL = 28


def axis_label(column: str) -> str:
    """A readable axis label with units for the known result columns."""
    return UNITS.get(column, column)


def short_label(value: Any, width: int = MAX_LABEL) -> str:
    """A tick label: version hashes cut to 8 characters, long text trimmed with an ellipsis."""
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))
    elif isinstance(value, (float, np.floating)):
        text = f"{value:g}"
    else:
        text = str(value)
    match = _VERSIONED.match(text)
    if match:
        text = f"{match['name']}:{match['version'][:8]}"
    return text if len(text) <= width else text[: width - 1] + "…"


def left_out_note(dropped: int, what: str) -> str:
    """The title's second line counting rows a plot could not draw ("" when none)."""
    return f"\n({dropped} row{'s' if dropped != 1 else ''} {what} not shown)" if dropped else ""


def tick_label(value: Any) -> str:
    """`short_label`, split after the owner of a long ``owner/name`` so it fits under its tick."""
    text = short_label(value, width=60)
    owner, slash, rest = text.partition("/")
    if len(text) > 20 and slash and "\n" not in text:
        return f"{short_label(owner + slash)}\n{short_label(rest)}"
    return short_label(text)


def sentence_case(text: str) -> str:
    """`text` with its first letter capitalised (a title made of an axis label)."""
    return text[:1].upper() + text[1:]


def usd(value: float) -> str:
    """A dollar figure with the decimals its size needs (``$0.000077``)."""
    return format_usd(value)


def tick_decimals(locs: Any) -> int | None:
    """The fewest decimals (0 when every tick is whole dollars, else at least 2) that write
    every tick exactly; None when there are no finite ticks."""
    values = [float(v) for v in locs if np.isfinite(v)]
    if not values:
        return None
    scale = max(abs(v) for v in values) or 1.0
    for decimals in range(13):
        if decimals == 1:
            continue  # cents: $0.50, not $0.5
        if all(abs(v - round(v, decimals)) <= scale * 1e-9 for v in values):
            return decimals
    return 12

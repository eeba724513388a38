"""One result row as an HTML item: its output, its error and its badges, the same in every view.

The comparison's cells and the report's cards both draw a row with `row_item`; the output goes
through `MediaRenderer` (media embedded from our file store, text escaped), so there is one
renderer of outputs. Every text that comes from the frame is HTML-escaped here.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import pandas as pd

from replibatch._table.summary import format_usd
from replibatch._view.formats import finite_number, format_seconds, shorten_versions
from replibatch._view.media import MediaRenderer, is_missing

__all__ = ["param_badge", "row_badges", "row_item", "same_badge"]

_MAX_ERROR = 500  # characters of an error shown under the output


def param_badge(name: str, value: Any) -> str:
    """A ``name=value`` badge naming a parameter that tells rows in one cell apart."""
    return f'<span class="rb-badge rb-param">{html.escape(f"{name}={value}")}</span>'


def same_badge(others: Sequence[str]) -> str:
    """A "same as" badge naming the columns (labels) that hold the identical output."""
    names = [shorten_versions(o) for o in others]
    text = f"same as {names[0]}" if len(names) == 1 else f"same as {len(names)} others"
    title = "identical output in: " + ", ".join(others)
    return (
        f'<span class="rb-badge rb-same" title="{html.escape(title)}">{html.escape(text[:60])}</span>'
    )


def row_badges(row: pd.Series, *, model: bool = False, status: bool = True) -> list[str]:
    """Badges for the row's model (with `model`), status when not succeeded (with `status`),
    latency, cost (its basis as the tooltip) and cache state; figures the row lacks are left out."""
    badges = []
    name = row.get("model")
    if model and not is_missing(name):
        badges.append(f'<span class="rb-badge">{html.escape(str(name))}</span>')
    state = row.get("status")
    if status and isinstance(state, str) and state != "succeeded":
        badges.append(f'<span class="rb-badge rb-bad">{html.escape(state)}</span>')
    latency = finite_number(row.get("latency_s"))
    if latency is not None:
        badges.append(f'<span class="rb-badge" title="latency">{format_seconds(latency)}</span>')
    cost = finite_number(row.get("cost_usd"))
    if cost is not None:
        basis = row.get("cost_basis")
        title = html.escape(str(basis)) if isinstance(basis, str) else "estimated cost"
        badges.append(f'<span class="rb-badge" title="{title}">{format_usd(cost)}</span>')
    cached = row.get("cached")
    if not is_missing(cached) and bool(cached):
        badges.append('<span class="rb-badge rb-cached">cached</span>')
    return badges


def row_item(
    renderer: MediaRenderer,
    row: pd.Series,
    values: str,
    badges: Sequence[str],
    *,
    status_in_error: bool = False,
) -> str:
    """``<div class="rb-item">``: the row's `values` cell rendered, its error when it did not
    succeed (prefixed ``status:`` with `status_in_error`, which also shows the status of a row
    without an error), then `badges`."""
    parts = [renderer.render(row.get(values))]
    state = row.get("status", "succeeded")
    error = row.get("error")
    if state != "succeeded":
        if status_in_error:
            reason = f"{state}: {error}" if not is_missing(error) else str(state)
        else:
            reason = "" if is_missing(error) else str(error)
        if reason:
            parts.append(f'<div class="rb-error">{html.escape(reason[:_MAX_ERROR])}</div>')
    if badges:
        parts.append(f'<div class="rb-badges">{"".join(badges)}</div>')
    return f'<div class="rb-item">{"".join(parts)}</div>'

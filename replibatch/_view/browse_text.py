"""The browser's text: cell values as short plain text, dropdown choices in order, detail fields
formatted (pure: no widgets, no HTML).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from replibatch._table.summary import format_usd
from replibatch._view.formats import format_seconds
from replibatch._view.media import is_missing, local_path

__all__ = ["display", "format_field", "preview", "preview_ends", "sorted_choices"]


def sorted_choices(keys: list[Any]) -> list[Any]:
    """The distinct `keys`, sorted when they compare (else in order of first appearance), with
    None (missing) last."""
    distinct = list(dict.fromkeys(keys))
    present = [k for k in distinct if k is not None]
    try:
        present = sorted(present)
    except TypeError:
        pass  # mixed types: keep the order they first appear in
    return present + ([None] if None in distinct else [])


def display(value: Any) -> str:
    """Plain text for a cell: file names rather than reprs, ``40`` rather than ``40.0``."""
    if is_missing(value):
        return "—"
    if isinstance(value, float):  # also numpy floats; ints became floats in a concat with NaN
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return str(value)
    if isinstance(value, os.PathLike) or hasattr(value, "path"):
        return Path(str(getattr(value, "path", value))).name or str(value)
    if isinstance(value, str):
        path = local_path(value)
        return path.name if path is not None else value
    if isinstance(value, (list, tuple)):
        return ", ".join(display(item) for item in value)
    return str(value)


def preview(value: Any, width: int = 60) -> str:
    """`display` on one line, cut to `width` characters with an ellipsis."""
    text = " ".join(display(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def preview_ends(value: Any, width: int = 48) -> str:
    """Like `preview`, but a long text keeps its start and its end (prompts often differ only
    near the end: "Describe image 17 ..." vs "... image 71"), with an ellipsis in the middle."""
    text = " ".join(display(value).split())
    if len(text) <= width:
        return text
    head = (width - 1) * 3 // 5
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def format_field(name: str, value: Any) -> str:
    """A detail-table value: seconds and dollars formatted for the timing and cost columns."""
    if is_missing(value):
        return "—"
    if name in ("latency_s", "queue_s", "predict_s", "time_to_first_token"):
        number = float(value)
        return format_seconds(number) if math.isfinite(number) else "—"
    if name == "cost_usd":
        number = float(value)
        return format_usd(number) if math.isfinite(number) else "—"
    return display(value)


"""How the HTML views write figures and labels: seconds, finite numbers, shortened versions (pure).

Dollar figures come from `replibatch._table.summary.format_usd`, the one USD formatter.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["finite_number", "format_seconds", "shorten_versions"]

_VERSION_HASH = re.compile(r"(?<=:)([0-9a-f]{8})[0-9a-f]{56}\b")


def finite_number(value: Any) -> float | None:
    """`value` as a finite float, or None (NaN, None, text)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def format_seconds(seconds: float) -> str:
    """3 significant digits, e.g. ``0.412 s``, ``3.21 s``, ``41.2 s``."""
    return f"{seconds:.3g} s" if seconds < 1000 else f"{seconds:,.0f} s"


def shorten_versions(text: str) -> str:
    """``owner/name:<64 hex>`` -> ``owner/name:<8 hex>…`` (the full label stays in a tooltip)."""
    return _VERSION_HASH.sub(r"\1…", text)

"""Duration texts such as ``7d``, ``12h``, ``30m``, ``45s``, ``2w`` (pure; no I/O).

Shared by the command line's ``--older-than`` and ``rb.spend(since=...)`` / ``--since``.
"""

from __future__ import annotations

import re

__all__ = ["duration_seconds"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration_seconds(text: str, *, unit_required: bool = False) -> float | None:
    """Seconds in `text` (a number with an optional unit s/m/h/d/w; with `unit_required`, the
    unit must be there), or None when `text` is not such a duration. Never raises."""
    match = _DURATION.match(text)
    if not match or (unit_required and not match.group(2)):
        return None
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]

"""Which predictions one page of ``GET /v1/predictions`` holds (pure, O(log n + page)).

Real service (spec predictions.list): newest first, ``created_after`` / ``created_before``
filters, a ``next`` cursor URL; pages of 100 (the simulator's ``page_size``). Creation times are
in creation order, so a filter is a range found by bisection, and each page is a slice: paging
back through many thousands of predictions costs one small slice per page, and a filtered listing
never serves empty pages on its way to the window.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Page", "page_of"]


@dataclass(frozen=True)
class Page:
    """Positions (indices into creation order) on this page, newest first, and the cursors."""

    positions: range
    next_start: int | None  # the ``start`` of the next (older) page, None when this is the last
    previous_start: int | None  # the ``start`` of the previous (newer) page, None on the first


def page_of(
    created: Sequence[float],
    start: int | None,
    page_size: int,
    after: float | None = None,
    before: float | None = None,
) -> Page:
    """The page that begins just below position ``start`` (None: the newest).

    ``created`` are the creation times in creation order (non-decreasing). ``after`` / ``before``
    are exclusive bounds on creation time. Raises ValueError when ``page_size`` < 1.
    """
    if page_size < 1:
        raise ValueError(f"page_size must be >= 1, got {page_size!r}")
    low = 0 if after is None else bisect.bisect_right(created, after)
    high = len(created) if before is None else bisect.bisect_left(created, before)
    top = high if start is None else max(low, min(start, high))
    bottom = max(low, top - page_size)
    newer = top < high
    return Page(
        positions=range(top - 1, bottom - 1, -1),
        next_start=bottom if bottom > low else None,
        previous_start=min(high, top + page_size) if newer else None,
    )

"""When to look at a prediction in flight, and which of the due ones one look reads.

Pure policy for `replibatch._engine.poller`, in seconds of the caller's monotonic clock.

- Few watched (a GET each is cheap): look at a tenth of the age, 0.5 s to 5 s.
- Many watched and nothing of their model finished yet: look again when the age has doubled
  (0.5, 1, 2, 4 ... s, at most every 10 s), and read only a *probe page*: the oldest page's
  worth of due predictions (`probe`). The newer ones were created later for the same model and
  cannot finish much sooner; they follow the probe's schedule instead of filling pages. Before
  the first of 1,000 predictions of 65 s finishes this costs ~10 one-page looks, not ~10
  full sweeps of 10 pages.
- Once predictions of the model have finished (``completed_at - created_at``, server clock),
  a prediction is looked at when the shortest of those durations has passed since its send,
  plus a small slack (the server's clock starts after our send); overdue ones are looked at
  every 5 % of their age (0.5 s to 5 s).
"""

from __future__ import annotations

__all__ = ["FEW", "PAGE", "look_time", "next_look", "probe"]

FEW = 10  # watching at most this many: look often (a GET each is cheap)
PAGE = 100  # predictions per list page (Replicate's page size)
_MIN_INTERVAL = 0.5
_FEW_FRACTION, _FEW_CAP = 0.1, 5.0
_PROBE_FRACTION, _PROBE_CAP = 1.0, 10.0  # many, durations unknown: when the age has doubled
_OVERDUE_FRACTION, _OVERDUE_CAP = 0.05, 5.0
_SLACK_FRACTION, _SLACK_MIN, _SLACK_MAX = 0.02, 0.2, 2.0
_LATENESS_FRACTION, _MAX_LATENESS = 0.05, 2.0  # how long a due look may wait for a fuller page


def look_time(soonest: list[float], first_sent: float, watched: int) -> float:
    """When the next look is: when a page's worth is due, or when the soonest due one has
    waited its allowed lateness (5 % of its age, at most 2 s), whichever comes first. With few
    watched a GET each is cheap, so nothing waits. `soonest`: the first (up to `PAGE`) due
    times in order; `first_sent`: when the soonest one was sent."""
    first = soonest[0]
    if watched <= FEW:
        return first
    lateness = min(_MAX_LATENESS, _LATENESS_FRACTION * max(0.0, first - first_sent))
    full_page = soonest[min(len(soonest), PAGE) - 1]
    return min(first + lateness, full_page) if len(soonest) >= PAGE else first + lateness


def next_look(now: float, sent: float, watched: int, expected: float | None) -> float:
    """When to look next at a prediction sent at `sent`, with `watched` in flight and
    `expected` the shortest duration seen for its model (None: none finished yet)."""
    age = max(0.0, now - sent)
    if expected is not None:
        at = sent + expected + min(_SLACK_MAX, max(_SLACK_MIN, _SLACK_FRACTION * expected))
        if at > now:
            return at
        return now + min(_OVERDUE_CAP, max(_MIN_INTERVAL, _OVERDUE_FRACTION * age))
    if watched <= FEW:
        return now + min(_FEW_CAP, max(_MIN_INTERVAL, _FEW_FRACTION * age))
    return now + min(_PROBE_CAP, max(_MIN_INTERVAL, _PROBE_FRACTION * age))


def probe(
    due: list[tuple[str, str, float | None, bool]], watched: list[tuple[str, str, float | None]]
) -> tuple[list[str], list[str]]:
    """Which predictions one look reads, and which of the due ones it defers.

    `due`: (id, model, created, duration known) of the predictions due now; `watched`: (id,
    model, created) of every one in flight. Due ones of a model with a known duration, or
    without a creation time, are read. For a model with none known, the probe page is the
    oldest `PAGE` watched of that model (by creation time): read whole if one of them is due
    (one page costs the same however many of it are due); its other due ones are deferred.
    Returns (ids to read, due ids deferred); creation times are on any one scale.
    """
    read: list[str] = []
    unknown: dict[str, list[str]] = {}
    for pid, model, created, known in due:
        if known or created is None:
            read.append(pid)
        else:
            unknown.setdefault(model, []).append(pid)
    deferred: list[str] = []
    for model, ids in unknown.items():
        mine = sorted((c, pid) for pid, m, c in watched if m == model and c is not None)
        page = [pid for _, pid in mine[:PAGE]]
        members = set(page)
        if any(pid in members for pid in ids):
            read.extend(page)
        deferred.extend(pid for pid in ids if pid not in members)
    return read, deferred

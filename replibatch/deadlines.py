"""What a row's `timeout` becomes on the wire: ``Prefer: wait`` and ``Cancel-After`` (pure).

The client keeps the exact deadline: it stops waiting and cancels the prediction at
``sent + timeout``. Replicate gets two hints so the deadline also holds without us:

- ``Prefer: wait=N`` (OpenAPI ``parameters_prefer_header``: N a whole number 1..60) holds the
  create open at most N seconds. N is rounded DOWN so the reply never comes after the deadline;
  under one second nothing is held (the create answers at once and the row waits for the
  prediction like any other).
- ``Cancel-After`` (OpenAPI ``parameters_cancel_after_header``: a duration like ``30s``, ``5m``,
  measured from creation, minimum 5 s) makes Replicate cancel the prediction itself even if the
  kernel dies. It is the timeout rounded UP to whole seconds, at least 5 s: Replicate never
  stops a prediction the client would still wait for, and what a prediction can cost is bounded
  by `server_deadline` seconds of predict time.
"""

from __future__ import annotations

import math

__all__ = ["CANCEL_AFTER_MINIMUM", "MAX_WAIT", "cancel_after_header", "prefer_wait", "server_deadline"]

MAX_WAIT = 60
"""The longest ``Prefer: wait`` Replicate accepts, in seconds."""
CANCEL_AFTER_MINIMUM = 5.0
"""The shortest ``Cancel-After`` Replicate accepts, in seconds."""


def prefer_wait(timeout: float | None, max_wait: int = MAX_WAIT) -> int | None:
    """The N of ``Prefer: wait=N`` for a row with this timeout, or None to send no Prefer.

    Raises ValueError for a timeout that is not a positive number.
    """
    if max_wait < 1:
        return None
    if timeout is None:
        return min(MAX_WAIT, max_wait)
    if not timeout > 0 or not math.isfinite(timeout):
        raise ValueError(f"timeout must be a positive number, got {timeout!r}")
    seconds = min(max_wait, MAX_WAIT, math.floor(timeout))
    return seconds if seconds >= 1 else None


def server_deadline(timeout: float) -> float:
    """Seconds after creation at which Replicate cancels the prediction (see module docstring).

    Raises ValueError for a timeout that is not a positive number.
    """
    if not timeout > 0 or not math.isfinite(timeout):
        raise ValueError(f"timeout must be a positive number, got {timeout!r}")
    return max(CANCEL_AFTER_MINIMUM, float(math.ceil(timeout)))


def cancel_after_header(timeout: float) -> str:
    """The ``Cancel-After`` value for a timeout: whole seconds, ``5s`` at least (``90s``,
    ``3600s``; the spec's unit suffix form). Raises ValueError as `server_deadline` does."""
    return f"{int(server_deadline(timeout))}s"

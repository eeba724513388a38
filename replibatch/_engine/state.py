"""What one run knows about its predictions while it runs: in flight, unanswered, claimed."""

from __future__ import annotations

from dataclasses import dataclass, field

from replibatch._engine.reconcile import Attempt

__all__ = ["RunState"]


@dataclass
class RunState:
    """Shared by the create path, the rows and the interrupt cleanup of one run."""

    # Predictions started and not seen finish -> the cache key whose marker names them.
    in_flight: dict[str, str | None] = field(default_factory=dict)
    attempts: dict[int, Attempt] = field(default_factory=dict)  # job position -> unanswered create
    attempt_keys: dict[int, str | None] = field(default_factory=dict)
    # Job position -> fingerprint of the token an unanswered create was sent with (several
    # tokens: the interrupt sweep looks for it in that token's account).
    attempt_tokens: dict[int, str | None] = field(default_factory=dict)
    # Keys whose marker was written but whose create has not been sent (waiting for its place).
    unsent: set[str] = field(default_factory=set)
    claimed: set[str] = field(default_factory=set)  # prediction ids some row of this run owns
    shared: int = 0  # rows that share an identical row's prediction
    cached: int = 0
    invalid: int = 0  # rows the input schema refused: nothing was sent for them

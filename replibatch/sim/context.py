"""What every piece of one simulator shares, declared once: options, models, clock, dice, stores.

The gate, the prediction routes, the lifecycle, the file and catalog routes each take the one
`SimContext` of their simulator instead of re-declaring the app's attributes as mixins did. Each
piece keeps what only it uses to itself (the gate its rate-limit buckets, the lifecycle its
`PredictionBook`, the trainings their records). Everything here is touched on the server's event
loop only, except `stats` and `credit`, which lock for readers on other threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from replibatch.sim.credit import CreditAccounts
from replibatch.sim.delivery import Blob
from replibatch.sim.faults import FaultDice, SimOptions
from replibatch.sim.models import ModelRegistry
from replibatch.sim.state import Clock, FileRecord, Prediction, Stats

__all__ = ["PredictionBook", "SimContext"]


@dataclass(eq=False)
class SimContext:
    """The shared state of one simulator.

    `options` is replaced whole by `reconfigure` (it is immutable); `base_url` is set once the
    server is bound. `files` holds uploads (written by the Files API, read as file inputs);
    `blobs` holds published output files (written by predictions and trainings, served under
    ``/delivery/`` and read back as file inputs).
    """

    options: SimOptions
    registry: ModelRegistry
    stats: Stats
    clock: Clock = field(default_factory=Clock)
    dice: FaultDice = field(init=False)
    credit: CreditAccounts = field(init=False)
    base_url: str = ""
    files: dict[str, FileRecord] = field(default_factory=dict)
    blobs: dict[str, Blob] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dice = FaultDice(self.options.seed)
        self.credit = CreditAccounts(dict(self.options.credit or ()))

    def reconfigure(self, options: SimOptions) -> None:
        """Put `options` in force for credit and dice (the gate follows its own limits)."""
        old, self.options = self.options, options
        self.credit.reconfigure(dict(options.credit or ()))
        if old.seed != options.seed:
            self.dice.reseed(options.seed)


class PredictionBook:
    """Every prediction created, by id and in creation order, with the counts listings need."""

    def __init__(self) -> None:
        self._by_id: dict[str, Prediction] = {}
        self.order: list[Prediction] = []
        # Creation time of order[i] as the API writes it, for created_after / created_before.
        self.created_wall: list[float] = []
        # The same per token, for ``separate_accounts`` (each token its own account).
        self.order_by_token: dict[str | None, list[Prediction]] = {}
        self.created_wall_by_token: dict[str | None, list[float]] = {}
        self.runs: dict[str, int] = {}  # predictions created per model ref (a model's run_count)

    def __len__(self) -> int:
        return len(self.order)

    def get(self, prediction_id: str) -> Prediction | None:
        """The prediction with this id, or None."""
        return self._by_id.get(prediction_id)

    def add(self, prediction: Prediction, created_wall: float) -> None:
        """Record a new prediction. `created_wall` is never earlier than the last one's (the
        clock is monotonic), which keeps `created_wall` sorted for the listing's bisection."""
        self._by_id[prediction.id] = prediction
        self.order.append(prediction)
        self.created_wall.append(created_wall)
        self.order_by_token.setdefault(prediction.token, []).append(prediction)
        self.created_wall_by_token.setdefault(prediction.token, []).append(created_wall)
        self.runs[prediction.model.ref] = self.runs.get(prediction.model.ref, 0) + 1

    def account(self, token: str | None) -> tuple[list[Prediction], list[float]]:
        """(predictions, their creation times) in creation order that `token` created."""
        return self.order_by_token.get(token, []), self.created_wall_by_token.get(token, [])

    def unfinished(self) -> Iterator[Prediction]:
        """Predictions whose task still runs."""
        return (p for p in self.order if p.task is not None and not p.task.done())

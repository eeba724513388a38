"""What the simulator remembers about trainings: the records, created models, and counters.

Records are touched only on the server's event loop; :class:`TrainingStats` is also read from
other threads, so it guards its counters with a lock. Shapes follow the recorded traffic:
``../shared/replicate-api/cassettes/trainings-create.yaml`` (the create reply) and
``trainings-get.yaml`` (reads).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from replibatch.sim.cog import InvalidField
from replibatch.sim.models import SimModel
from replibatch.sim.state import Clock, iso
from replibatch.sim.trainers import Trainer

__all__ = ["TERMINAL", "CreatedModel", "Training", "TrainingStats"]

TERMINAL = frozenset({"succeeded", "failed", "canceled"})


@dataclass(eq=False)
class Training:
    """One training and its lifecycle state."""

    id: str
    seq: int
    model: SimModel  # the trainer version's model
    trainer: Trainer
    destination: str
    input: dict[str, Any]
    created: float
    invalid: list[InvalidField] = field(default_factory=list)
    status: str = "starting"
    logs: list[str] = field(default_factory=list)
    error: str | None = None
    output: dict[str, Any] | None = None
    started: float | None = None
    completed: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    data_removed: bool = False
    file_keys: list[str] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def to_json(self, base_url: str, clock: Clock, *, created_reply: bool = False) -> dict[str, Any]:
        """The API representation; ``created_reply`` gives the shape of the create answer."""
        if created_reply:  # cassettes/trainings-create.yaml: these keys only, prediction URLs
            api = f"{base_url}/v1/predictions/{self.id}"
            return {"id": self.id, "model": self.model.ref, "version": self.model.version_id,
                    "input": self.input, "logs": "", "error": self.error, "status": self.status,
                    "created_at": iso(clock.wall(self.created)),
                    "urls": {"cancel": f"{api}/cancel", "get": api}}
        api = f"{base_url}/v1/trainings/{self.id}"
        return {  # cassettes/trainings-get.yaml: every key, null until known
            "completed_at": iso(clock.wall(self.completed)) if self.completed is not None else None,
            "created_at": iso(clock.wall(self.created)),
            "data_removed": self.data_removed,
            "error": self.error,
            "id": self.id,
            "input": self.input,
            "logs": "".join(line + "\n" for line in self.logs) or None,
            "metrics": dict(self.metrics),
            "output": dict(self.output) if self.output is not None else None,
            "started_at": iso(clock.wall(self.started)) if self.started is not None else None,
            "status": self.status,
            "source": "api",
            "urls": {"get": api, "cancel": f"{api}/cancel"},
            "model": self.model.ref,
            "version": self.model.version_id,
            "webhook_completed": None,
        }


@dataclass(frozen=True)
class CreatedModel:
    """A model made through ``POST /v1/models`` that has no version yet."""

    owner: str
    name: str
    hardware: str
    visibility: str
    description: str | None


class TrainingStats:
    """Counters of trainings, safe to read from any thread (like :class:`~replibatch.sim.Stats`).

    ``creates_by_input`` is keyed by the canonical JSON of trainer version, destination and input.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self._creates: dict[str, int] = {}
        self._cancels = 0
        self._succeeded = 0
        self._faults: dict[str, int] = {}

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self._clear()

    def snapshot(self) -> dict[str, Any]:
        """Every counter at one instant, as plain data."""
        with self._lock:
            return {"creates": sum(self._creates.values()),
                    "creates_by_input": dict(self._creates),
                    "duplicate_creates": sum(n - 1 for n in self._creates.values()),
                    "cancels": self._cancels, "succeeded": self._succeeded,
                    "faults": dict(self._faults)}

    def count_create(self, key: str) -> None:
        with self._lock:
            self._creates[key] = self._creates.get(key, 0) + 1

    def count_cancel(self) -> None:
        with self._lock:
            self._cancels += 1

    def count_fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] = self._faults.get(kind, 0) + 1

    def count_succeeded(self) -> None:
        with self._lock:
            self._succeeded += 1

    @property
    def creates(self) -> int:
        """Trainings created (whatever became of them)."""
        with self._lock:
            return sum(self._creates.values())

    @property
    def creates_by_input(self) -> dict[str, int]:
        with self._lock:
            return dict(self._creates)

    @property
    def duplicate_creates(self) -> int:
        """Creates beyond the first for each distinct (trainer, destination, input)."""
        with self._lock:
            return sum(n - 1 for n in self._creates.values())

    @property
    def cancels(self) -> int:
        """Trainings canceled while running."""
        with self._lock:
            return self._cancels

    @property
    def faults(self) -> dict[str, int]:
        """After-create faults injected on trainings.create, by kind (drops count in the
        server's ``stats.faults`` too)."""
        with self._lock:
            return dict(self._faults)

    @property
    def succeeded(self) -> int:
        """Trainings that created a version."""
        with self._lock:
            return self._succeeded

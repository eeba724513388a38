"""What the simulator remembers: predictions, uploaded files, output files, and counters.

Predictions and stores are touched only on the server's event loop; :class:`Stats` is also read
from other threads, so it guards its counters with a lock.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from replibatch.sim.models import SimModel

__all__ = ["FileRecord", "Prediction", "Stats", "canonical_json", "iso", "new_prediction_id"]

TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})


def new_prediction_id() -> str:
    """A 26-character lowercase base32 id, like Replicate's (random, never reused across runs)."""
    return base64.b32encode(os.urandom(17)).decode().lower()[:26]


def new_file_id() -> str:
    """A file id shaped like Replicate's: base64 of a UUID string."""
    return base64.urlsafe_b64encode(str(uuid.uuid4()).encode()).decode().rstrip("=")


def iso(wall: float) -> str:
    """ISO 8601 in UTC with microseconds and Z, as the API writes timestamps."""
    return dt.datetime.fromtimestamp(wall, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace: the key of 'the same request'."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Clock:
    """Monotonic time for durations, mapped onto wall time for timestamps."""

    def __init__(self) -> None:
        self._wall0 = time.time()
        self._mono0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic()

    def wall(self, mono: float) -> float:
        return self._wall0 + (mono - self._mono0)


@dataclass(eq=False)
class Prediction:
    """One prediction and its lifecycle state."""

    id: str
    seq: int
    model: SimModel
    version: str
    input: dict[str, Any]
    created: float
    deployment: str | None = None
    reported_model: str | None = None  # the ``model`` the API names (official: internal name)
    stream: bool = False
    status: str = "starting"
    output: Any = None
    logs: str = ""
    error: str | None = None
    started: float | None = None
    completed: float | None = None
    first_output: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    data_removed: bool = False
    file_keys: list[str] = field(default_factory=list)
    token_counts: tuple[int, int] | None = None
    token: str | None = None  # who created it: charged for it (never in the JSON)
    deadline: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    updated: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def notify(self) -> None:
        """Wake stream readers waiting for new output."""
        self.updated.set()
        self.updated = asyncio.Event()

    def to_json(self, base_url: str, clock: Clock) -> dict[str, Any]:
        """The API representation, with URLs under ``base_url``.

        Key shape as recorded, not as the spec's ``required`` list says: an unfinished prediction
        has no ``output``, ``data_removed``, ``metrics``, ``completed_at`` or ``urls.web`` (every
        starting/processing body in run.yaml, run__concurrently.yaml, predictions-create.yaml);
        ``started_at`` appears once it is processing (run.yaml). A ``Prefer: wait`` reply that
        already holds partial output carries ``output`` and ``data_removed: false``
        (test_models_predictions_create_blocking[True-10].yaml). A finished one has them all;
        after retention ``output`` stays present and null (spec, predictions.get: "The `output`
        key will still be present, but it's value will be `null`").
        """
        api = f"{base_url}/v1/predictions/{self.id}"
        urls = {"cancel": f"{api}/cancel", "get": api}
        if self.stream:
            urls["stream"] = f"{base_url}/v1/streams/{self.id}"
        body: dict[str, Any] = {
            "id": self.id,
            "model": self.reported_model or self.model.ref,
            "version": self.version,
            "input": self.input,
            "logs": self.logs,
            "error": self.error,
            "status": self.status,
            "source": "api",
            "created_at": iso(clock.wall(self.created)),
            "urls": urls,
        }
        partial = isinstance(self.output, list) and bool(self.output)
        if self.terminal or partial:
            body["output"] = list(self.output) if isinstance(self.output, list) else self.output
            body["data_removed"] = self.data_removed
        if self.terminal:
            urls["web"] = f"{base_url}/p/{self.id}"
        if self.deployment is not None:
            body["deployment"] = self.deployment
        if self.deadline is not None:
            body["deadline"] = iso(clock.wall(self.deadline))
        if self.started is not None:
            body["started_at"] = iso(clock.wall(self.started))
        if self.completed is not None:
            body["completed_at"] = iso(clock.wall(self.completed))
        if self.metrics:
            body["metrics"] = dict(self.metrics)
        return body


@dataclass(eq=False)
class FileRecord:
    """A file uploaded through ``POST /v1/files``."""

    id: str
    name: str
    content_type: str
    data: bytes
    metadata: dict[str, Any]
    created: float
    sha256: str
    md5: str

    def to_json(self, base_url: str, clock: Clock) -> dict[str, Any]:
        created = clock.wall(self.created)
        return {
            "id": self.id,
            "name": self.name,
            "content_type": self.content_type,
            "size": len(self.data),
            "etag": self.md5,
            "checksums": {"sha256": self.sha256, "md5": self.md5},
            "metadata": self.metadata,
            "created_at": iso(created),
            "expires_at": iso(created + 24 * 3600),
            "urls": {"get": f"{base_url}/v1/files/{self.id}"},
        }


class Stats:
    """Counters of what the server did; safe to read from any thread.

    ``requests`` is keyed by method and route template (``"GET /v1/predictions/{prediction_id}"``);
    ``creates_by_input`` by the canonical JSON of the target (model/version/deployment) and input.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._clear()

    def _clear(self) -> None:
        self._requests: dict[str, int] = {}
        self._requests_by_token: dict[str | None, dict[str, int]] = {}
        self._creates_by_token: dict[str | None, int] = {}
        self._statuses: dict[int, int] = {}
        self._creates = 0
        self._creates_by_input: dict[str, int] = {}
        self._duplicates = 0
        self._throttled = 0
        self._cancels = 0
        self._aborted = 0
        self._throttled_creates = 0
        self._list_pages = 0
        self._downloads = 0
        self._max_in_flight = self._in_flight
        self._faults: dict[str, int] = {}

    def reset(self) -> None:
        """Zero every counter; ``in_flight`` keeps counting what is still running."""
        with self._lock:
            self._clear()

    # -- updates (server side) ---------------------------------------------------------------
    def count_request(self, route: str, token: str | None = None) -> None:
        with self._lock:
            self._requests[route] = self._requests.get(route, 0) + 1
            mine = self._requests_by_token.setdefault(token, {})
            mine[route] = mine.get(route, 0) + 1

    def count_status(self, status: int, is_create: bool = False) -> None:
        with self._lock:
            self._statuses[status] = self._statuses.get(status, 0) + 1
            if status == 429:
                self._throttled += 1
                self._throttled_creates += is_create

    def count_create(self, key: str, token: str | None = None) -> None:
        with self._lock:
            self._creates += 1
            self._creates_by_token[token] = self._creates_by_token.get(token, 0) + 1
            seen = self._creates_by_input.get(key, 0)
            self._creates_by_input[key] = seen + 1
            if seen:
                self._duplicates += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def count_finished(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def count_cancel(self) -> None:
        with self._lock:
            self._cancels += 1

    def count_aborted(self) -> None:
        with self._lock:
            self._aborted += 1

    def count_list_page(self) -> None:
        with self._lock:
            self._list_pages += 1

    def count_download(self) -> None:
        with self._lock:
            self._downloads += 1

    def count_fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] = self._faults.get(kind, 0) + 1

    # -- reads -------------------------------------------------------------------------------
    @property
    def requests(self) -> dict[str, int]:
        with self._lock:
            return dict(self._requests)

    @property
    def statuses(self) -> dict[int, int]:
        """Responses sent, by HTTP status (dropped connections are not responses)."""
        with self._lock:
            return dict(self._statuses)

    @property
    def creates(self) -> int:
        with self._lock:
            return self._creates

    @property
    def creates_by_token(self) -> dict[str | None, int]:
        """Predictions created, by the token that created each (tests: how creates spread)."""
        with self._lock:
            return dict(self._creates_by_token)

    @property
    def requests_by_token(self) -> dict[str | None, dict[str, int]]:
        """``requests`` split by the request's token (None: no token)."""
        with self._lock:
            return {token: dict(routes) for token, routes in self._requests_by_token.items()}

    @property
    def creates_by_input(self) -> dict[str, int]:
        with self._lock:
            return dict(self._creates_by_input)

    @property
    def duplicate_creates(self) -> int:
        """Creates beyond the first for each distinct input."""
        with self._lock:
            return self._duplicates

    @property
    def throttled(self) -> int:
        """429 responses served."""
        with self._lock:
            return self._throttled

    @property
    def cancels(self) -> int:
        """Predictions canceled before finishing (by a cancel request or a ``Cancel-After``
        deadline reached while processing)."""
        with self._lock:
            return self._cancels

    @property
    def throttled_creates(self) -> int:
        """429 responses served to create-prediction requests."""
        with self._lock:
            return self._throttled_creates

    @property
    def aborted(self) -> int:
        """Predictions whose ``Cancel-After`` deadline passed before they started."""
        with self._lock:
            return self._aborted

    @property
    def list_pages(self) -> int:
        """Pages of ``GET /v1/predictions`` served."""
        with self._lock:
            return self._list_pages

    @property
    def downloads(self) -> int:
        """Output-file downloads answered with their bytes (whole, or cut by a fault)."""
        with self._lock:
            return self._downloads

    @property
    def errors_after_create(self) -> int:
        """Creates answered with a gateway 5xx although the prediction was created."""
        with self._lock:
            return sum(n for k, n in self._faults.items() if k.startswith("error_after_create"))

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._max_in_flight

    @property
    def faults(self) -> dict[str, int]:
        """Faults injected, by kind (``drop``, ``drop_after_create``, ``slow``, ``error_502``,
        ``model_failure`` ...)."""
        with self._lock:
            return dict(self._faults)

    def snapshot(self) -> dict[str, Any]:
        """Every counter at one instant, as plain data."""
        with self._lock:
            return {
                "requests": dict(self._requests),
                "statuses": dict(self._statuses),
                "creates": self._creates,
                "creates_by_input": dict(self._creates_by_input),
                "duplicate_creates": self._duplicates,
                "throttled": self._throttled,
                "cancels": self._cancels,
                "aborted": self._aborted,
                "throttled_creates": self._throttled_creates,
                "list_pages": self._list_pages,
                "downloads": self._downloads,
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "faults": dict(self._faults),
            }

    def __repr__(self) -> str:
        snap = self.snapshot()
        del snap["creates_by_input"]
        return f"Stats({snap})"

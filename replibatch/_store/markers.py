"""Pending markers: the typed record of "a prediction was (or is being) created for this key",
and the lease that lets several processes share one cache without paying twice.

A marker is written before the create is sent and names, once known, the prediction id. It
carries its `Owner` (host, pid, a per-run id) and a heartbeat (``marked_at``) that the owning
run refreshes every `HEARTBEAT_S` seconds while it holds the marker:

- a marker of another run that is *live* (fresh heartbeat, and on this host a process with its
  pid still exists) is a lease: this run waits for that run's result instead of creating a
  duplicate;
- a marker whose owner is gone (``kill -9``, a crashed kernel: the pid no longer exists, or
  the heartbeat is older than `STALE_S`), or that has no owner (written before leases
  existed), is re-attached: its prediction id is fetched, or the reconcile sweep finds what
  its create made. Taking over a stale marker whose owner was only slow is still safe: both
  runs end up with the same prediction, never a second one.

One encoder for every marker write (`encode`): JSON with lone surrogates kept
(``surrogatepass``), so any input a row can hold round-trips.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The one encoder of stored JSON (entries and markers), under the name callers import from here.
from replibatch._store.sqlite import encode_json as encode

__all__ = [
    "HEARTBEAT_S",
    "STALE_S",
    "Owner",
    "PendingMarker",
    "encode",
    "is_held_elsewhere",
    "run_ended",
    "run_started",
]

HEARTBEAT_S = 5.0
STALE_S = 30.0


@dataclass(frozen=True)
class Owner:
    """Which run wrote a marker: host name, process id and a random id of the run."""

    host: str
    pid: int
    run: str

    @classmethod
    def current(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), uuid.uuid4().hex)

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "run": self.run}

    @classmethod
    def from_json(cls, value: Any) -> Owner | None:
        if not isinstance(value, Mapping):
            return None
        host, pid, run = value.get("host"), value.get("pid"), value.get("run")
        if isinstance(host, str) and isinstance(pid, int) and isinstance(run, str):
            return cls(host, pid, run)
        return None


@dataclass(frozen=True)
class PendingMarker:
    """A marker as stored: ``prediction_id`` ("" while the create is unanswered), `meta`
    (model, version, ``sent_at``, ``sent_input``), the heartbeat `marked_at` (epoch seconds)
    and the `owner` (None for markers written before leases)."""

    prediction_id: str
    meta: Mapping[str, Any] = field(default_factory=dict)
    marked_at: float = 0.0
    owner: Owner | None = None

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "prediction_id": self.prediction_id,
            "meta": dict(self.meta),
            "marked_at": self.marked_at,
        }
        if self.owner is not None:
            value["owner"] = self.owner.to_json()
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> PendingMarker:
        """Raises ValueError when `value` is not a marker."""
        pid = value.get("prediction_id") if isinstance(value, Mapping) else None
        if not isinstance(pid, str):
            raise ValueError("not a pending marker")
        meta = value.get("meta")
        marked = value.get("marked_at")
        return cls(
            pid,
            meta if isinstance(meta, Mapping) else {},
            float(marked) if isinstance(marked, (int, float)) else 0.0,
            Owner.from_json(value.get("owner")),
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    except OSError:
        return False
    return True


def is_held_elsewhere(
    marker: Mapping[str, Any] | PendingMarker,
    me: Owner,
    *,
    now: float | None = None,
    host: str | None = None,
) -> bool:
    """True when `marker` belongs to another run that is still alive (see the module docstring)."""
    if not isinstance(marker, PendingMarker):
        try:
            marker = PendingMarker.from_json(marker)
        except ValueError:
            return False
    owner = marker.owner
    if owner is None or owner.run == me.run:
        return False
    now = time.time() if now is None else now
    if now - marker.marked_at > STALE_S:
        return False
    if owner.host == (host or me.host):
        if owner.pid == me.pid:  # this process: live while that run is still going
            return owner.run in _LIVE_RUNS
        return _pid_alive(owner.pid)
    return True


_LIVE_RUNS: set[str] = set()


def run_started(owner: Owner) -> None:
    """Register a run of this process as live (its markers are leases to other runs)."""
    _LIVE_RUNS.add(owner.run)


def run_ended(owner: Owner) -> None:
    """The run is over: markers it left are re-attached by the next run, not waited on."""
    _LIVE_RUNS.discard(owner.run)

"""One account's request limits shared by every process on this machine, through the cache dir.

Two notebooks (or a notebook and a CLI run) using one token each pace themselves at the
account's rate; without coordination they send twice that and the server throttles both. A
`SharedSchedule` is a small file-locked ledger in ``<cache dir>/limits/``: one JSON file per
account and kind of request ("create", "read") holding

- ``next``: the wall-clock time of the next free send slot: each process claims a slot and
  pushes it on by its own interval (``60 / rate``), so all processes together keep one rate;
- ``paused_until``: a throttle pause one process was told to make holds for all of them;
- ``rate`` / ``rate_at``: the lowest rate a process learned lately (the others adopt it while
  it is fresh, `_RATE_FRESH` seconds).

The account is named by a fingerprint of the token and base URL (SHA-256, 16 hex digits),
never the token. The lock (``flock`` on the ledger's descriptor; a lock file where there is
none) is held for one small read and write in place (tens of microseconds), so it is taken on the event loop.
Wall-clock time is used because monotonic clocks are per process.
Any OS error (a read-only or vanished directory) turns the ledger off for this run: pacing
then falls back to the process's own limiter, as without a cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

try:  # POSIX: an advisory lock on the ledger's own descriptor costs microseconds
    import fcntl
except ImportError:  # pragma: no cover - Windows: a lock file (slower, same meaning)
    fcntl = None  # type: ignore[assignment]
from filelock import FileLock, Timeout

__all__ = ["SharedSchedule", "account_fingerprint"]

_RATE_FRESH = 120.0  # seconds a learned rate is taken by the other processes
_LOCK_TIMEOUT = 2.0  # seconds: a lock held longer means something is wrong; go on alone
_CATCH_UP = 0.1  # seconds of missed slots a late caller may still use (a small burst)
_RECORD = 256  # bytes of the ledger record


def account_fingerprint(token: str | None, base_url: str | None) -> str:
    """16 hex digits naming one account on one server (never reversible to the token)."""
    material = f"{base_url or 'https://api.replicate.com'}\n{token or ''}".encode()
    return hashlib.sha256(material).hexdigest()[:16]


@dataclass
class _State:
    next: float = 0.0
    paused_until: float = 0.0
    rate: float | None = None
    rate_at: float = 0.0


class SharedSchedule:
    """Send slots for one account and kind of request, shared across processes.

    `directory` is the cache directory; the ledger lives in its ``limits/`` folder.
    Never raises for file-system trouble: the schedule switches itself off (`enabled`).
    """

    def __init__(
        self, directory: Path | str, account: str, kind: str, *, wall: Callable[[], float] = time.time
    ) -> None:
        folder = Path(directory) / "limits"
        self._path = folder / f"{account}-{kind}.json"
        self._wall = wall
        self.enabled = True
        self._fd: int | None = None
        self._lock: FileLock | None = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if fcntl is not None:
                # One fixed-size record, read and rewritten in place under flock: measured
                # ~3 ms per claim with a lock file and an atomic rename, which at 100 creates/s
                # stalls the event loop; in place it is tens of microseconds.
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            else:  # pragma: no cover
                self._lock = FileLock(str(folder / f"{account}-{kind}.lock"), timeout=_LOCK_TIMEOUT)
        except OSError:
            self.enabled = False

    def close(self) -> None:
        """Release the ledger's file descriptor (the ledger stays on disk for the others)."""
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        self.enabled = False

    def __del__(self) -> None:
        self.close()

    def claim(self, rate_per_minute: float) -> float:
        """Take the next shared slot for one request at `rate_per_minute` (this process's
        pace); return the seconds to wait before sending (0.0: now, or ledger off)."""
        if not self.enabled:
            return 0.0
        now = self._wall()
        result = 0.0

        def update(state: _State) -> None:
            nonlocal result
            rate = rate_per_minute
            if state.rate is not None and now - state.rate_at < _RATE_FRESH:
                rate = min(rate, state.rate)
            # A caller a little late (a busy event loop) may use a slot up to _CATCH_UP in the
            # past: without that, every late wake-up would push the schedule back for good.
            slot = max(state.next, now - _CATCH_UP, state.paused_until)
            state.next = slot + 60.0 / rate
            result = max(0.0, slot - now)

        self._update(update)
        return result

    def pause(self, seconds: float) -> None:
        """Every process holds its sends for `seconds` from now (a throttle episode)."""
        until = self._wall() + seconds

        def update(state: _State) -> None:
            state.paused_until = max(state.paused_until, until)

        self._update(update)

    def learned(self, rate_per_minute: float) -> None:
        """Tell the other processes the rate this one learned (the lowest fresh one wins)."""
        now = self._wall()

        def update(state: _State) -> None:
            if state.rate is None or now - state.rate_at >= _RATE_FRESH or rate_per_minute < state.rate:
                state.rate = rate_per_minute
            state.rate_at = now

        self._update(update)

    def shared_rate(self) -> float | None:
        """The fresh rate another process learned, or None."""
        if not self.enabled:
            return None
        state = self._read()
        if state.rate is not None and self._wall() - state.rate_at < _RATE_FRESH:
            return state.rate
        return None

    def _update(self, change: Callable[[_State], None]) -> None:
        if not self.enabled:
            return
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
                try:
                    state = self._read()
                    change(state)
                    # Padded to a fixed size: a shorter record never leaves a longer one's tail.
                    os.pwrite(self._fd, json.dumps(state.__dict__).encode().ljust(_RECORD), 0)
                finally:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
                return
            assert self._lock is not None  # pragma: no cover - Windows
            with self._lock:  # pragma: no cover
                state = self._read()
                change(state)
                self._path.write_bytes(json.dumps(state.__dict__).encode().ljust(_RECORD))
        except (OSError, Timeout):
            self.enabled = False

    def _read(self) -> _State:
        try:
            # Readers outside the lock (shared_rate) may see a record being rewritten: then it
            # does not parse and counts as empty, which only loses a hint.
            data = os.pread(self._fd, _RECORD, 0) if self._fd is not None else self._path.read_bytes()
            raw = json.loads(data.strip() or b"{}")
        except (OSError, ValueError):
            return _State()
        if not isinstance(raw, dict):
            return _State()
        state = _State()
        for name in ("next", "paused_until", "rate_at"):
            value = raw.get(name)
            if isinstance(value, (int, float)):
                setattr(state, name, float(value))
        rate = raw.get("rate")
        state.rate = float(rate) if isinstance(rate, (int, float)) and rate > 0 else None
        return state

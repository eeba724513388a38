"""The spend ledger: every prediction and training replibatch created, once, across runs.

Replicate's API reports no cost, so what an account spent is only known where each prediction's
cost was computed: here. The ledger lives beside the result cache as ``ledger.db`` (plain SQLite
in WAL mode, so several notebooks and processes write it at once) and outlives ``clear_cache``.

One row per *spend entry*. An entry is opened before a create is sent (``reserve``: the worst
case the prediction may cost, so standing budgets hold across processes), bound to the
prediction once its id is known (``attach``), and closed with the actual cost when it finishes
(``finish``); an entry whose create made nothing is dropped (``release``). Rows served from the
cache never reach the ledger. A prediction id appears at most once: re-attaching to it in a later
run updates the same row.

Columns: ``entry_id``, ``prediction_id``, ``kind`` (prediction | training), ``created_at``
(epoch seconds), ``model``, ``version``, ``status`` (``reserved`` until the create answered,
``created`` while it runs, then Replicate's final status), ``predict_s``, ``cost_usd``,
``cost_basis``, ``reserved_usd``, ``token`` (a fingerprint, never the token), ``owner``
(host:pid of the process that opened it, so a dead process's reservations can be released).

Standing budgets (`Budgets`) are stored in the same file and checked by `reserve` inside one
``BEGIN IMMEDIATE`` transaction: two processes can never both take the last dollar.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from replibatch.errors import ConfigurationError

__all__ = ["LEDGER_FILE", "BudgetRefusal", "SpendEntry", "SpendLedger", "token_fingerprint"]

LEDGER_FILE = "ledger.db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
    entry_id TEXT PRIMARY KEY,
    prediction_id TEXT UNIQUE,
    kind TEXT NOT NULL,
    created_at REAL NOT NULL,
    model TEXT,
    version TEXT,
    status TEXT NOT NULL,
    predict_s REAL,
    cost_usd REAL,
    cost_basis TEXT,
    reserved_usd REAL NOT NULL DEFAULT 0,
    token TEXT,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS spend_created ON spend (created_at);
CREATE TABLE IF NOT EXISTS budgets (
    period TEXT PRIMARY KEY,
    usd REAL NOT NULL
);
"""
_OPEN_STATUSES = ("reserved", "created")
_COLUMNS = (
    "entry_id", "prediction_id", "kind", "created_at", "model", "version", "status", "predict_s",
    "cost_usd", "cost_basis", "reserved_usd", "token",
)


def token_fingerprint(token: str | None) -> str | None:
    """A short, stable name for a token that cannot be turned back into it: ``tok-`` + the first
    10 hex digits of its SHA-256. None for no token."""
    if not token:
        return None
    return "tok-" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:10]


@dataclass(frozen=True)
class SpendEntry:
    """One row of the ledger (see the module docstring for the fields)."""

    entry_id: str
    prediction_id: str | None
    kind: str
    created_at: float
    model: str | None
    version: str | None
    status: str
    predict_s: float | None
    cost_usd: float | None
    cost_basis: str | None
    reserved_usd: float
    token: str | None


@dataclass(frozen=True)
class BudgetRefusal:
    """Why `SpendLedger.reserve` refused: which standing budget, its cap and what is left."""

    period: str
    cap_usd: float
    committed_usd: float

    @property
    def left_usd(self) -> float:
        return max(0.0, self.cap_usd - self.committed_usd)

    def __str__(self) -> str:
        return (
            f"the {self.period} budget of ${self.cap_usd:.2f} is reached "
            f"(${self.committed_usd:.4f} spent or in flight, ${self.left_usd:.4f} left)"
        )


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class SpendLedger:
    """The ledger file in `directory` (the cache directory).

    Raises ConfigurationError, naming the file, when it cannot be opened or created. `clock`
    (epoch seconds) is injectable so period arithmetic is testable.
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(directory).expanduser().absolute() / LEDGER_FILE
        self._clock = clock
        self._local = threading.local()
        try:
            with self._connection() as db:
                db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise ConfigurationError(f"spend ledger {self.path} is not usable ({exc})") from None

    def __repr__(self) -> str:
        return f"SpendLedger({str(self.path)!r})"

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        db = getattr(self._local, "db", None)
        if db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        yield db

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: the database is locked for writers from its first read."""
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- writing ------------------------------------------------------------------------------

    def reserve(
        self,
        worst_case_usd: float | None,
        *,
        kind: str = "prediction",
        model: str | None = None,
        version: str | None = None,
        token: str | None = None,
        budgets: dict[str, float] | None = None,
    ) -> str | BudgetRefusal:
        """Open an entry before a create is sent; return its id, or a `BudgetRefusal` when a
        standing budget (the stored ones, plus `budgets` given for this call) would be passed.

        `worst_case_usd` is what the prediction may cost at most (None or NaN: unknown, reserved
        as 0 — a budget cannot hold against a cost it cannot bound, the caller decides whether to
        start such rows). `token` is a fingerprint (`token_fingerprint`), never a token.
        """
        amount = 0.0 if worst_case_usd is None or math.isnan(worst_case_usd) else worst_case_usd
        now = self._clock()
        with self._write() as db:
            caps = dict(self._stored_budgets(db))
            for period, usd in (budgets or {}).items():
                caps[period] = min(usd, caps.get(period, math.inf))
            for period, cap in caps.items():
                committed = self._committed(db, period_start(period, now))
                if committed + amount > cap + 1e-12:
                    return BudgetRefusal(period, cap, committed)
            entry_id = uuid.uuid4().hex
            db.execute(
                "INSERT INTO spend (entry_id, kind, created_at, model, version, status,"
                " reserved_usd, token, owner) VALUES (?, ?, ?, ?, ?, 'reserved', ?, ?, ?)",
                (entry_id, kind, now, model, version, amount, token, _owner()),
            )
        return entry_id

    def attach(self, entry_id: str, prediction_id: str, *, token: str | None = None) -> None:
        """Bind an open entry to the prediction its create made (status ``created``). If the
        prediction already has an entry (re-attached from an earlier run), this one is dropped.
        `token` (a fingerprint) names the token that created it, when the entry was reserved
        before the run knew which of its tokens would send the create."""
        with self._write() as db:
            taken = db.execute(
                "SELECT entry_id FROM spend WHERE prediction_id = ?", (prediction_id,)
            ).fetchone()
            if taken is not None and taken[0] != entry_id:
                db.execute("DELETE FROM spend WHERE entry_id = ?", (entry_id,))
                return
            db.execute(
                "UPDATE spend SET prediction_id = ?, status = 'created',"
                " token = COALESCE(?, token) WHERE entry_id = ?",
                (prediction_id, token, entry_id),
            )

    def release(self, entry_id: str) -> None:
        """Drop an entry whose create made nothing (refused, or proven never to exist)."""
        with self._write() as db:
            db.execute(
                "DELETE FROM spend WHERE entry_id = ? AND prediction_id IS NULL", (entry_id,)
            )

    def finish(
        self,
        prediction_id: str,
        *,
        status: str,
        predict_s: float | None,
        cost_usd: float | None,
        cost_basis: str | None,
        kind: str = "prediction",
        model: str | None = None,
        version: str | None = None,
        token: str | None = None,
    ) -> None:
        """Record a prediction's final status and cost. A prediction the ledger has not seen
        (created before the ledger existed, or by a run that died before attaching) is added."""
        cost = None if cost_usd is None or math.isnan(cost_usd) else float(cost_usd)
        seconds = None if predict_s is None or math.isnan(predict_s) else float(predict_s)
        with self._write() as db:
            updated = db.execute(
                "UPDATE spend SET status = ?, predict_s = ?, cost_usd = ?, cost_basis = ?,"
                " reserved_usd = 0 WHERE prediction_id = ?",
                (status, seconds, cost, cost_basis, prediction_id),
            ).rowcount
            if not updated:
                db.execute(
                    "INSERT INTO spend (entry_id, prediction_id, kind, created_at, model, version,"
                    " status, predict_s, cost_usd, cost_basis, token, owner)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (uuid.uuid4().hex, prediction_id, kind, self._clock(), model, version,
                     status, seconds, cost, cost_basis, token, _owner()),
                )

    def release_dead(self) -> int:
        """Drop ``reserved`` entries (no prediction yet) opened on this host by processes that
        are gone; return how many. Entries bound to a prediction stay: it may be billing."""
        host = socket.gethostname()
        removed = 0
        with self._write() as db:
            rows = db.execute(
                "SELECT entry_id, owner FROM spend WHERE status = 'reserved'"
            ).fetchall()
            for entry_id, owner in rows:
                owner_host, _, pid = (owner or "").rpartition(":")
                if owner_host == host and pid.isdigit() and not _pid_alive(int(pid)):
                    db.execute("DELETE FROM spend WHERE entry_id = ?", (entry_id,))
                    removed += 1
        return removed

    # -- budgets ------------------------------------------------------------------------------

    def set_budget(self, period: str, usd: float | None) -> None:
        """Store a standing cap for `period` (None removes it). Raises ConfigurationError."""
        period_start(period, self._clock())  # validates the name
        if usd is not None and (
            isinstance(usd, bool) or not isinstance(usd, (int, float)) or math.isnan(usd) or usd < 0
        ):
            raise ConfigurationError(f"a {period} budget must be a number of USD >= 0, got {usd!r}")
        with self._write() as db:
            if usd is None:
                db.execute("DELETE FROM budgets WHERE period = ?", (period,))
            else:
                db.execute(
                    "INSERT INTO budgets (period, usd) VALUES (?, ?)"
                    " ON CONFLICT(period) DO UPDATE SET usd = excluded.usd",
                    (period, float(usd)),
                )

    def budgets(self) -> dict[str, float]:
        """The stored standing caps by period."""
        with self._connection() as db:
            return dict(self._stored_budgets(db))

    def committed(self, period: str) -> float:
        """USD spent in the current `period` plus the worst case of entries still open."""
        with self._connection() as db:
            return self._committed(db, period_start(period, self._clock()))

    @staticmethod
    def _stored_budgets(db: sqlite3.Connection) -> list[tuple[str, float]]:
        return [(str(p), float(u)) for p, u in db.execute("SELECT period, usd FROM budgets")]

    @staticmethod
    def _committed(db: sqlite3.Connection, since: float) -> float:
        (total,) = db.execute(
            "SELECT COALESCE(SUM(CASE WHEN status IN (?, ?) THEN reserved_usd"
            " ELSE COALESCE(cost_usd, 0) END), 0) FROM spend WHERE created_at >= ?",
            (*_OPEN_STATUSES, since),
        ).fetchone()
        return float(total)

    # -- reading ------------------------------------------------------------------------------

    def entries(self, since: float | None = None) -> list[SpendEntry]:
        """Every entry created at or after `since` (epoch seconds; None: all), oldest first."""
        query = f"SELECT {', '.join(_COLUMNS)} FROM spend"
        params: tuple[float, ...] = ()
        if since is not None:
            query += " WHERE created_at >= ?"
            params = (since,)
        with self._connection() as db:
            rows = db.execute(query + " ORDER BY created_at, entry_id", params).fetchall()
        return [SpendEntry(*row) for row in rows]


_PERIODS = ("daily", "weekly", "monthly")


def period_start(period: str, now: float) -> float:
    """Epoch seconds at which the current `period` began, in local time: today's midnight
    (daily), Monday's midnight (weekly), the 1st of the month (monthly). Raises
    ConfigurationError for another name."""
    if period not in _PERIODS:
        raise ConfigurationError(f"budget period must be one of {', '.join(_PERIODS)}, got {period!r}")
    local = time.localtime(now)
    day_start = time.mktime((local.tm_year, local.tm_mon, local.tm_mday, 0, 0, 0, 0, 0, -1))
    if period == "daily":
        return day_start
    if period == "weekly":
        monday = time.localtime(day_start - local.tm_wday * 86400)
        return time.mktime((monday.tm_year, monday.tm_mon, monday.tm_mday, 0, 0, 0, 0, 0, -1))
    return time.mktime((local.tm_year, local.tm_mon, 1, 0, 0, 0, 0, 0, -1))

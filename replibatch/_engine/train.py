"""``rb.train`` / ``rb.atrain``: a frame of trainings, one per row, returned as a frame.

The call's flow: plan the rows (pure, `replibatch._table.training_plan`) -> resolve the trainer
once (``owner/name`` reads its latest version; ``owner/name:version`` needs no request) -> key
every row (trainer version, canonical input with files by content hash, destination) -> the
cache serves finished trainings -> markers of earlier runs are re-attached -> the rest run in
the executor (`replibatch._engine.trainings`). Ctrl-C cancels the trainings in flight on
Replicate. Options mirror ``rb.run``'s where they apply to trainings.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Hashable, Sequence
from typing import Any

import anyio
import pandas as pd

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

from replibatch._engine.bridge import run_in_thread
from replibatch._engine.runner import one_error
from replibatch._engine.training_bar import open_training_bar
from replibatch._engine.trainings import Trainer, TrainingExecutor
from replibatch._http import trainings as api
from replibatch._http.edge import Edge, resolve_token
from replibatch._spend.budget import Budget
from replibatch._spend.cost import PriceTable
from replibatch._spend.spend import budgets_from_env, ledger_for
from replibatch._spend.spendgate import SpendGate
from replibatch._spend.training_ledger import TrainingLedger
from replibatch._store.cache import ResultCache, open_cache
from replibatch._store.markers import run_ended, run_started
from replibatch._table.inputs import path_file_input
from replibatch._table.refs import parse_model_ref
from replibatch._table.schema import InputSchema, promote_files, shape_input
from replibatch._table.training_plan import (
    TrainingJob,
    assemble_trainings,
    error_training_row,
    plan_trainings,
    training_key,
    training_schema,
)
from replibatch.errors import AuthenticationError, ConfigurationError, ReplicateAPIError

__all__ = ["DEFAULT_TRAINING_CONCURRENCY", "atrain", "train"]

DEFAULT_TRAINING_CONCURRENCY = 16


def _check_options(
    concurrency: int | None, rate_limit: float | None, timeout: float | None, retries: int,
    max_cost: float | None,
) -> int:
    concurrency = DEFAULT_TRAINING_CONCURRENCY if concurrency is None else concurrency
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ConfigurationError(f"concurrency must be a whole number >= 1, got {concurrency!r}")
    for name, value in (("rate_limit", rate_limit), ("timeout", timeout), ("max_cost", max_cost)):
        if value is not None and not (
            isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        ):
            raise ConfigurationError(f"{name} must be a positive number or None, got {value!r}")
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ConfigurationError(f"retries must be a whole number >= 0, got {retries!r}")
    return concurrency


async def _resolve_trainer(edge: Edge, text: str) -> Trainer:
    """``owner/name:version`` as given; ``owner/name`` via its latest version (one GET).
    Raises ConfigurationError for another form, ReplicateAPIError when it cannot be read."""
    ref = parse_model_ref(text)
    if ref.kind == "version" and ref.owner and ref.version:
        return Trainer(f"{ref.owner}/{ref.name}", ref.version)
    if ref.kind != "model":
        raise ConfigurationError(
            f"trainer must be 'owner/name' or 'owner/name:version' (the trainings route names "
            f"the model), got {text!r}"
        )
    model = f"{ref.owner}/{ref.name}"
    latest = ((await api.get_model(edge, model)).body or {}).get("latest_version") or {}
    if not latest.get("id"):
        raise ConfigurationError(f"trainer {model} has no version to train")
    return Trainer(model, latest["id"], training_schema(latest.get("openapi_schema")))


async def _promote_paths(edge: Edge, trainer: Trainer, jobs: list[TrainingJob]) -> Trainer:
    """Strings naming local files, in the inputs the trainer's schema calls files, become files
    (keyed by content). The schema is read only when some row holds such a string."""
    if not any(isinstance(v, str) and path_file_input(v) for j in jobs for v in j.input.values()):
        return trainer
    if trainer.schema is None:
        body = (await api.get_version(edge, trainer.model, trainer.version)).body or {}
        trainer = Trainer(trainer.model, trainer.version, training_schema(body.get("openapi_schema")))
    for job in jobs:
        promoted, problems = promote_files(job.input, trainer.schema)
        if problems:
            raise ConfigurationError(f"row {job.position}: " + "; ".join(problems))
        job.input = dict(promoted)
    return trainer


async def atrain(
    df: pd.DataFrame,
    *,
    trainer: str,
    destination: str,
    inputs: Sequence[Hashable] | None = None,
    files: Sequence[Hashable] | str | None = None,
    cache: Any = True,
    refresh: bool = False,
    max_cost: float | None = None,
    timeout: float | None = None,
    retries: int = 5,
    concurrency: int | None = None,
    rate_limit: float | None = None,
    progress: bool | None = None,
    api_token: str | None = None,
    base_url: str | None = None,
    client: Any = None,
    hardware: dict[str, str] | None = None,
    prices: Any = None,
) -> pd.DataFrame:
    """Train once per row of `df`; return `df` plus the training columns. See `train`."""
    concurrency = _check_options(concurrency, rate_limit, timeout, retries, max_cost)
    if api_token is not None and not isinstance(api_token, str):
        raise ConfigurationError(f"api_token must be one token (a str), got {type(api_token).__name__}")
    plan = plan_trainings(df, destination=destination, inputs=inputs, files=files)
    table = PriceTable.default().with_overrides(prices=prices, hardware=hardware)
    store: ResultCache | None = await anyio.to_thread.run_sync(open_cache, cache)

    def gate() -> SpendGate:
        ledger = ledger_for(store if store is not None else True)
        ledger.release_dead()
        return SpendGate.for_token(ledger, resolve_token(api_token, client), budgets_from_env())

    spend_gate = await anyio.to_thread.run_sync(gate)
    edge = Edge(api_token=api_token, base_url=base_url, client=client, max_connections=concurrency + 8)
    started = time.monotonic()
    try:
        if parse_model_ref(trainer).kind != "version":
            edge.require_token()
        resolved = await _resolve_trainer(edge, trainer)
        resolved = await _promote_paths(edge, resolved, plan.jobs)
        rows, executor = await _execute(
            edge, store, resolved, plan.jobs, refresh=refresh, progress=progress,
            make=lambda bar: TrainingExecutor(
                edge=edge, store=store, trainer=resolved, prices=table, budget=Budget(max_cost),
                ledger=TrainingLedger(spend_gate), timeout=timeout, retries=retries,
                rate_limit=rate_limit, concurrency=concurrency, bar=bar, refresh=refresh,
            ),
        )
    except BaseExceptionGroup as group:
        raise one_error(group) from None
    finally:
        with anyio.CancelScope(shield=True):
            await edge.aclose()
    result = assemble_trainings(df, rows)
    costs = [c for c in result["cost_usd"] if not math.isnan(c)]
    result.attrs["replibatch"] = {
        "trainer": resolved.ref,
        "rows": len(rows),
        "succeeded": int((result["status"] == "succeeded").sum()),
        "cached": int(result["cached"].sum()),
        "creates_sent": executor.creates_sent if executor is not None else 0,
        "cost_usd": float(sum(costs)),
        "elapsed_s": time.monotonic() - started,
    }
    return result


async def _schema_of(edge: Edge, trainer: Trainer) -> InputSchema | None:
    """The trainer version's TrainingInput schema, or None when it cannot be read (the
    service validates then). Raises AuthenticationError when the token is refused."""
    try:
        body = (await api.get_version(edge, trainer.model, trainer.version)).body or {}
    except AuthenticationError:
        raise
    except ReplicateAPIError:
        return None
    return training_schema(body.get("openapi_schema"))


async def _execute(
    edge: Edge, store: ResultCache | None, trainer: Trainer, jobs: list[TrainingJob], *,
    refresh: bool, progress: bool | None, make: Any,
) -> tuple[list[dict], TrainingExecutor | None]:
    keys = [training_key(trainer.version, job.input, job.destination) for job in jobs]
    rows: list[dict | None] = [None] * len(jobs)
    if store is not None and not refresh:
        hits = await anyio.to_thread.run_sync(store.get_many, keys)
        for i, key in enumerate(keys):
            if key in hits:
                rows[i] = {**hits[key].row, "cached": True}
    todo = [i for i in range(len(jobs)) if rows[i] is None]
    if not todo:
        return [r for r in rows if r is not None], None
    edge.require_token()
    pending: dict[str, dict] = {}
    if store is not None:
        pending = await anyio.to_thread.run_sync(store.pending_many, [keys[i] for i in todo])
    fresh = [i for i in todo if keys[i] not in pending]  # a row with a marker re-attaches
    schema = trainer.schema if trainer.schema is not None or not fresh else (
        await _schema_of(edge, trainer))
    for i in fresh:
        # Checked against the trainer's TrainingInput before anything is spent: Replicate
        # would create the training and fail it at once (sim/trainings.py, replicate-python#308).
        shaped, problems = shape_input(jobs[i].input, schema)
        if problems:
            rows[i] = error_training_row("error", "invalid input: " + "; ".join(problems))
        else:
            jobs[i].input = shaped
    todo = [i for i in todo if rows[i] is None]
    bar = open_training_bar(len(jobs), len(jobs) - len(todo), progress=progress)
    executor: TrainingExecutor = make(bar)
    run_keys = keys if store is not None else [None] * len(jobs)
    seen: dict[str, int] = {}

    async def one(i: int) -> None:
        row = await executor.run_row(jobs[i], run_keys[i], pending.get(keys[i]))
        rows[i] = row
        if bar is not None:
            bar.finish_row(i, row)

    run_started(executor.owner)
    try:
        async with anyio.create_task_group() as outer:
            outer.start_soon(executor.disk.heartbeat)
            async with anyio.create_task_group() as tg:
                for i in todo:
                    if keys[i] in seen:  # identical rows share one training
                        continue
                    seen[keys[i]] = i
                    tg.start_soon(one, i)
            outer.cancel_scope.cancel()
    except BaseException:
        await executor.cancel_everything()
        raise
    finally:
        run_ended(executor.owner)
        if bar is not None:
            bar.close()
    for i in todo:
        if rows[i] is None:
            leader = rows[seen[keys[i]]]
            rows[i] = dict(leader) if leader is not None else error_training_row("error", "not run")
    return [r for r in rows if r is not None], executor


def train(df: pd.DataFrame, *, trainer: str, destination: str, **options: Any) -> pd.DataFrame:
    """Run one Replicate training per row of `df` and return `df` plus training columns.

    Each row's columns are the training's inputs (hyper-parameters, a training-data file as a
    ``pathlib.Path``, bytes or a URL; strings naming local files where the trainer's schema says
    the input is a file or in ``files=`` columns). `trainer` is ``owner/name:version`` or
    ``owner/name`` (its latest version, resolved once); `destination` is a model
    ``owner/name`` (it must exist) or a column naming one per row. Added columns:
    ``training_id``, ``status``, ``error``, ``version`` (``owner/name:id``, a reference
    ``rb.run`` accepts), ``queue_s``, ``predict_s``, ``latency_s``, ``cost_usd``,
    ``cost_basis``, ``cached``.

    Options: ``inputs`` (columns to send), ``files``, ``cache`` (True, False, a directory or a
    ResultCache), ``refresh``, ``max_cost`` (USD; each training is reserved at ``timeout`` x
    its hardware price, so it needs ``timeout`` and a known price, else the rows end
    ``skipped_budget`` saying what to pass), ``timeout`` (seconds from the create; the training
    is canceled on Replicate and ends ``timeout``), ``retries``, ``concurrency`` (default 16),
    ``rate_limit`` (creates per minute), ``progress``, ``api_token`` / ``base_url`` /
    ``client``, ``hardware`` / ``prices`` (the price table, as for ``rb.run``).

    Guarantees (README "Fine-tuning sweeps"): a finished training is served from the cache with
    no request; a row is never trained twice (a marker is on disk before each create; a run
    killed mid-way is re-attached by the next); a create whose reply was lost is reconciled
    through ``GET /v1/trainings``, never re-sent blind. Ctrl-C cancels the trainings in flight
    and re-raises KeyboardInterrupt within about 4 s. Every training is recorded once in the
    spend ledger (kind ``training``).

    Raises ConfigurationError (a ValueError) for an invalid call before anything is sent,
    AuthenticationError when the token is refused, ReplicateAPIError when the trainer cannot
    be resolved.
    """
    return run_in_thread(
        lambda: atrain(df, trainer=trainer, destination=destination, **options),
        thread_name="replibatch-train",
        canceled="the training run was canceled",
    )


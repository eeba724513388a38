"""Run a frame of jobs against Replicate: the public ``run`` and ``arun``.

`arun` validates the call, plans the frame into jobs (pure), opens the cache and the spend
gate, builds the run's `Engine` (`replibatch._engine.session`) and hands the plan to `execute`;
`run` is `arun` on a worker thread's own loop (`replibatch._engine.bridge`).

Policy for a create whose outcome is unknown (the connection dropped after the request was sent,
or a 5xx came back from a gateway): never blindly re-send (`replibatch._engine.create`).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

import anyio
import numpy as np
import pandas as pd

from replibatch._engine.bridge import run_in_thread
from replibatch._engine.clock import SYSTEM_CLOCK, Clock
from replibatch._engine.download import DEFAULT_DOWNLOAD_TIMEOUT, DEFAULT_MAX_FILE_BYTES, DownloadLimits
from replibatch._engine.execute import execute
from replibatch._engine.runsummary import RunSummary
from replibatch._engine.session import Engine, EngineOptions
from replibatch._http.edge import Edge, resolve_token
from replibatch._spend.budget import Budget
from replibatch._spend.cost import PriceTable
from replibatch._spend.spend import budgets_from_env, ledger_for
from replibatch._spend.spendgate import SpendGate
from replibatch._store.cache import ResultCache, open_cache
from replibatch._store.gc import paused as gc_paused
from replibatch._store.markers import run_ended, run_started
from replibatch._table import frame as frames
from replibatch._table.summary import summarize
from replibatch.errors import ConfigurationError

__all__ = ["DEFAULT_CONCURRENCY", "arun", "run"]

DEFAULT_CONCURRENCY = 128


def _validate_options(
    concurrency: int | None,
    rate_limit: float | None,
    timeout: float | None,
    retries: int,
    max_cost: float | None,
) -> int:
    if concurrency is None:
        concurrency = DEFAULT_CONCURRENCY
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ConfigurationError(f"concurrency must be a whole number >= 1, got {concurrency!r}")
    for name, value in (("rate_limit", rate_limit), ("timeout", timeout), ("max_cost", max_cost)):
        if value is not None and not (isinstance(value, (int, float)) and value > 0):
            raise ConfigurationError(f"{name} must be a positive number or None, got {value!r}")
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ConfigurationError(f"retries must be a whole number >= 0, got {retries!r}")
    return concurrency


def _unwrap(exc: BaseException) -> BaseException:
    """The one real error inside (nested) task-group exception groups, else the group itself."""
    while isinstance(exc, BaseExceptionGroup):
        real = [e for e in exc.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
        if len(real) != 1:
            return exc
        exc = real[0]
    return exc


async def arun(
    df: pd.DataFrame,
    model: str | None = None,
    inputs: list[str] | dict[str, str] | None = None,
    *,
    concurrency: int | None = None,
    rate_limit: float | None = None,
    cache: Any = True,
    refresh: bool = False,
    max_cost: float | None = None,
    timeout: float | None = None,
    retries: int = 5,
    progress: bool | None = None,
    live: bool | None = None,
    api_token: str | None = None,
    base_url: str | None = None,
    client: Any = None,
    hardware: dict[str, str] | None = None,
    prices: Any = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
    files: list[str] | str | None = None,
) -> pd.DataFrame:
    """Run every row of ``df`` as a Replicate prediction; return ``df`` plus result columns.

    See ``replibatch.run`` for the arguments. Raises ConfigurationError (a ValueError) for an
    invalid call before anything is sent, AuthenticationError when the token is refused.
    """
    return await _arun_with(
        df, model, inputs,
        concurrency=concurrency,
        rate_limit=rate_limit,
        cache=cache,
        refresh=refresh,
        max_cost=max_cost,
        timeout=timeout,
        retries=retries,
        progress=progress,
        live=live,
        api_token=api_token,
        base_url=base_url,
        client=client,
        hardware=hardware,
        prices=prices,
        max_file_bytes=max_file_bytes,
        download_timeout=download_timeout,
        files=files,
    )


async def _arun_with(
    df: pd.DataFrame,
    model: str | None = None,
    inputs: list[str] | dict[str, str] | None = None,
    *,
    concurrency: int | None = None,
    rate_limit: float | None = None,
    cache: Any = True,
    refresh: bool = False,
    max_cost: float | None = None,
    timeout: float | None = None,
    retries: int = 5,
    progress: bool | None = None,
    live: bool | None = None,
    api_token: str | None = None,
    base_url: str | None = None,
    client: Any = None,
    hardware: dict[str, str] | None = None,
    prices: Any = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
    files: list[str] | str | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> pd.DataFrame:
    """`arun` on the given `clock` (tests pass one that skips waits); raises as `arun`."""
    concurrency = _validate_options(concurrency, rate_limit, timeout, retries, max_cost)
    if api_token is not None and not isinstance(api_token, str):
        # Several tokens (a list, failover across accounts) are not supported yet (issue 16).
        raise ConfigurationError(
            f"api_token must be one token (a str), got {type(api_token).__name__}"
        )
    downloads = DownloadLimits(max_file_bytes, download_timeout)
    with gc_paused(len(df)):
        plan = frames.plan_jobs(df, model=model, inputs=inputs, files=files)
    table = PriceTable.default().with_overrides(prices=prices, hardware=hardware)
    store = await anyio.to_thread.run_sync(open_cache, cache)
    gate, standing = await anyio.to_thread.run_sync(
        lambda: _spend_gate(store, resolve_token(api_token, client))
    )
    started = clock.monotonic()
    edge = Edge(
        api_token=api_token, base_url=base_url, client=client, max_connections=concurrency + 16
    )
    options = EngineOptions(
        concurrency=concurrency, rate_limit=rate_limit, timeout=timeout, retries=retries,
        refresh=refresh, progress=progress, live=live, downloads=downloads,
    )
    engine = Engine(
        edge=edge, cache=store, options=options, budget=Budget(max_cost), prices=table,
        gate=gate, standing=standing, clock=clock,
    )
    run_started(engine.owner)
    try:
        rows = await execute(engine, plan)
    except BaseException as exc:
        if engine.bar is not None:
            engine.bar.close()
        real = _unwrap(exc)
        if real is exc:
            raise
        raise real from None
    finally:
        run_ended(engine.owner)
        with anyio.CancelScope(shield=True):
            await edge.aclose()
    with gc_paused(len(rows)):
        # The one place rows become the frame's columns (timeline and cache key included).
        result = frames.assemble(df, plan, [row.columns() for row in rows])
    # Client-clock epoch seconds of each row's submit and result, for the run's timeline plot;
    # numpy reads None as NaN in a float array: cached and never-sent rows have no times.
    submitted, completed = frames.TIMELINE_COLUMNS
    result[submitted] = np.array([row.submitted_at for row in rows], dtype=float)
    result[completed] = np.array([row.completed_at for row in rows], dtype=float)
    # Each row's cache key (None when it could not be keyed): ratings are stored under it.
    result[frames.CACHE_KEY_COLUMN] = pd.Series(
        [row.cache_key for row in rows], index=result.index, dtype=object
    )
    summary = RunSummary(summarize(result, clock.monotonic() - started))
    summary["invalid"] = engine.state.invalid
    creates = engine.creator.limiter
    summary["create_rate_per_minute"] = creates.ceiling_per_minute
    summary["create_rate_learned_per_minute"] = creates.rate_per_minute
    summary["throttle_episodes"] = creates.episodes
    summary["throttled"] = creates.refusals
    summary["throttled_after_first_episode"] = creates.refusals_after_first
    summary["poll"] = dataclasses.asdict(engine.poller.stats)
    summary["shared"] = engine.state.shared
    summary["spend_by_token"] = dict(engine.gate.spent_by_token)
    if engine.billing.stopped:
        summary["stopped"] = engine.billing.message()
    if engine.bar is not None:
        engine.bar.finish(summary)
    result.attrs["replibatch"] = summary
    return result


def _spend_gate(store: ResultCache | None, token: str | None) -> tuple[SpendGate, bool]:
    """The run's ledger gate (the ledger of the cache directory; with ``cache=False`` the
    default one, so standing budgets still hold) and whether a standing budget applies.
    Reservations left by processes that died are released first. Blocking: call in a thread.
    Raises ConfigurationError when the ledger cannot be opened."""
    ledger = ledger_for(store if store is not None else True)
    ledger.release_dead()
    budgets = budgets_from_env()
    return SpendGate.for_token(ledger, token, budgets), bool(budgets or ledger.budgets())


def run(df: pd.DataFrame, model: str | None = None, inputs: Any = None, **options: Any) -> pd.DataFrame:
    """Run every row of ``df`` as a Replicate prediction and return ``df`` plus result columns.

    Works in scripts and inside a running event loop (Jupyter): the run gets its own loop in a
    worker thread. Ctrl-C (or the notebook's stop button) cancels the predictions in flight on
    Replicate (those whose create was unanswered too, found by one sweep), keeps what finished
    in the cache, and re-raises KeyboardInterrupt within about 4 s whatever the number in
    flight; cancels still going continue in the background (and a script's exit waits for
    them). A confirmed cancel drops the row's marker, so the next run creates it afresh.

    Options beyond ``arun``'s common ones: ``max_file_bytes`` (default 4 GiB) caps each output
    file, ``download_timeout`` (default 1800 s) bounds each file's whole download; a file over
    either fails its row ``error`` and keeps the marker, so a re-run (with larger limits)
    re-attaches and downloads without paying again. With ``max_cost``, every prediction is
    reserved at its worst case and gets a ``Cancel-After`` deadline (see README "Cost"); the same
    holds under a standing budget (``rb.set_budget``, ``REPLIBATCH_DAILY_BUDGET``...), checked
    in the spend ledger before every create, across processes: a row it refuses ends
    ``skipped_budget`` naming the budget and what is left. Every prediction created is recorded
    once in the ledger (``rb.spend()``; the token's fingerprint only). A 402 (payment required)
    stops the run's creates: the rows not created end ``error`` saying what to do (README "Spend").

    Money guarantees (README "How it talks to Replicate"): a row's prediction is never created
    twice; a create whose reply was lost is reconciled by one sweep of the account's
    predictions; when that cannot be completed the row ends ``error`` ("create outcome
    unknown; the intent marker is kept, the next run re-attaches") instead of being re-sent.

    Raises ConfigurationError (a ValueError) for an invalid call, before anything is sent.
    """
    return run_in_thread(lambda: arun(df, model, inputs, **options))

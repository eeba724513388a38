"""Run a frame of jobs against Replicate: the public ``run`` and ``arun``.

`arun` checks the options (`RunOptions`), plans the frame into jobs (pure), opens the cache and
the spend gate, builds the run's `Engine` (`replibatch._engine.session`) on a `Clock` and hands
the plan to `execute`; `run` is `arun` on a worker thread's own loop (`replibatch._engine.bridge`).
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
from replibatch._engine.download import DEFAULT_DOWNLOAD_TIMEOUT, DEFAULT_MAX_FILE_BYTES
from replibatch._engine.execute import execute
from replibatch._engine.options import DEFAULT_CONCURRENCY, DEFAULT_RETRIES, RunOptions
from replibatch._engine.runsummary import RunSummary
from replibatch._engine.session import Engine, EngineOptions
from replibatch._engine.tokens import resolve_tokens
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

__all__ = ["DEFAULT_CONCURRENCY", "arun", "run"]

_OPTIONS_DOC = """
    Arguments:

    df
        The frame: one prediction per row (``sample`` column: repeat index).
    model
        ``owner/name``, ``owner/name:VERSION``, a 64-hex ``VERSION`` or ``deployments/owner/name``;
        default None: the frame's ``model`` column names each row's model.
    inputs
        Which columns are model inputs: a list of names, or a dict of input name -> column;
        default None: every column except the ones a run adds and ``sample``.

    Options (keyword-only):

    concurrency
        Predictions in flight at once (whole number >= 1); default 128.
    rate_limit
        Create requests per minute, a hard ceiling; default None: start at Replicate's 600/min
        and follow what the account's ``ratelimit-remaining`` headers show, backing off on 429.
    cache
        True (default): the default cache directory; False or None: no cache; a path: that
        directory; a ``ResultCache``. Succeeded rows are served from it and stored in it.
    refresh
        True: ignore cached results and overwrite them; default False.
    max_cost
        USD cap for the run; default None (no cap, spending still tracked). Every prediction is
        reserved at its worst case and sent with a ``Cancel-After`` deadline, so the cap is
        never passed; a row that cannot fit ends ``skipped_budget``.
    timeout
        Seconds per prediction, counted from its create; on expiry it is canceled on Replicate
        and the row ends ``timeout``; default None (no limit).
    retries
        Retries of a transient failure (5xx, dropped connection) per request; default 5. A 429
        is waited out and retried apart from this count.
    progress
        Show a progress bar; default None: on in a notebook and on a terminal's stderr.
    live
        In a notebook, the live view of recent rows under the bar; default None (on).
    api_token
        The Replicate token; default None: ``REPLICATE_API_TOKEN``, or the ``client``'s. Sent
        only to the API's origin, never stored or printed. A list of tokens and profile names
        (``["personal", "team"]`` reads ``REPLICATE_API_TOKEN_PERSONAL`` / ``_TEAM``) spreads
        the creates over them and sets aside one answering 401/402 (README "Spend"); an unset
        profile raises ConfigurationError before anything is sent.
    base_url
        The API's base URL; default None: ``REPLICATE_BASE_URL`` or Replicate's (the simulator's
        ``server.url`` for offline runs).
    client
        An official ``replicate`` client whose token and base URL are used; default None.
    hardware
        ``{"owner/name": "gpu-sku"}``: the hardware a model bills on, for cost; default None.
    prices
        A price table (``prices.json`` shape, or a path to one) overriding the shipped one.
    max_file_bytes
        Cap on each output file's size; default 4 GiB. A file over it fails its row ``error``
        and keeps the marker, so a re-run with a larger cap downloads it without paying again.
    download_timeout
        Seconds for each output file's whole download; default 1800; same rule when passed.
    files
        Columns whose text cells are local paths to send as files (a name or a list); default
        None (file inputs are still recognized from the model's schema).

    Returns ``df`` (a copy) plus the result columns (README "What ``run`` returns"); the run's
    summary is in ``result.attrs["replibatch"]``.

    Raises ConfigurationError (a ValueError) for an invalid call (a bad option, model reference,
    column or cache directory, or no token when one is needed), before anything is sent;
    AuthenticationError when the token is refused. A row's own failure never raises: it ends
    ``error``, ``timeout``, ``canceled`` or ``skipped_budget``. When several failures happen
    at once in the run's tasks, one error is raised (an interrupt first, else the first
    failure, the others named in its notes), never an ExceptionGroup.
"""


def one_error(exc: BaseException) -> BaseException:
    """The one error a caller sees for `exc`: (nested) task-group exception groups are
    flattened and their cancellations dropped; of what remains an interrupt (KeyboardInterrupt,
    SystemExit) comes first, else the first failure, with the others listed in its notes
    (Python 3.11+). `exc` itself when it holds no real error."""
    real: list[BaseException] = []

    def flatten(item: BaseException) -> None:
        if isinstance(item, BaseExceptionGroup):
            for inner in item.exceptions:
                flatten(inner)
        elif not isinstance(item, anyio.get_cancelled_exc_class()):
            real.append(item)

    flatten(exc)
    if not real:
        return exc
    chosen = next((e for e in real if not isinstance(e, Exception)), real[0])
    others = [e for e in real if e is not chosen]
    if others and hasattr(chosen, "add_note"):
        chosen.add_note(
            f"{len(others)} more failure(s) at the same time: "
            + "; ".join(f"{type(e).__name__}: {e}" for e in others[:5])
        )
    return chosen


def run(
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
    retries: int = DEFAULT_RETRIES,
    progress: bool | None = None,
    live: bool | None = None,
    api_token: str | list[str] | None = None,
    base_url: str | None = None,
    client: Any = None,
    hardware: dict[str, str] | None = None,
    prices: Any = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
    files: list[str] | str | None = None,
) -> pd.DataFrame:
    options = RunOptions(
        concurrency=concurrency, rate_limit=rate_limit, cache=cache, refresh=refresh,
        max_cost=max_cost, timeout=timeout, retries=retries, progress=progress, live=live,
        api_token=api_token, base_url=base_url, client=client, hardware=hardware, prices=prices,
        max_file_bytes=max_file_bytes, download_timeout=download_timeout, files=files,
    )
    return run_in_thread(lambda: _arun_with(df, model, inputs, options, SYSTEM_CLOCK))


run.__doc__ = """Run every row of ``df`` as a Replicate prediction; return ``df`` plus result columns.

    Works in scripts and inside a running event loop (Jupyter): the run gets its own loop in a
    worker thread. Ctrl-C (or the notebook's stop button) cancels the predictions in flight on
    Replicate (those whose create was unanswered too, found by one sweep), keeps what finished
    in the cache, and re-raises KeyboardInterrupt within about 4 s whatever the number in
    flight; cancels still going continue in the background (and a script's exit waits for
    them). A confirmed cancel drops the row's marker, so the next run creates it afresh.

    Money (README "How it talks to Replicate", "Cost", "Spend"): a row's prediction is never
    created twice; a create whose reply was lost is reconciled by one sweep of the account's
    predictions, and when that cannot be completed the row ends ``error`` ("create outcome
    unknown; the intent marker is kept, the next run re-attaches") instead of being re-sent.
    Standing budgets (``rb.set_budget``, ``REPLIBATCH_DAILY_BUDGET``...) are checked in the
    spend ledger before every create, across processes; a 402 (payment required) stops the
    run's creates.
""" + _OPTIONS_DOC


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
    retries: int = DEFAULT_RETRIES,
    progress: bool | None = None,
    live: bool | None = None,
    api_token: str | list[str] | None = None,
    base_url: str | None = None,
    client: Any = None,
    hardware: dict[str, str] | None = None,
    prices: Any = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
    files: list[str] | str | None = None,
) -> pd.DataFrame:
    options = RunOptions(
        concurrency=concurrency, rate_limit=rate_limit, cache=cache, refresh=refresh,
        max_cost=max_cost, timeout=timeout, retries=retries, progress=progress, live=live,
        api_token=api_token, base_url=base_url, client=client, hardware=hardware, prices=prices,
        max_file_bytes=max_file_bytes, download_timeout=download_timeout, files=files,
    )
    return await _arun_with(df, model, inputs, options, SYSTEM_CLOCK)


arun.__doc__ = """Run every row of ``df`` as a Replicate prediction, on the caller's event loop
    (asyncio, e.g. ``await rb.arun(...)`` in a notebook cell); the same run as ``rb.run``.

    Cancelling the awaiting task cancels the predictions in flight on Replicate (bounded, shielded)
    and keeps what finished in the cache.
""" + _OPTIONS_DOC


async def _arun_with(
    df: pd.DataFrame,
    model: str | None,
    inputs: list[str] | dict[str, str] | None,
    options: RunOptions,
    clock: Clock,
) -> pd.DataFrame:
    """`arun` with its options as one record, on `clock` (tests pass one that skips waits).
    Raises as `arun`."""
    concurrency, downloads = options.checked()
    with gc_paused(len(df)):
        plan = frames.plan_jobs(df, model=model, inputs=inputs, files=options.files)
    table = PriceTable.default().with_overrides(prices=options.prices, hardware=options.hardware)
    store = await anyio.to_thread.run_sync(open_cache, options.cache)
    # One token, a list of tokens, or profile names (`replibatch._engine.tokens`): checked
    # here, before anything is sent.
    tokens = resolve_tokens(options.api_token, resolve_token(None, options.client))
    # With several tokens each ledger entry is given its creating token's fingerprint on attach.
    single = tokens[0].token if len(tokens) == 1 else None
    gate, standing = await anyio.to_thread.run_sync(_spend_gate, store, single)
    started = clock.monotonic()
    connect = {"base_url": options.base_url, "client": options.client,
               "max_connections": concurrency + 16}
    edges = [Edge(api_token=spec.token, **connect) for spec in tokens] or [Edge(**connect)]
    edge = edges[0]
    shape = EngineOptions(
        concurrency=concurrency, rate_limit=options.rate_limit, timeout=options.timeout,
        retries=options.retries, refresh=options.refresh, progress=options.progress,
        live=options.live, downloads=downloads,
    )
    engine = Engine(
        edge=edge, cache=store, options=shape, budget=Budget(options.max_cost), prices=table,
        gate=gate, standing=standing, clock=clock, tokens=tokens, edges=edges,
    )
    run_started(engine.owner)
    try:
        rows = await execute(engine, plan)
    except BaseException as exc:
        if engine.bar is not None:
            engine.bar.close()
        real = one_error(exc)
        if real is exc:
            raise
        raise real from None
    finally:
        run_ended(engine.owner)
        with anyio.CancelScope(shield=True):
            for each in edges:
                await each.aclose()
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
    # Each token has its own limits: with several, the run's rates and counts are their sums.
    limiters = [lane.creator.limiter for lane in engine.pool.lanes]
    summary["create_rate_per_minute"] = sum(c.ceiling_per_minute for c in limiters)
    summary["create_rate_learned_per_minute"] = sum(c.rate_per_minute for c in limiters)
    summary["throttle_episodes"] = sum(c.episodes for c in limiters)
    summary["throttled"] = sum(c.refusals for c in limiters)
    summary["throttled_after_first_episode"] = sum(c.refusals_after_first for c in limiters)
    summary["poll"] = dataclasses.asdict(engine.poller.stats)
    summary["shared"] = engine.state.shared
    summary["spend_by_token"] = dict(engine.gate.spent_by_token)
    if engine.pool.several:
        summary["tokens"] = engine.pool.summary(engine.gate.spent_by_token)
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



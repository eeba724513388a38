"""Scheduling a run's plan: resolve, promote and shape inputs, key and look up the cache, find
pending markers, then run the rows that remain (identical ones once) in one task group."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import anyio

from replibatch._engine.dedupe import group_identical
from replibatch._engine.lease import cached_row
from replibatch._engine.progress import Progress, open_progress
from replibatch._engine.result import Row
from replibatch._engine.row import run_job
from replibatch._engine.session import CLEANUP_SECONDS, Engine
from replibatch._engine.target import Target
from replibatch._store.gc import paused as gc_paused
from replibatch._store.keys import cache_key
from replibatch._store.markers import PendingMarker
from replibatch._table import frame as frames
from replibatch._table.frame import Job
from replibatch._table.refs import ModelRef, parse_model_ref
from replibatch._table.schema import promote_files, shape_input
from replibatch.errors import ReplicateAPIError

__all__ = ["execute"]

Rows = list[Row | None]
Targets = dict[str, Target | ReplicateAPIError]


def _refs(jobs: list[Job]) -> dict[str, ModelRef]:
    """Each distinct model reference of the plan, parsed once (at planning)."""
    refs: dict[str, ModelRef] = {}
    for job in jobs:
        if job.model not in refs:
            refs[job.model] = job.ref or parse_model_ref(job.model)
    return refs


async def execute(engine: Engine, plan: frames.Plan) -> list[Row]:
    """Every job's result row, in plan order. Raises what the run cannot survive
    (AuthenticationError, an interrupt); after cleanup of what was in flight."""
    jobs = plan.jobs
    rows: Rows = [None] * len(jobs)
    keys: list[str | None] = [None] * len(jobs)
    refs = _refs(jobs)

    # Pinned versions key the cache without a request; others need resolving first.
    if any(ref.kind != "version" for ref in refs.values()):
        engine.edge.require_token()
    targets: Targets = await engine.resolver.resolve(refs)

    # Files first: a string the schema calls a file is keyed (and sent) by its content. The
    # rest of the schema is checked below, only for the rows the cache cannot serve. Pinned
    # "owner/name:version" rows are keyed before their schema is read (only rows the cache
    # lacks need it): their files are promoted, and they are keyed again, once it is known.
    late = {m for m, ref in refs.items() if ref.kind == "version" and ref.owner}
    late_rows: list[int] = []
    for i, job in enumerate(jobs):
        target = targets[job.model]
        if isinstance(target, ReplicateAPIError):
            rows[i] = Row.failed("error", f"{job.model}: {target}")
            continue
        if job.model in late:
            late_rows.append(i)
        _promote(engine, job, target, rows, i)

    pending: dict[int, PendingMarker] = {}
    # Keyed with or without a cache: identical jobs share one prediction either way.
    await _lookup(engine, jobs, targets, keys, rows, range(len(jobs)))
    late_misses = [i for i in late_rows if rows[i] is None]
    if late_misses and engine.edge.has_token:
        for model in {jobs[i].model for i in late_misses}:
            target = targets[model]
            assert isinstance(target, Target)
            schema = await engine.resolver.version_schema(target.model_name, target.ident)
            targets[model] = replace(target, schema=schema)
        rekey = []
        for i in late_misses:
            job = jobs[i]
            pinned = targets[job.model]
            assert isinstance(pinned, Target)
            _promote(engine, job, pinned, rows, i)
            if rows[i] is None and keys[i] is not None:
                key = cache_key(pinned.identity, job.input, job.sample)
                if key != keys[i]:  # a path became a file: it is keyed by its content
                    keys[i] = key
                    rekey.append(i)
        if rekey:
            await _lookup(engine, jobs, targets, keys, rows, rekey)
    cache = engine.cache
    if cache is not None:
        misses = [k for i, k in enumerate(keys) if k is not None and rows[i] is None]
        if misses:
            found = await anyio.to_thread.run_sync(cache.pending_many, misses)
            for i, k in enumerate(keys):
                if k is not None and k in found and rows[i] is None:
                    pending[i] = PendingMarker.from_json(found[k])
    for i, job in enumerate(jobs):
        if rows[i] is None:
            target = targets[job.model]
            assert isinstance(target, Target)  # rows of failed resolutions were ended above
            # A row with a marker was sent by an earlier run: it re-attaches, never refused.
            _shape(engine, job, target, rows, i, refuse=i not in pending)
    engine.state.cached = sum(1 for r in rows if r is not None and r.cached)

    todo = [i for i in range(len(jobs)) if rows[i] is None]
    groups = group_identical(todo, keys)
    engine.state.shared = groups.shared
    run_keys = keys if cache is not None else [None] * len(jobs)
    if todo:
        engine.edge.require_token()
    bar = engine.bar = open_progress(
        len(jobs), len(jobs) - len(todo), progress=engine.options.progress, live=engine.options.live
    )
    writer = engine.writer
    try:
        async with anyio.create_task_group() as outer:
            if writer is not None:
                outer.start_soon(writer.run)
                outer.start_soon(writer.beat)
            outer.start_soon(engine.poller.run)
            async with anyio.create_task_group() as tg:
                for i in groups.leaders:
                    job = jobs[i]
                    target = targets[job.model]
                    assert isinstance(target, Target)
                    tg.start_soon(_run_into, engine, rows, i, job, target, run_keys[i], pending.get(i), bar)
            engine.poller.close()
            if writer is not None:
                writer.close()
    except BaseException:
        await engine.cancel_everything()
        if writer is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_SECONDS):
                await writer.flush()  # keep every result that arrived before the interrupt
        raise
    for leader, followers in groups.followers.items():
        for i in followers:
            paid = rows[leader]
            assert paid is not None  # the leader ran: its row is in
            row = rows[i] = paid.shared_by(leader)
            if bar is not None:
                bar.tick(row.columns(), jobs[i].input)
    done: list[Row] = []
    # Identical jobs share a row's values and also its key: each row carries the key it has.
    for ended, row_key in zip(rows, keys, strict=True):
        assert ended is not None  # every job ended: cached, refused, shared or run
        ended.cache_key = row_key
        done.append(ended)
    return done


def _refuse(engine: Engine, rows: Rows, i: int, problems: list[str]) -> None:
    rows[i] = Row.failed("error", "invalid input: " + "; ".join(problems))
    engine.state.invalid += 1


def _promote(engine: Engine, job: Job, target: Target, rows: Rows, i: int) -> None:
    """Turn the paths of the schema's file inputs into files (before keying the row)."""
    promoted, problems = promote_files(job.input, target.schema)
    if promoted is not job.input:
        job.input = dict(promoted)
    if problems:
        _refuse(engine, rows, i, problems)


def _shape(engine: Engine, job: Job, target: Target, rows: Rows, i: int, *, refuse: bool = True) -> None:
    """Shape the job's input for its schema; a row the schema refuses ends ``error`` here."""
    job.input, problems = shape_input(job.input, target.schema)
    if problems and refuse:
        _refuse(engine, rows, i, problems)


async def _lookup(
    engine: Engine, jobs: list[Job], targets: Targets, keys: list[str | None], rows: Rows,
    positions: Iterable[int],
) -> None:
    """Key the rows at `positions` still open and fill in those the cache holds (if any)."""
    positions = list(positions)
    with gc_paused(len(jobs)):
        for i in positions:
            if rows[i] is None and keys[i] is None:
                job = jobs[i]
                target = targets[job.model]
                assert isinstance(target, Target)
                keys[i] = cache_key(target.identity, job.input, job.sample)
    wanted = [k for i in positions if (k := keys[i]) is not None and rows[i] is None]
    if engine.cache is None or engine.options.refresh or not wanted:
        return
    hits = await anyio.to_thread.run_sync(engine.cache.get_many, wanted)
    for i in positions:
        k = keys[i]
        if k is not None and rows[i] is None:
            entry = hits.get(k)
            if entry is not None:
                rows[i] = cached_row(entry)


async def _run_into(
    engine: Engine, rows: Rows, i: int, job: Job, target: Target, key: str | None,
    pending: PendingMarker | None, bar: Progress | None,
) -> None:
    row = await run_job(engine, job, target, key, pending)
    rows[i] = row
    if bar is not None:
        bar.tick(row.columns(), job.input)

"""Spend ledger: what its three writes per created prediction cost.

    python bench/ledger.py [--rows 2000] [--tasks 64]

Times, on a fresh ledger in a temporary directory, the bookkeeping the engine does for each
prediction it creates (`replibatch._spend.spendgate.SpendGate`: reserve before the create, attach once
the id is known, finish with the cost), first one row after another, then `--tasks` rows at once
on one event loop (each write in a worker thread, as in a run), with a standing daily budget so
that every reserve also sums the day's spend. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import anyio

from replibatch._spend.ledger import SpendLedger
from replibatch._spend.spendgate import SpendGate


async def _one(gate: SpendGate, i: int) -> None:
    entry = await gate.reserve(0.001, model="replibatch/tiny-llama", version="v1")
    assert isinstance(entry, str)
    pid = f"p{i}"
    await gate.attach(entry, pid)
    record = {"id": pid, "status": "succeeded", "metrics": {"predict_time": 0.5}}
    await gate.finish(entry, record, {"cost_usd": 0.0001, "cost_basis": "bench"},
                      model="replibatch/tiny-llama", version="v1")


async def _bench(rows: int, tasks: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        ledger = SpendLedger(directory)
        ledger.set_budget("daily", 1e9)
        gate = SpendGate.for_token(ledger, "r8_bench_token", {})
        start = time.perf_counter()
        for i in range(rows):
            await _one(gate, i)
        serial = time.perf_counter() - start
        limiter = anyio.CapacityLimiter(tasks)

        async def limited(i: int) -> None:
            async with limiter:
                await _one(gate, rows + i)

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(rows):
                tg.start_soon(limited, i)
        parallel = time.perf_counter() - start
        assert len(ledger.entries()) == 2 * rows
    print(f"rows: {rows} (3 ledger writes each; a daily budget checked on every reserve)")
    print(f"one after another: {serial:.2f} s, {1000 * serial / rows:.2f} ms per row, "
          f"{rows / serial * 60:,.0f} rows/min")
    print(f"{tasks} at once:       {parallel:.2f} s, {1000 * parallel / rows:.2f} ms per row, "
          f"{rows / parallel * 60:,.0f} rows/min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=64)
    args = parser.parse_args()
    anyio.run(_bench, args.rows, args.tasks, backend="asyncio")


if __name__ == "__main__":
    main()

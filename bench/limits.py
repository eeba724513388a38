"""At the speed the account really allows (issue 11): replibatch and the official client on
servers that limit like Replicate's accounts do, in one run, on the simulator.

    python bench/limits.py [--quick]

Scenarios (each contender gets a fresh simulator in its own process, so buckets start full):

0. baseline: the rows of 1 on a server without limits (what the machine allows this run);
1. the server allows 6,000 creates/min with a burst of 20; 1,000 rows of 0.5 s; replibatch
   is told ``rate_limit=6000``;
2. replibatch is told 10x the server's rate (60,000/min vs 6,000/min, burst 20) and 5 % of
   creates fail with a 500;
3. a low-credit account: 60 creates/min, burst 1; 30 rows; replibatch with default settings;
4. 1,000 predictions of 65 s (longer than the 60 s ``Prefer: wait`` window, so they must be
   polled); replibatch with ``concurrency=1000``. The official client at semaphore 64 needs
   ~16 waves of 65 s: it is stopped after a time cap and its rows done are reported.

Then two checks: ``timeout=0.5`` on 2 s predictions (status, ``predict_s``, how late the row
ended, ``Cancel-After`` on the creates) and two processes sharing one account and cache.

ideal = rows / server rate + one prediction's latency. requests/prediction counts every
request the server saw (429s, retries, polls, the model lookup) per row that succeeded.
Figures are printed, not asserted; they come from the simulator on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import replicate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import MODEL, TOKEN, Sim, _inputs

import replibatch as rb
from replibatch._http import Connection

OURS_ONLY = False


def _poll_requests(poll: dict) -> int:
    return int(poll.get("pages", 0)) + int(poll.get("gets", 0))


def run_replibatch(url: str, rows: int, **options: Any) -> dict:
    df = pd.DataFrame(_inputs(rows))
    cache_dir = options.pop("cache_dir", None) or tempfile.mkdtemp(prefix="rb-bench-")
    os.environ["REPLIBATCH_CACHE_DIR"] = cache_dir
    started = time.perf_counter()
    res = rb.run(df, model=MODEL, api_token=TOKEN, base_url=url, progress=False, **options)
    wall = time.perf_counter() - started
    summary = res.attrs.get("replibatch", {})
    return {
        "wall": wall,
        "lost": int((res["status"] != "succeeded").sum()),
        "episodes": summary.get("throttle_episodes"),
        "429s after 1st episode": summary.get("throttled_after_first_episode"),
        "learned rate/min": round(summary.get("create_rate_learned_per_minute") or 0),
        "poll requests": _poll_requests(summary.get("poll") or {}),
        "started": started,
        "ended": started + wall,
        "started_wall": time.time() - wall,
    }


def run_official(url: str, rows: int, semaphore: int, cap: float | None = None) -> dict:
    async def main() -> dict:
        client = replicate.Client(api_token=TOKEN, base_url=url)
        gate = asyncio.Semaphore(semaphore)
        done = [0]

        async def one(payload: dict) -> bool:
            async with gate:
                try:
                    await client.async_run(MODEL, input=payload)
                    done[0] += 1
                    return True
                except Exception:  # noqa: BLE001 - a lost row is what we count
                    return False

        started = time.perf_counter()
        tasks = [asyncio.ensure_future(one(p)) for p in _inputs(rows)]
        _, pending = await asyncio.wait(tasks, timeout=cap)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        wall = time.perf_counter() - started
        return {"wall": wall, "lost": rows - done[0], "capped": bool(pending)}

    return asyncio.run(main())


def measure(label: str, sim_options: dict, contender, rows: int, ideal: float) -> dict:
    sim = Sim(**sim_options)
    try:
        got = contender(sim.url, rows)
        stats = sim.stats()
    finally:
        sim.close()
    requests = sum(stats["requests"].values())
    creates = stats["creates"]
    done = max(1, rows - got["lost"])
    row = {
        "contender": label,
        "wall_s": round(got["wall"], 2),
        "wall/ideal": round(got["wall"] / ideal, 3),
        "rows_lost": got["lost"],
        "requests/prediction": round(requests / done, 3),
        "429s": stats["throttled"],
        "429s/creates": round(stats["throttled"] / max(1, creates), 3),
        "duplicate_creates": stats["duplicate_creates"],
    }
    for key in ("episodes", "429s after 1st episode", "learned rate/min", "poll requests"):
        if key in got:
            row[key] = got[key]
    if got.get("capped"):
        row["wall_s"] = f">{row['wall_s']} (capped)"
        row["wall/ideal"] = f">{row['wall/ideal']}"
    return row


def _official_row(args: tuple) -> dict:
    label, options, rows, ideal, semaphore, cap = args
    return measure(label, options, lambda url, n: run_official(url, n, semaphore, cap), rows, ideal)


def scenario(title: str, options: dict, rows: int, ideal: float, ours: list, cap: float | None = None,
             parallel_official: bool = False) -> None:
    print(f"\n== {title}; ideal {ideal:.2f} s", flush=True)
    table = [measure(name, options, fn, rows, ideal) for name, fn in ours]
    official = [(f"official gather, semaphore {s}", options, rows, ideal, s, cap) for s in (64, 16)]
    if OURS_ONLY:
        official = []
    if parallel_official:
        with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
            table += list(pool.map(_official_row, official))
    else:
        table += [_official_row(args) for args in official]
    print(pd.DataFrame(table).to_string(index=False), flush=True)


class _Recorder(httpx.AsyncBaseTransport):
    """Records the headers of every create, then sends it on."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.creates: list[dict] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/predictions"):
            self.creates.append(dict(request.headers))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def timeout_check(rows: int = 20) -> None:
    print("\n== timeout=0.5 on 2 s predictions", flush=True)
    sim = Sim(predict_time=2.0, seed=3)
    try:
        recorder = _Recorder()
        client = Connection(api_token=TOKEN, base_url=sim.url, transport=recorder)
        os.environ["REPLIBATCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="rb-bench-")
        res = rb.run(pd.DataFrame(_inputs(rows)), model=MODEL, client=client, timeout=0.5, progress=False)
        stats = sim.stats()
    finally:
        sim.close()
    print(pd.DataFrame([{
        "rows": rows,
        "status": ",".join(sorted(set(res["status"]))),
        "max predict_s": round(float(res["predict_s"].max()), 3),
        "max latency_s": round(float(res["latency_s"].max()), 3),
        "min latency_s": round(float(res["latency_s"].min()), 3),
        "creates with Cancel-After": sum(1 for h in recorder.creates if h.get("cancel-after")),
        "Cancel-After sent": ",".join(sorted({h.get("cancel-after", "-") for h in recorder.creates})),
        "Prefer sent": ",".join(sorted({h.get("prefer", "none") for h in recorder.creates})),
        "cancels": stats.get("cancels"),
    }]).to_string(index=False), flush=True)


def _one_process(args: tuple) -> dict:
    url, offset, rows, cache_dir, start_at = args
    while time.time() < start_at:
        time.sleep(0.001)
    df = pd.DataFrame([{"prompt": f"process {offset} prompt {i}", "max_tokens": 8} for i in range(rows)])
    os.environ["REPLIBATCH_CACHE_DIR"] = cache_dir
    started = time.time()
    res = rb.run(df, model=MODEL, api_token=TOKEN, base_url=url, progress=False, rate_limit=6000)
    return {"started": started, "ended": time.time(),
            "lost": int((res["status"] != "succeeded").sum()),
            "429s seen": res.attrs["replibatch"].get("throttled")}


def two_processes(rows_each: int = 500, *, shared: bool = True) -> None:
    rate = 6000.0
    ideal = 2 * rows_each / (rate / 60) + 0.5
    title = "one cache directory" if shared else "separate cache directories (no sharing)"
    print(f"\n== two processes, one account, {title}: each {rows_each} rows told rate_limit=6000;"
          f" server 6,000/min burst 20; combined ideal {ideal:.2f} s", flush=True)
    sim = Sim(create_rate=rate, create_burst=20, predict_time=0.5, seed=9)
    try:
        common = tempfile.mkdtemp(prefix="rb-bench-shared-")
        dirs = [common, common] if shared else [tempfile.mkdtemp(), tempfile.mkdtemp()]
        start_at = time.time() + 4.0  # both interpreters are up and imported by then
        with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
            jobs = [(sim.url, k, rows_each, dirs[k], start_at) for k in (0, 1)]
            results = list(pool.map(_one_process, jobs))
        stats = sim.stats()
    finally:
        sim.close()
    wall = max(r["ended"] for r in results) - min(r["started"] for r in results)
    print(pd.DataFrame([{
        "combined wall_s": round(wall, 2),
        "wall/ideal": round(wall / ideal, 3),
        "rows_lost": sum(r["lost"] for r in results),
        "429s": stats["throttled"],
        "429s/creates": round(stats["throttled"] / max(1, stats["creates"]), 3),
        "requests/prediction": round(sum(stats["requests"].values()) / (2 * rows_each), 3),
        "per-process wall_s": ", ".join(f"{r['ended'] - r['started']:.2f}" for r in results),
    }]).to_string(index=False), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="01234tp", help="which parts to run (0-4, t, p)")
    parser.add_argument("--long-rows", type=int, default=1000)
    parser.add_argument("--cap", type=float, default=150.0, help="time cap of the official client in 4")
    parser.add_argument("--ours-only", action="store_true", help="skip the official client")
    args = parser.parse_args(argv)
    global OURS_ONLY
    OURS_ONLY = args.ours_only
    rows, latency = 1000, 0.5
    base = {"predict_time": latency, "seed": 1}
    if "0" in args.only:
        # The machine's share: the same rows on a server with no limit at all, in the same run,
        # so a wall figure above can be told apart from what the engine itself costs here.
        scenario("0. baseline: 1,000 rows, server without limits, 0.5 s", {**base, "create_rate": None},
                 rows, rows / 100 + latency,
                 [("replibatch (rate_limit=6000)", lambda u, n: run_replibatch(u, n, rate_limit=6000))])
    if "1" in args.only:
        options = {**base, "create_rate": 6000, "create_burst": 20}
        scenario("1. 1,000 rows, server 6,000/min burst 20, 0.5 s", options, rows, rows / 100 + latency,
                 [("replibatch (rate_limit=6000)", lambda u, n: run_replibatch(u, n, rate_limit=6000))])
    if "2" in args.only:
        options = {**base, "create_rate": 6000, "create_burst": 20, "error_rate": 0.05,
                   "error_statuses": (500,), "fault_scope": "create"}
        scenario("2. told 60,000/min, server 6,000/min burst 20, 5% of creates 500", options, rows,
                 rows / 100 + latency,
                 [("replibatch (rate_limit=60000)", lambda u, n: run_replibatch(u, n, rate_limit=60_000))])
    if "3" in args.only:
        options = {**base, "create_rate": 60, "create_burst": 1}
        scenario("3. low-credit account: 60/min, burst 1, 30 rows, default settings", options, 30,
                 30 / 1 + latency, [("replibatch (defaults)", lambda u, n: run_replibatch(u, n))])
    if "4" in args.only:
        long = 65.0
        n = args.long_rows
        options = {"predict_time": long, "seed": 1, "create_rate": 6000}
        scenario(f"4. {n} predictions of {long:.0f} s (past the 60 s Prefer: wait), server 6,000/min",
                 options, n, n / 100 + long,
                 [("replibatch (concurrency=1000)", lambda u, k: run_replibatch(u, k, concurrency=1000))],
                 cap=args.cap, parallel_official=True)
    if "t" in args.only:
        timeout_check()
    if "p" in args.only:
        two_processes(shared=True)
        two_processes(shared=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

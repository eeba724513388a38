"""Cache: a frame whose every row is in the cache, back as a result frame.

    python bench/cache.py [--rows 100000]

Fills a fresh cache with ``--rows`` succeeded rows (directly through the storage layer, as a
finished run would have left them), then times ``replibatch.run`` on the same frame end to end:
planning, keys, the batched cache read, assembly. A pinned ``owner/name:version`` reference needs
no request at all, so the run is pointed at a server that does not exist: any request would fail.
A second part re-runs 1,000 cached rows against the simulator and prints the requests it counted.
Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import pandas as pd

import replibatch as rb
from replibatch._store.cache import CacheEntry, ResultCache
from replibatch._store.keys import cache_key
from replibatch.sim import serve

TOKEN = "r8_bench_not_a_real_token"
VERSION = "ab" * 32
MODEL = f"replibatch/tiny-llama:{VERSION}"


def fill(cache: ResultCache, df: pd.DataFrame) -> None:
    entries = {}
    for i, row in enumerate(df.itertuples(index=False)):
        payload = {"prompt": row.prompt, "temperature": row.temperature}
        record = {"id": f"p{i:025d}", "status": "succeeded", "version": VERSION,
                  "output": ["Some", " cached", " text"], "metrics": {"predict_time": 0.42}}
        result = {"output": "Some cached text", "status": "succeeded", "error": None,
                  "prediction_id": record["id"], "version": VERSION, "queue_s": 0.01,
                  "predict_s": 0.42, "latency_s": 0.5, "cost_usd": 0.0000945,
                  "cost_basis": "predict_time 0.42 s × gpu-t4 $0.000225/s"}
        entries[cache_key(VERSION, payload)] = CacheEntry(
            model=MODEL, version=VERSION, input=payload, record=record, row=result
        )
    cache.put_many(entries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    rows = parser.parse_args(argv).rows
    directory = tempfile.mkdtemp(prefix="rb-bench-cache-")
    df = pd.DataFrame({"prompt": [f"prompt {i}" for i in range(rows)], "temperature": 0.7})

    started = time.perf_counter()
    fill(ResultCache(directory), df)
    print(f"filled {rows:,} entries in {time.perf_counter() - started:.1f} s")

    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        res = rb.run(df, model=MODEL, cache=directory, api_token=TOKEN,
                     base_url="http://127.0.0.1:9", progress=False)
        best = min(best, time.perf_counter() - started)
        assert bool(res["cached"].all()), "every row should have come from the cache"
    print(f"{rows:,} cached rows -> result frame: best of 3 {best:.2f} s = {rows / best:,.0f} rows/s "
          f"(target >= 50,000 rows/s)")

    with serve(time_scale=0.01) as sim:
        small = df.iloc[:1000]
        first = rb.run(small, model="replibatch/tiny-llama", cache=directory, api_token=TOKEN,
                       base_url=sim.url, progress=False)
        pinned = f"replibatch/tiny-llama:{first['version'].iloc[0]}"
        sim.stats.reset()
        again = rb.run(small, model=pinned, cache=directory, api_token=TOKEN, base_url=sim.url,
                       progress=False)
        print(f"re-run of 1,000 cached rows (pinned version): {sum(sim.stats.requests.values())} "
              f"requests, all cached: {bool(again['cached'].all())}")
        sim.stats.reset()
        rb.run(small, model="replibatch/tiny-llama", cache=directory, api_token=TOKEN,
               base_url=sim.url, progress=False)
        print(f"re-run of 1,000 cached rows (owner/name): {sim.stats.requests} "
              f"(resolving the name to its current version)")
    return 0


if __name__ == "__main__":
    os.environ.pop("REPLICATE_API_TOKEN", None)
    sys.exit(main())

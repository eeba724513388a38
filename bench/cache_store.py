"""Micro-benchmark of the storage layer: cache keys, put_many, get_many, file store.

    python bench/cache_store.py [--rows 100000] [--dir PATH]

Prints keys/s for `cache_key` and rows/s for `put_many` and `get_many` on realistic LLM-sized
entries (a prediction record with a token list, logs and metrics; a row of result columns).
Uses a temporary cache directory unless --dir is given; never touches the network.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from replibatch._store.cache import CacheEntry, ResultCache
from replibatch._store.keys import cache_key

VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"


def make_input(i: int) -> dict:
    return {
        "prompt": f"Write a haiku about llama number {i} in the style of Basho",
        "temperature": (i % 10) / 10,
        "seed": i % 7,
        "max_tokens": 256,
    }


def make_entry(i: int, inp: dict) -> CacheEntry:
    tokens = [f" tok{j}" for j in range(60)]
    record = {
        "id": f"pred{i:020d}",
        "model": "meta/meta-llama-3-8b-instruct",
        "version": VERSION,
        "input": inp,
        "logs": "Random seed set to: 1\n" * 5,
        "output": tokens,
        "error": None,
        "status": "succeeded",
        "created_at": "2024-10-04T18:07:35.262Z",
        "started_at": "2024-10-04T18:07:35.300Z",
        "completed_at": "2024-10-04T18:07:36.100Z",
        "metrics": {"predict_time": 0.8, "input_token_count": 20, "output_token_count": 60},
        "urls": {"get": f"https://api.replicate.com/v1/predictions/pred{i}"},
    }
    row = {
        "output": "".join(tokens),
        "status": "succeeded",
        "error": None,
        "prediction_id": record["id"],
        "version": VERSION,
        "queue_s": 0.04,
        "predict_s": 0.8,
        "latency_s": 1.2,
        "cost_usd": 0.000123,
        "cost_basis": "60 output tokens × $0.0000020",
        "input_token_count": 20,
        "output_token_count": 60,
    }
    return CacheEntry(
        model="meta/meta-llama-3-8b-instruct", version=VERSION, input=inp, record=record, row=row
    )


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>12,.0f}/s  ({n:,} in {seconds:.2f} s)"


def main() -> None:
    try:
        import orjson  # noqa: F401

        print("JSON parser: orjson")
    except ImportError:
        print("JSON parser: json (install orjson for faster reads)")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    n = args.rows
    with tempfile.TemporaryDirectory() as tmp:
        cache = ResultCache(args.dir or Path(tmp) / "cache")
        inputs = [make_input(i) for i in range(n)]

        start = time.perf_counter()
        keys = [cache_key(VERSION, inp, 0) for inp in inputs]
        print(f"cache_key          {rate(n, time.perf_counter() - start)}")

        entries = [
            (k, make_entry(i, inp)) for i, (k, inp) in enumerate(zip(keys, inputs, strict=True))
        ]
        start = time.perf_counter()
        cache.put_many(entries)
        print(f"put_many           {rate(n, time.perf_counter() - start)}")

        found: dict = {}
        for attempt in ("first", "again", "again"):
            del found  # freeing the previous result is not part of the next measurement
            start = time.perf_counter()
            found = cache.get_many(keys)
            elapsed = time.perf_counter() - start
            assert len(found) == n, f"expected {n} hits, got {len(found)}"
            print(f"get_many hits {attempt:5}{rate(n, elapsed)}")

        start = time.perf_counter()
        rows = [e.row for e in found.values()]
        print(f"  + .row access    {rate(len(rows), time.perf_counter() - start)}")

        misses = [cache_key(VERSION, inp, 1) for inp in inputs]
        start = time.perf_counter()
        assert not cache.get_many(misses)
        print(f"get_many (misses)  {rate(n, time.perf_counter() - start)}")

        sample = keys[: min(n, 10_000)]
        start = time.perf_counter()
        for key in sample:
            cache.get(key)
        print(f"get, one by one    {rate(len(sample), time.perf_counter() - start)}")

        start = time.perf_counter()
        cache.pending_many(keys)
        print(f"pending_many       {rate(n, time.perf_counter() - start)}")

        payloads = [bytes([i % 256]) * 50_000 + i.to_bytes(4, "big") for i in range(200)]

        async def fetch(url: str) -> bytes:
            return payloads[int(url.rsplit("/", 1)[1].split(".")[0])]

        async def localize_all() -> None:
            for i in range(len(payloads)):
                await cache.files.localize_output([f"https://example.test/{i}.png"], fetch)

        start = time.perf_counter()
        asyncio.run(localize_all())
        print(f"localize (50 kB)   {rate(len(payloads), time.perf_counter() - start)}")
        print(cache.info())


if __name__ == "__main__":
    main()

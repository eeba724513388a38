"""Paging ``GET /v1/predictions`` back through many predictions on the simulator.

    python bench/sim_listing.py [--predictions 3000]

Creates N predictions on an unlimited simulator (zero predict time), then pages back from the
newest with ``next`` and prints the time of the first and last pages, the whole walk, and a walk
limited by ``created_after`` to the oldest tenth. A page must cost the same at any depth (the
simulator slices its creation order; filters are found by bisection). Also times the pure page
function over one million creation times. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx

from replibatch.sim import serve
from replibatch.sim.listing import page_of

AUTH = {"Authorization": "Bearer r8_bench_not_a_real_token"}


async def _create_all(url: str, version: str, count: int) -> None:
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=url, headers=AUTH, limits=limits, timeout=60) as client:
        semaphore = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with semaphore:
                body = {"version": version, "input": {"prompt": f"p{i}", "max_tokens": 1}}
                r = await client.post("/v1/predictions", json=body)
                r.raise_for_status()

        await asyncio.gather(*(one(i) for i in range(count)))


def _walk(client: httpx.Client, url: str | None) -> tuple[int, list[float]]:
    seen, times = 0, []
    while url:
        started = time.perf_counter()
        page = client.get(url).json()
        times.append(time.perf_counter() - started)
        seen += len(page["results"])
        url = page["next"]
    return seen, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--predictions", type=int, default=3000)
    args = parser.parse_args()
    n = args.predictions
    with serve(create_rate=None, read_rate=None, predict_time=0, time_scale=0.01) as server:
        version = server.models["replibatch/tiny-llama"].version_id
        started = time.perf_counter()
        asyncio.run(_create_all(server.url, version, n))
        print(f"created {n} predictions in {time.perf_counter() - started:.2f} s")
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as client:
            seen, times = _walk(client, "/v1/predictions")
            print(f"full walk: {seen} predictions in {len(times)} pages, {sum(times):.3f} s; "
                  f"first page {times[0] * 1000:.1f} ms, last page {times[-1] * 1000:.1f} ms, "
                  f"median {sorted(times)[len(times) // 2] * 1000:.1f} ms")
            # The created_at of the prediction a tenth of the way from the oldest.
            seen_ids: list[str] = []
            url: str | None = "/v1/predictions"
            while url:
                page = client.get(url).json()
                seen_ids += [p["created_at"] for p in page["results"]]
                url = page["next"]
            bound = seen_ids[-(n // 10)]
            seen, times = _walk(client, f"/v1/predictions?created_before={bound}")
            print(f"created_before the oldest tenth: {seen} predictions in {len(times)} pages, "
                  f"{sum(times):.3f} s (first page {times[0] * 1000:.1f} ms)")
        print(f"server: {server.stats.list_pages} list pages served")

    created = [float(i) for i in range(1_000_000)]
    started = time.perf_counter()
    start = None
    pages = 0
    while pages < 1000:
        page = page_of(created, start, 100, after=10.0)
        pages += 1
        start = page.next_start
    print(f"page_of over 1,000,000 predictions: {(time.perf_counter() - started) / pages * 1e6:.1f} "
          "us per page")


if __name__ == "__main__":
    main()

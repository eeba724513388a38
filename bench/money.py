"""Money: never paid twice, never a false success (issue 10), on the simulator over loopback.

    python bench/money.py [--only lost,interrupt,two,budget] [--rows 2000]

Scenarios (each on a fresh simulator in its own process, so the server does not share the
client's GIL; the simulator plays Replicate's habits: official models name an internal model,
list pages of 100, Cancel-After with a 5 s minimum):

- lost: 2,000 rows at concurrency 512, 30% of create replies lost after the prediction was
  created (the connection drops). Prints rows lost (not succeeded), duplicate creates, and how
  many list pages the reconcile sweeps read.
- interrupt: 512 predictions of 30 s in flight, then Ctrl-C (``_thread.interrupt_main`` while
  ``rb.run`` runs in the main thread). Prints seconds from the interrupt to ``KeyboardInterrupt``
  in the caller's hands, and predictions left running on the server.
- two: two processes run the same 400-row frame on one cache directory at the same time.
  Prints duplicate creates (and as a share of the rows).
- budget: ``max_cost`` on a sweep ordered by ascending ``max_tokens`` (cost grows along the
  frame), at concurrency 128 and 512; the cap is about 40% of what the frame would cost.
  Prints spent ÷ cap (per-second model, and a per-token official model).

Figures are printed, not asserted (targets: 0 lost, 0 duplicates, <= 5 s and 0 left running,
<= 1% duplicates, spent/cap <= 1.00 and >= 0.7).
"""

from __future__ import annotations

import _thread
import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

import replibatch as rb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import TOKEN, Sim  # one simulator-in-a-child-process for every bench

TEXT = "replibatch/tiny-llama"
OFFICIAL = "replibatch/official-chat"


def _frame(n: int, **extra: Any) -> pd.DataFrame:
    return pd.DataFrame({"prompt": [f"bench row {i}" for i in range(n)], **extra})


def lost(rows: int) -> None:
    with tempfile.TemporaryDirectory() as cache, Sim(
        time_scale=0.01, seed=10, drop_after_create_rate=0.3, fault_scope="create",
        create_rate=None, read_rate=None,
    ) as sim:
        began = time.monotonic()
        res = rb.run(_frame(rows, max_tokens=8), model=TEXT, concurrency=512, rate_limit=60000,
                     api_token=TOKEN, base_url=sim.url, cache=cache, progress=False)
        wall = time.monotonic() - began
        stats = sim.stats()
        dropped = stats["faults"].get("drop_after_create", 0)
        print(f"lost replies: {rows} rows, concurrency 512, {dropped} create replies lost "
              f"({dropped / max(1, stats['creates']):.0%})")
        print(f"  rows lost (not succeeded): {int((res['status'] != 'succeeded').sum())}   "
              f"duplicate creates: {stats['duplicate_creates']}   creates: {stats['creates']}   "
              f"list pages read: {stats['list_pages']}   wall: {wall:.1f} s")


def interrupt(in_flight: int) -> None:
    with tempfile.TemporaryDirectory() as cache, Sim(
        time_scale=1.0, predict_time=30.0, create_rate=None, read_rate=None
    ) as sim:
        fired: dict[str, float] = {}

        def watch() -> None:
            deadline = time.monotonic() + 60
            while sim.stats()["in_flight"] < in_flight and time.monotonic() < deadline:
                time.sleep(0.05)
            fired["at"] = time.monotonic()
            fired["in_flight"] = sim.stats()["in_flight"]
            _thread.interrupt_main()

        threading.Thread(target=watch, daemon=True).start()
        try:
            rb.run(_frame(in_flight), model=TEXT, concurrency=in_flight, rate_limit=60000,
                   api_token=TOKEN, base_url=sim.url, cache=cache, progress=False)
        except KeyboardInterrupt:
            back = time.monotonic() - fired["at"]
        else:  # pragma: no cover - the run cannot finish in 30 s
            back = float("nan")
        at_return = sim.stats()["in_flight"]
        # Cancels not confirmed when control came back go on in the run's worker thread.
        deadline = time.monotonic() + 35
        while sim.stats()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.1)
        settled = time.monotonic() - fired["at"]
        stats = sim.stats()
        markers = rb.cache_info(cache).pending
        while markers and time.monotonic() < deadline:  # cleared by the cleanup's last write
            time.sleep(0.1)
            markers = rb.cache_info(cache).pending
        print(f"interrupt: Ctrl-C with {fired['in_flight']} predictions of 30 s in flight")
        print(f"  seconds to return: {back:.2f}   still running at return: {at_return}   "
              f"predictions left running after the background cancels ({settled:.1f} s): "
              f"{stats['in_flight']}   canceled: {stats['cancels']}   markers left: {markers}")


def two_processes(rows: int) -> None:
    with tempfile.TemporaryDirectory() as cache, Sim(
        time_scale=1.0, predict_time=0.5, create_rate=None, read_rate=None
    ) as sim:
        script = textwrap.dedent(f"""
            import pandas as pd, replibatch as rb
            df = pd.DataFrame({{"prompt": [f"bench row {{i}}" for i in range({rows})]}})
            res = rb.run(df, model="{TEXT}", api_token="{TOKEN}", base_url="{sim.url}",
                         progress=False, concurrency=64, rate_limit=60000)
            print((res["status"] == "succeeded").sum(), int(res["cached"].sum()))
        """)
        env = {**os.environ, "REPLIBATCH_CACHE_DIR": cache}
        procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        outs = [p.communicate(timeout=300)[0].split() for p in procs]
        stats = sim.stats()
        print(f"two processes, one cache: {rows} rows each, started together")
        print(f"  duplicate creates: {stats['duplicate_creates']} "
              f"({stats['duplicate_creates'] / rows:.1%} of rows)   creates: {stats['creates']}   "
              f"succeeded/served-from-cache per process: {[tuple(o) for o in outs]}")


def budget(rows: int) -> None:
    for model, label in ((TEXT, "per-second (gpu-t4)"), (OFFICIAL, "per-token official")):
        for concurrency in (128, 512):
            with tempfile.TemporaryDirectory() as cache, Sim(
                time_scale=0.1, create_rate=None, read_rate=None
            ) as sim:
                df = _frame(rows, max_tokens=[1 + (1023 * i) // max(1, rows - 1) for i in range(rows)])
                # What the frame would cost unbounded, measured once per model (cached below).
                full = _full_cost(model, df, label)
                cap = round(0.4 * full, 6)
                res = rb.run(df, model=model, concurrency=concurrency, rate_limit=60000,
                             max_cost=cap, api_token=TOKEN, base_url=sim.url, cache=cache,
                             progress=False)
                spent = float(res["cost_usd"].sum())
                counts = res["status"].value_counts().to_dict()
                print(f"budget {label}, concurrency {concurrency}: cap ${cap:.4f} "
                      f"(frame ${full:.4f})  spent ÷ cap = {spent / cap:.3f}   statuses {counts}")


_FULL: dict[str, float] = {}


def _full_cost(model: str, df: pd.DataFrame, label: str) -> float:
    if model not in _FULL:
        with tempfile.TemporaryDirectory() as cache, Sim(
            time_scale=0.1, create_rate=None, read_rate=None
        ) as sim:
            res = rb.run(df, model=model, concurrency=512, rate_limit=60000, api_token=TOKEN,
                         base_url=sim.url, cache=cache, progress=False)
            _FULL[model] = float(res["cost_usd"].sum())
    return _FULL[model]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="lost,interrupt,two,budget")
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    if "lost" in wanted:
        lost(args.rows)
    if "interrupt" in wanted:
        interrupt(512)
    if "two" in wanted:
        two_processes(400)
    if "budget" in wanted:
        budget(args.rows)


if __name__ == "__main__":
    main()

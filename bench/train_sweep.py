"""rb.train on the simulator: a sweep, its re-run, lost create replies, a kill -9 mid-sweep.

    python bench/train_sweep.py [--rows 20]

Scenarios (each on a fresh simulator at time_scale 0.01, trainer replibatch/tiny-llama pinned,
the bundled data/fine_tune/sea-stories.zip):

- sweep: 2 x 2 steps x learning_rate. Prints trainings created, uploads, wall seconds.
- rerun: the same sweep again. Prints requests sent (target 0) and trainings created (0).
- lost: `--rows` trainings (steps 10..) with 30% of create replies dropped after the training
  was created and 20% answered with a gateway 5xx. Prints rows succeeded, trainings created,
  duplicate creates (target 0) and the faults played.
- kill9: the sweep (4 s per training) in a child process, SIGKILL once its 4 creates are in,
  then a re-run in this process on the same cache. Prints trainings created in all and
  duplicate creates (targets 4 and 0).

Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

import replibatch as rb
from replibatch.sim import SimServer, serve

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "fine_tune" / "sea-stories.zip"
TOKEN = "r8_bench_offline"
DEST = "replibatch-sim/sea-llama"


def _sim() -> SimServer:
    server = serve(time_scale=0.01, seed=1)
    httpx.post(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {TOKEN}"},
               json={"owner": "replibatch-sim", "name": "sea-llama", "visibility": "private",
                     "hardware": "cpu"}).raise_for_status()
    return server


def _trainer(server: SimServer) -> str:
    return f"replibatch/tiny-llama:{server.models['replibatch/tiny-llama'].version_id}"


def _sweep() -> pd.DataFrame:
    return rb.grid(train_data=[DATA], steps=[100, 300], learning_rate=[0.0002, 0.001])


def _train(server: SimServer, df: pd.DataFrame, cache: str, **options: Any) -> pd.DataFrame:
    return rb.train(df, trainer=_trainer(server), destination=DEST, api_token=TOKEN,
                    base_url=server.url, cache=cache, progress=False, **options)


def sweep_and_rerun() -> None:
    with _sim() as server, tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        first = _train(server, _sweep(), cache)
        wall = time.perf_counter() - started
        print(f"sweep: {int((first['status'] == 'succeeded').sum())}/4 succeeded, "
              f"{server.trainings.stats.creates} trainings created, "
              f"{server.stats.requests.get('POST /v1/files', 0)} upload(s), {wall:.2f} s")
        before = sum(server.stats.requests.values())
        again = _train(server, _sweep(), cache)
        print(f"rerun: {sum(server.stats.requests.values()) - before} requests, "
              f"{int(again['cached'].sum())}/4 cached, "
              f"{server.trainings.stats.creates - 4} trainings created")


def lost(rows: int) -> None:
    with _sim() as server, tempfile.TemporaryDirectory() as cache:
        server.configure(drop_after_create_rate=0.3, error_after_create_rate=0.2,
                         fault_scope="create")
        df = pd.DataFrame({"train_data": [DATA] * rows, "steps": range(10, 10 + rows)})
        out = _train(server, df, cache)
        stats = server.trainings.stats
        print(f"lost: {int((out['status'] == 'succeeded').sum())}/{rows} succeeded, "
              f"{stats.creates} trainings created, {stats.duplicate_creates} duplicates, "
              f"faults {stats.faults}")


def kill9() -> None:
    with _sim() as server, tempfile.TemporaryDirectory() as cache:
        server.configure(predict_time=400.0)
        script = textwrap.dedent(f"""
            import replibatch as rb
            from pathlib import Path
            df = rb.grid(train_data=[Path({str(DATA)!r})], steps=[100, 300],
                         learning_rate=[0.0002, 0.001])
            rb.train(df, trainer={_trainer(server)!r}, destination={DEST!r},
                     api_token={TOKEN!r}, base_url={server.url!r}, cache={cache!r},
                     progress=False)
        """)
        child = subprocess.Popen([sys.executable, "-c", script],
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
        while server.trainings.stats.creates < 4 and child.poll() is None:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
        server.configure(predict_time=None)
        out = _train(server, _sweep(), cache)
        stats = server.trainings.stats
        print(f"kill9: {int((out['status'] == 'succeeded').sum())}/4 succeeded after the re-run, "
              f"{stats.creates} trainings created in all, {stats.duplicate_creates} duplicates")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20)
    args = parser.parse_args()
    sweep_and_rerun()
    lost(args.rows)
    kill9()


if __name__ == "__main__":
    main()

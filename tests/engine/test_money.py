"""Issue 10: never paid twice, never a false success — against the simulator on real sockets."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import httpx
import pandas as pd
import pytest
import replicate

import replibatch as rb
from replibatch._engine import reserve
from replibatch._http.edge import Edge
from replibatch._store.keys import cache_key
from replibatch.errors import TransientError
from replibatch.sim import serve

TOKEN = "r8_test_not_a_real_token_0000000000000000"
TEXT = "replibatch/tiny-llama"
IMAGE = "replibatch/pixel-diffusion"
OFFICIAL = "replibatch/official-chat"


def prompts(n: int, **extra) -> pd.DataFrame:
    return pd.DataFrame({"prompt": [f"money row {i}" for i in range(n)], **extra})


def go(df, sim, **options):
    options.setdefault("progress", False)
    return rb.run(df, api_token=TOKEN, base_url=sim.url, **options)


def pending_count(cache_dir: Path) -> int:
    return rb.cache_info(rb.ResultCache(cache_dir)).pending


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("REPLIBATCH_CACHE_DIR", str(directory))
    return directory


# -- 1. one reconcile sweep, matched by what was sent --------------------------------------------
def test_lost_create_replies_at_scale_are_adopted_never_resent(cache_dir):
    with serve(time_scale=0.01, seed=3, drop_after_create_rate=0.3, fault_scope="create",
               create_rate=None) as sim:
        res = go(prompts(120, max_tokens=4), sim, model=TEXT, concurrency=60, rate_limit=6000)
        assert (res["status"] == "succeeded").all(), res["error"].dropna().unique()
        lost = sim.stats.faults.get("drop_after_create", 0)
        assert lost >= 10
        assert sim.stats.creates == 120 and sim.stats.duplicate_creates == 0
        # Unanswered creates share sweeps: far fewer list pages than lost replies.
        assert sim.stats.list_pages < lost


def test_gateway_error_after_an_official_model_create_is_adopted(cache_dir):
    # Official models answer with an internal model name (the recorded habit): matching is by
    # the endpoint and input that were sent, so the lost create is still found.
    with serve(time_scale=0.01, seed=5, error_after_create_rate=0.5, fault_scope="create") as sim:
        res = go(prompts(30, max_tokens=4), sim, model=OFFICIAL, concurrency=30)
        assert (res["status"] == "succeeded").all(), res["error"].dropna().unique()
        assert sim.stats.errors_after_create >= 5
        assert sim.stats.creates == 30 and sim.stats.duplicate_creates == 0


def test_a_sweep_that_cannot_finish_ends_the_row_error_and_the_next_run_reattaches(
    cache_dir, monkeypatch
):
    async def cannot_list(self, **_filters):
        raise TransientError("list unavailable", status=503)

    with serve(time_scale=0.01, seed=1, drop_after_create_rate=1.0, fault_scope="create") as sim:
        with monkeypatch.context() as patch:
            patch.setattr(Edge, "list_predictions", cannot_list)
            res = go(prompts(6, max_tokens=4), sim, model=TEXT)
        assert (res["status"] == "error").all()
        assert res["error"].str.contains("create outcome unknown; the intent marker is kept").all()
        assert sim.stats.creates == 6  # each sent once, never again blind
        assert pending_count(cache_dir) == 6
        sim.configure(drop_after_create_rate=0.0)
        again = go(prompts(6, max_tokens=4), sim, model=TEXT)
        assert (again["status"] == "succeeded").all()
        assert sim.stats.creates == 6 and sim.stats.duplicate_creates == 0
        assert pending_count(cache_dir) == 0


# -- 2. interrupt at scale --------------------------------------------------------------------
def test_interrupt_with_many_in_flight_cancels_all_fast_and_clears_their_markers(cache_dir):
    with serve(time_scale=1.0, predict_time=30.0, cancel_after_minimum=0) as sim:
        stopped = {}

        async def main() -> None:
            with anyio.move_on_after(1.5):
                await rb.arun(prompts(64), model=TEXT, api_token=TOKEN, base_url=sim.url,
                              progress=False, concurrency=64)
            stopped["at"] = time.monotonic()

        began = time.monotonic()
        asyncio.run(main())
        assert stopped["at"] - began < 1.5 + 5.0
        created = sim.stats.creates  # the create limiter paces how many were sent
        assert created >= 10 and sim.stats.in_flight == 0
        # Confirmed cancels (and rows never sent) leave no marker: the next run creates afresh,
        # it does not re-attach to the canceled predictions.
        assert pending_count(cache_dir) == 0
        sim.configure(predict_time=0.01)
        again = go(prompts(64), sim, model=TEXT, concurrency=64)
        assert (again["status"] == "succeeded").all()
        assert sim.stats.creates == created + 64


# -- 3. markers are leases across processes ------------------------------------------------------
def test_two_processes_on_one_cache_pay_once(cache_dir, tmp_path):
    n = 24
    with serve(time_scale=1.0, predict_time=0.4) as sim:
        script = tmp_path / "other.py"
        script.write_text(textwrap.dedent(f"""
            import pandas as pd, replibatch as rb
            df = pd.DataFrame({{"prompt": [f"money row {{i}}" for i in range({n})]}})
            res = rb.run(df, model="{TEXT}", api_token="{TOKEN}", base_url="{sim.url}",
                         progress=False, concurrency=8)
            assert (res["status"] == "succeeded").all(), res["error"].tolist()
        """))
        env = {**os.environ, "REPLIBATCH_CACHE_DIR": str(cache_dir)}
        other = subprocess.Popen([sys.executable, str(script)], env=env)
        deadline = time.monotonic() + 30
        while sim.stats.creates < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        res = go(prompts(n), sim, model=TEXT, concurrency=8)
        assert other.wait(timeout=60) == 0
        assert (res["status"] == "succeeded").all(), res["error"].dropna().unique()
        assert sim.stats.duplicate_creates == 0 and sim.stats.creates == n


def test_a_marker_of_a_dead_process_is_reattached(sim, cache_dir):
    from replibatch._store.markers import Owner

    sim.configure(time_scale=1.0, predict_time=0.3)
    client = replicate.Client(api_token=TOKEN, base_url=sim.url)
    version = client.models.get(TEXT).latest_version.id
    created = client.predictions.create(version=version, input={"prompt": "orphan"})
    cache = rb.ResultCache(cache_dir)
    dead = Owner("this-host-" + os.uname().nodename, 2**22 + 12345, "gone")
    cache.write_batch({cache_key(version, {"prompt": "orphan"}): (created.id, {"model": TEXT})},
                      owner=Owner(os.uname().nodename, dead.pid, dead.run))
    res = go(pd.DataFrame({"prompt": ["orphan"]}), sim, model=TEXT)
    assert res["status"].iloc[0] == "succeeded" and res["prediction_id"].iloc[0] == created.id
    assert sim.stats.creates == 1


# -- 4. identical jobs run once ------------------------------------------------------------------
def test_identical_rows_share_one_prediction(sim, cache_dir):
    df = pd.DataFrame({"prompt": ["same"] * 10, "max_tokens": 6})
    res = go(df, sim, model=TEXT)
    assert sim.stats.creates == 1
    assert (res["status"] == "succeeded").all() and res["output"].nunique() == 1
    assert res["prediction_id"].nunique() == 1
    assert res.attrs["replibatch"]["shared"] == 9
    paid = res["cost_usd"]
    assert (paid > 0).sum() == 1 and paid.sum() == pytest.approx(paid.max())
    assert res["cost_basis"].str.contains("shared the prediction").sum() == 9


# -- 5. a budget that holds ------------------------------------------------------------------
@pytest.mark.parametrize("concurrency", [16, 64])
def test_max_cost_on_an_ascending_sweep_is_never_passed_and_mostly_used(cache_dir, concurrency):
    with serve(time_scale=0.1) as sim:
        # Ascending max_tokens, 20 -> 79 (cost grows along the frame).
        df = pd.DataFrame({"prompt": [f"sweep {i}" for i in range(120)],
                           "max_tokens": [20 + i // 2 for i in range(120)]})
        cap = 0.0008  # about 40% of what the whole frame costs
        res = go(df, sim, model=TEXT, max_cost=cap, concurrency=concurrency)
        spent = res["cost_usd"].sum()
        assert spent <= cap
        # bench/money.py measures the >= 0.7 target at scale; this small frame on a loaded
        # machine (predict times inflated, so worst cases too) only has to use most of it.
        assert spent >= 0.5 * cap
        assert (res["status"] == "skipped_budget").any()
        # A row slower than its deadline (6 x the slowest seen, scaled by max_tokens) is cut:
        # rare, but a loaded machine can stretch one prediction that far.
        assert set(res["status"]) <= {"succeeded", "skipped_budget", "timeout"}
        assert (res["status"] == "timeout").sum() <= 3


# -- 6. / 7. data_removed and aborted ---------------------------------------------------------
def test_a_deleted_output_is_an_error_never_cached_and_the_next_run_creates_again(cache_dir):
    with serve(time_scale=0.01, retention=5) as sim:  # outputs deleted 0.05 s after completion
        client = replicate.Client(api_token=TOKEN, base_url=sim.url)
        version = client.models.get(TEXT).latest_version.id
        created = client.predictions.create(version=version, input={"prompt": "too late"})
        key = cache_key(version, {"prompt": "too late"})
        rb.ResultCache(cache_dir).mark_pending(key, created.id, {"model": TEXT})
        deadline = time.monotonic() + 10
        url = f"{sim.url}/v1/predictions/{created.id}"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        while not httpx.get(url, headers=auth).json().get("data_removed"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        res = go(pd.DataFrame({"prompt": ["too late"]}), sim, model=TEXT)
        row = res.iloc[0]
        assert row["status"] == "error" and "deleted its output" in row["error"]
        assert row["prediction_id"] == created.id and row["cost_usd"] > 0  # it was billed
        assert rb.ResultCache(cache_dir).get(key, statuses=None) is None
        assert sim.stats.creates == 1
        again = go(pd.DataFrame({"prompt": ["too late"]}), sim, model=TEXT)
        assert again["status"].iloc[0] == "succeeded" and sim.stats.creates == 2


def test_aborted_before_start_is_a_timeout_that_cost_nothing(cache_dir, monkeypatch):
    # Replicate's Cancel-After minimum is 5 s: lowered here and in the sim to keep this fast.
    monkeypatch.setattr(reserve, "CANCEL_AFTER_MINIMUM_S", 1.0)
    # queue_delay 300 model seconds = 3 s real; Cancel-After 1 s passes while still queued.
    with serve(time_scale=0.01, queue_delay=300, cancel_after_minimum=0) as sim:
        res = go(prompts(2), sim, model=TEXT, timeout=1.0)
        assert (res["status"] == "timeout").all()
        assert (res["cost_usd"] == 0).all()
        assert res["cost_basis"].str.contains("not billed").all()
        assert sim.stats.aborted == 2 and sim.stats.cancels == 0  # Replicate stopped them


# -- 8. downloads ---------------------------------------------------------------------------------
def test_a_file_over_the_byte_cap_fails_its_row_keeps_the_marker_and_rerun_downloads(cache_dir):
    with serve(time_scale=0.01, output_file_bytes=300_000) as sim:
        df = pd.DataFrame({"prompt": ["big file"], "width": 64, "height": 64})
        res = go(df, sim, model=IMAGE, max_file_bytes=100_000)
        assert res["status"].iloc[0] == "error"
        assert "max_file_bytes=100000" in res["error"].iloc[0]
        assert pending_count(cache_dir) == 1
        again = go(df, sim, model=IMAGE)
        assert again["status"].iloc[0] == "succeeded"
        assert Path(again["output"].iloc[0][0]).stat().st_size == 300_000
        assert sim.stats.creates == 1  # re-attached, downloaded, not paid again
        assert not list((cache_dir / "files").glob(".incoming/*"))

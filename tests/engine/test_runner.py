"""The engine against the simulator: real sockets, the official client's HTTP layer."""

from __future__ import annotations

import asyncio
import io
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import anyio
import numpy as np
import pandas as pd
import pytest
import replicate
from fakeclock import SkippingClock, run_on
from PIL import Image

import replibatch as rb
from replibatch._engine import create
from replibatch._engine.clock import backoff_delay
from replibatch.errors import AuthenticationError, ConfigurationError
from replibatch.sim import serve

TOKEN = "r8_test_not_a_real_token_0000000000000000"
TEXT = "replibatch/tiny-llama"
IMAGE = "replibatch/pixel-diffusion"


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("REPLIBATCH_CACHE_DIR", str(directory))
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    monkeypatch.delenv("REPLICATE_BASE_URL", raising=False)
    return directory


def prompts(n: int, **extra) -> pd.DataFrame:
    return pd.DataFrame({"prompt": [f"tell me about thing {i}" for i in range(n)], **extra})


def go(df, sim, **options):
    options.setdefault("progress", False)
    return rb.run(df, api_token=TOKEN, base_url=sim.url, **options)


def go_on(clock, df, sim, **options):
    """`go` with the engine on `clock` (its backoff and pauses take no real time)."""
    options.setdefault("progress", False)
    return run_on(clock, df, api_token=TOKEN, base_url=sim.url, **options)


def test_rows_come_back_in_order_with_result_columns(sim, cache_dir):
    df = prompts(12, max_tokens=8)
    df.index = [f"r{i}" for i in range(12)]
    res = go(df, sim, model=TEXT)
    assert list(res.index) == list(df.index)
    assert list(res.columns[:3]) == ["prompt", "max_tokens", "model"]
    assert list(res.columns[3:14]) == [
        "output", "status", "error", "prediction_id", "version", "queue_s", "predict_s",
        "latency_s", "cost_usd", "cost_basis", "cached",
    ]
    assert (res["status"] == "succeeded").all()
    assert res["output"].map(lambda o: isinstance(o, str) and len(o.split()) >= 2).all()
    assert (res["output_token_count"] == 8).all()
    assert (res["predict_s"] > 0).all() and (res["latency_s"] >= res["predict_s"]).all()
    assert (res["cost_usd"] > 0).all() and res["cost_basis"].str.contains("gpu-t4").all()
    assert res.attrs["replibatch"]["succeeded"] == 12
    # owner/name resolved once for the whole run; one create per row, nothing else.
    assert sim.stats.requests == {"GET /v1/models/{owner}/{name}": 1, "POST /v1/predictions": 12}
    assert sim.stats.duplicate_creates == 0


def test_model_column_each_form(sim, cache_dir):
    version = replicate.Client(api_token=TOKEN, base_url=sim.url).models.get(TEXT).latest_version.id
    df = pd.DataFrame(
        {
            "model": [TEXT, f"{TEXT}:{version}", version, "replibatch/official-chat",
                      "deployments/replibatch/tiny-llama-prod"],
            "prompt": ["a", "b", "c", "d", "e"],
            "max_tokens": 4,
        }
    )
    sim.stats.reset()
    res = go(df, sim)
    assert "model" in res.columns and list(res["model"]) == list(df["model"])
    assert (res["status"] == "succeeded").all(), res[["status", "error"]]
    assert res["version"].iloc[0] == res["version"].iloc[1] == res["version"].iloc[2] == version
    # official model priced per token, deployment flagged as a lower bound
    assert "token" in res["cost_basis"].iloc[3]
    assert "lower bound" in res["cost_basis"].iloc[4]
    requests = sim.stats.requests
    assert requests["GET /v1/models/{owner}/{name}"] == 2  # tiny-llama and official-chat
    assert requests["POST /v1/predictions"] == 3


def test_bad_calls_raise_before_any_request(sim, cache_dir):
    df = prompts(3)
    with pytest.raises(ValueError, match="nope"):
        go(df, sim, model=TEXT, inputs=["nope"])
    with pytest.raises(ValueError, match="empty"):
        go(df.iloc[:0], sim, model=TEXT)
    with pytest.raises(ValueError, match="Not A Model"):
        go(df, sim, model="Not A Model!")
    with pytest.raises(ValueError, match="prompt"):
        go(pd.DataFrame({"prompt": [object()]}), sim, model=TEXT)
    with pytest.raises(ValueError, match="concurrency"):
        go(df, sim, model=TEXT, concurrency=0)
    assert sim.stats.requests == {}


def test_missing_token_is_a_clear_error(sim, cache_dir):
    with pytest.raises(ConfigurationError, match="REPLICATE_API_TOKEN"):
        rb.run(prompts(1), model=TEXT, base_url=sim.url, progress=False)


def test_refused_token_raises_without_leaking_it(cache_dir):
    with serve(time_scale=0.01, api_tokens={"r8_the_right_one"}) as sim, \
            pytest.raises(AuthenticationError) as info:
        go(prompts(2), sim, model=TEXT)
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)


def test_unknown_model_and_invalid_input_become_error_rows(sim, cache_dir):
    df = pd.DataFrame(
        {"model": ["replibatch/no-such-model", TEXT, TEXT],
         "prompt": ["x", "y", "z"], "max_tokens": [4, 5000, 4]}
    )
    res = go(df, sim)
    assert list(res["status"]) == ["error", "error", "succeeded"]
    assert "no-such-model" in res["error"].iloc[0]
    assert res["error"].iloc[1] == "invalid input: input.max_tokens: 5000 is more than the maximum 1024"
    # the unknown model never got a create request; the input the schema refuses was not sent
    assert sim.stats.requests["POST /v1/predictions"] == 1 and sim.stats.creates == 1
    assert res.attrs["replibatch"]["invalid"] == 1


def test_model_failures_become_failed_rows(sim, cache_dir):
    sim.configure(failure_rate=1.0, failure_message="CUDA out of memory")
    res = go(prompts(4), sim, model=TEXT)
    assert (res["status"] == "failed").all()
    assert res["error"].str.contains("CUDA out of memory").all()
    # failed predictions are not served from the cache: the next run tries again
    sim.configure(failure_rate=0.0)
    again = go(prompts(4), sim, model=TEXT)
    assert (again["status"] == "succeeded").all() and not again["cached"].any()


def test_429_storm_every_row_succeeds_without_duplicates(cache_dir):
    # The client is told it may send far faster than the server allows: every 429 must pause
    # and retry, never lose a row, never create twice.
    with serve(time_scale=0.01, create_rate=1200, create_burst=3, seed=3) as sim:
        res = go(prompts(40), sim, model=TEXT, rate_limit=60_000)
        assert (res["status"] == "succeeded").all()
        assert sim.stats.throttled > 0
        assert sim.stats.creates == 40 and sim.stats.duplicate_creates == 0


def test_429_hint_in_body_only(cache_dir):
    with serve(time_scale=0.01, create_rate=1200, create_burst=2, retry_after_header=False,
               retry_after_body=True, seed=4) as sim:
        res = go(prompts(12), sim, model=TEXT, rate_limit=60_000)
        assert (res["status"] == "succeeded").all() and sim.stats.duplicate_creates == 0
        assert sim.stats.throttled > 0


def test_server_errors_and_dropped_connections_are_survived(cache_dir, monkeypatch):
    monkeypatch.setattr(create, "MAX_WAIT", 0)  # no Prefer: wait, so every row polls
    with serve(time_scale=0.01, seed=5, error_rate=0.25, error_statuses=(500, 502, 503),
               drop_rate=0.1, fault_scope="read") as sim:
        res = go(prompts(20), sim, model=TEXT, retries=8)
        assert (res["status"] == "succeeded").all(), res["error"].dropna().tolist()
        faults = sim.stats.faults
        assert faults.get("error_502", 0) + faults.get("error_500", 0) + faults.get("error_503", 0) > 0
        assert sum(v for k, v in faults.items() if k.startswith("drop")) > 0
        assert sim.stats.duplicate_creates == 0


def test_create_with_unknown_outcome_is_never_duplicated(cache_dir):
    with serve(time_scale=0.01, seed=6, drop_after_create_rate=0.4, fault_scope="create") as sim:
        res = go(prompts(20), sim, model=TEXT, retries=8)
        assert (res["status"] == "succeeded").all(), res["error"].dropna().tolist()
        assert sim.stats.faults.get("drop_after_create", 0) > 0
        assert sim.stats.creates == 20
        assert sim.stats.duplicate_creates == 0


def test_5xx_on_create_is_reconciled_not_duplicated(cache_dir):
    # Retry backoff (0.25 s doubling) decides nothing here, the reconcile sweep does: on the
    # skipping clock a row's run of 502s costs no sleep (this test took ~12 s under load).
    clock = SkippingClock()
    with serve(time_scale=0.01, seed=7, error_rate=0.3, error_statuses=(502,),
               fault_scope="create") as sim:
        res = go_on(clock, prompts(15), sim, model=TEXT, retries=10)
        assert (res["status"] == "succeeded").all()
        # A sweep proved nothing was made, then the create was re-sent after its backoff.
        assert backoff_delay(1) in clock.sleeps
        assert sim.stats.duplicate_creates == 0


def test_timeout_cancels_on_the_server(cache_dir):
    with serve(time_scale=1.0, predict_time=30.0) as sim:
        started = time.monotonic()
        res = go(prompts(3), sim, model=TEXT, timeout=0.5)
        assert time.monotonic() - started < 10
        assert (res["status"] == "timeout").all()
        assert res["error"].str.contains("timeout").all()
        assert sim.stats.cancels == 3
        assert sim.stats.in_flight == 0


def test_cancelling_arun_cancels_every_prediction_in_flight(cache_dir):
    with serve(time_scale=1.0, predict_time=30.0) as sim:

        async def main() -> None:
            # Cancel once all six exist (not after a fixed second a loaded machine may need
            # for the creates), then a little later so some replies are certainly read.
            async with anyio.create_task_group() as tg:
                async def batch() -> None:
                    await rb.arun(prompts(6), model=TEXT, api_token=TOKEN, base_url=sim.url,
                                  progress=False)

                tg.start_soon(batch)
                with anyio.fail_after(30):
                    while sim.stats.creates < 6:
                        await anyio.sleep(0.02)
                await anyio.sleep(0.2)
                tg.cancel_scope.cancel()

        asyncio.run(main())
        assert sim.stats.creates == 6
        assert sim.stats.cancels == 6
        assert sim.stats.in_flight == 0


def test_keyboard_interrupt_cancels_in_flight_and_reraises(cache_dir):
    import _thread

    with serve(time_scale=1.0, predict_time=30.0) as sim:
        stop = threading.Event()

        def interrupt_once_all_exist() -> None:
            # Wait on the condition, not a fixed second a loaded machine may need for creates.
            deadline = time.monotonic() + 30
            while sim.stats.creates < 5 and time.monotonic() < deadline and not stop.is_set():
                time.sleep(0.02)
            if not stop.wait(0.2):
                _thread.interrupt_main()

        timer = threading.Thread(target=interrupt_once_all_exist)
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                go(prompts(5), sim, model=TEXT)
        finally:
            stop.set()
            timer.join()
        assert sim.stats.creates == 5
        assert sim.stats.cancels == 5
        assert sim.stats.in_flight == 0


def test_run_works_inside_a_running_event_loop(sim, cache_dir):
    async def notebook_cell():
        # what Jupyter does: the loop is running while user code calls the sync API
        return go(prompts(3), sim, model=TEXT)

    res = asyncio.run(notebook_cell())
    assert (res["status"] == "succeeded").all()


def test_accessor_and_arun(sim, cache_dir):
    df = prompts(2)
    res = df.replibatch.run(model=TEXT, api_token=TOKEN, base_url=sim.url, progress=False)
    assert (res["status"] == "succeeded").all()
    res2 = asyncio.run(df.replibatch.arun(model=TEXT, api_token=TOKEN, base_url=sim.url,
                                          progress=False))
    assert res2["cached"].all()


def test_rerun_is_served_from_cache_with_zero_requests(sim, cache_dir):
    version = replicate.Client(api_token=TOKEN, base_url=sim.url).models.get(TEXT).latest_version.id
    df = prompts(10, temperature=0.7, seed=np.arange(10))
    first = go(df, sim, model=f"{TEXT}:{version}")
    sim.stats.reset()
    second = go(df, sim, model=f"{TEXT}:{version}")
    assert sim.stats.requests == {}
    assert second["cached"].all() and not first["cached"].any()
    pd.testing.assert_series_equal(first["output"], second["output"])
    pd.testing.assert_series_equal(first["cost_usd"], second["cost_usd"])
    pd.testing.assert_series_equal(first["latency_s"], second["latency_s"])
    assert second.attrs["replibatch"]["cost_saved_usd"] == pytest.approx(first["cost_usd"].sum())
    # equal numbers of other types key the same; refresh ignores and overwrites
    df2 = df.assign(temperature=np.float64(0.7), seed=df["seed"].astype(np.float32))
    assert go(df2, sim, model=f"{TEXT}:{version}")["cached"].all()
    third = go(df, sim, model=f"{TEXT}:{version}", refresh=True)
    assert not third["cached"].any() and sim.stats.creates == 10


def test_new_model_version_misses_the_cache(cache_dir):
    with serve(time_scale=0.01) as sim:
        go(prompts(3), sim, model=TEXT)
    # a second server: the same model name, but a demo model with another version id
    from replibatch.sim import default_models

    models = default_models()
    for m in models:
        if m.name == "tiny-llama":
            m.version_id = "f" * 64
    with serve(time_scale=0.01, models=models) as sim2:
        res = go(prompts(3), sim2, model=TEXT)
        assert not res["cached"].any() and sim2.stats.creates == 3
        assert (res["version"] == "f" * 64).all()


def test_file_inputs_small_as_data_uri_large_uploaded_and_keyed_by_content(sim, cache_dir, tmp_path):
    small = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(small, format="PNG")
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8))
    big_path = tmp_path / "big.png"
    noisy.save(big_path)
    assert big_path.stat().st_size > 256 * 1024
    df = pd.DataFrame({"prompt": ["a", "b"], "image": [small.getvalue(), big_path],
                       "width": 64, "height": 64})
    res = go(df, sim, model=IMAGE)
    assert (res["status"] == "succeeded").all(), res["error"].tolist()
    assert sim.stats.requests.get("POST /v1/files") == 1  # only the big one is uploaded
    # the same bytes under another file name hit the cache
    renamed = tmp_path / "renamed.png"
    renamed.write_bytes(big_path.read_bytes())
    again = go(df.assign(image=[small.getvalue(), renamed]), sim, model=IMAGE)
    assert again["cached"].all()


def test_output_files_outlive_the_servers_copies(cache_dir):
    with serve(time_scale=0.01, retention=20) as sim:  # retention is model time: 0.2 s here
        res = go(pd.DataFrame({"prompt": ["red square"], "width": 64, "height": 64}), sim, model=IMAGE)
        assert res["status"].iloc[0] == "succeeded", res["error"].iloc[0]
        time.sleep(0.4)
        url = sim.url + "/v1/predictions/" + res["prediction_id"].iloc[0]
        import httpx

        record = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert record["data_removed"] is True and record["output"] is None
    files = res["output"].iloc[0]
    path = Path(files[0])
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(cache_dir) in str(path)
    with Image.open(path) as image:
        assert image.size == (64, 64)
    # the comparison embeds the local copy, so it still shows the image
    page = rb.compare(res, index="prompt", columns="model").to_html()
    assert "data:image/png;base64," in page and "/delivery/" not in page
    # after the server is gone, the cached row still points at the local file
    with serve(time_scale=0.01) as sim2:
        again = go(pd.DataFrame({"prompt": ["red square"], "width": 64, "height": 64}), sim2,
                   model=f"{IMAGE}:{res['version'].iloc[0]}")
    assert again["cached"].all() and Path(again["output"].iloc[0][0]).read_bytes() == path.read_bytes()


def test_token_never_reaches_the_cache(sim, cache_dir):
    go(prompts(3), sim, model=TEXT)
    go(pd.DataFrame({"prompt": ["x"], "width": 64, "height": 64}), sim, model=IMAGE)
    for path in cache_dir.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_pending_prediction_is_reattached_not_recreated(sim, cache_dir):
    # a previous run created the prediction and died before it finished
    sim.configure(time_scale=1.0, predict_time=1.0)
    client = replicate.Client(api_token=TOKEN, base_url=sim.url)
    version = client.models.get(TEXT).latest_version.id
    created = client.predictions.create(version=version, input={"prompt": "resume me"})
    cache = rb.ResultCache(cache_dir)
    from replibatch._store.keys import cache_key

    cache.mark_pending(cache_key(version, {"prompt": "resume me"}), created.id, {"model": TEXT})
    sim.stats.reset()
    res = go(pd.DataFrame({"prompt": ["resume me"]}), sim, model=TEXT)
    assert res["status"].iloc[0] == "succeeded"
    assert res["prediction_id"].iloc[0] == created.id
    assert sim.stats.creates == 0


def test_kill_minus_9_then_rerun_reattaches_without_duplicate(cache_dir, tmp_path):
    with serve(time_scale=1.0, predict_time=1.5) as sim:
        script = tmp_path / "victim.py"
        script.write_text(textwrap.dedent(f"""
            import pandas as pd, replibatch as rb
            df = pd.DataFrame({{"prompt": [f"row {{i}}" for i in range(6)]}})
            rb.run(df, model="{TEXT}", api_token="{TOKEN}", base_url="{sim.url}", progress=False)
        """))
        env = {**os.environ, "REPLIBATCH_CACHE_DIR": str(cache_dir)}
        victim = subprocess.Popen([sys.executable, str(script)], env=env)
        deadline = time.monotonic() + 20
        while sim.stats.creates < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # pending markers are written right after the create's reply
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert sim.stats.creates == 6
        res = go(pd.DataFrame({"prompt": [f"row {i}" for i in range(6)]}), sim, model=TEXT)
        assert (res["status"] == "succeeded").all()
        assert sim.stats.creates == 6 and sim.stats.duplicate_creates == 0


def test_budget_stops_new_predictions(cache_dir):
    with serve(time_scale=1.0, predict_time=0.2) as sim:
        # about 0.000045 USD a row (0.2 s on a T4): the cap allows a few rows
        res = go(prompts(40), sim, model=TEXT, max_cost=0.00030, concurrency=4)
        statuses = res["status"].value_counts().to_dict()
        assert statuses.get("skipped_budget", 0) > 0 and statuses.get("succeeded", 0) > 0
        spent = res["cost_usd"].sum()
        assert spent <= 0.00030  # reserved at the worst case: the cap is never passed
        assert res.loc[res["status"] == "skipped_budget", "error"].str.contains("max_cost").all()
        assert sim.stats.creates == statuses["succeeded"]


def test_unknown_hardware_gives_nan_cost_and_says_what_to_pass(cache_dir):
    from replibatch.sim import SimModel
    from replibatch.sim.models import TinyLlama

    mystery = SimModel("acme", "mystery", TinyLlama(), "gpu-l40s")  # not in the price table
    with serve(time_scale=0.01, models=[mystery], deployments=[]) as sim:
        res = go(prompts(2), sim, model="acme/mystery")
        assert (res["status"] == "succeeded").all()
        assert res["cost_usd"].isna().all()
        assert res["cost_basis"].str.contains("hardware=").all()
        assert res["cost_basis"].str.contains("acme/mystery").all()
        told = go(prompts(2), sim, model="acme/mystery", hardware={"acme/mystery": "gpu-l40s"},
                  refresh=True)
        expected = told["predict_s"] * 0.000975
        assert np.allclose(told["cost_usd"], expected, rtol=1e-3)
        assert told["cost_basis"].str.contains("gpu-l40s").all()


def test_estimate_projects_cost_and_time_within_20_percent(cache_dir):
    # 0.6 s predictions: the pilot's mean latency is three rows measured at one moment, and a
    # load spike there adds tens of ms of HTTP/scheduling time per row. At 0.3 s that alone
    # made the projection 17-25% high on a busy machine; at 0.6 s the same spike is half the
    # share. 40 rows at concurrency 4 stay 10 waves (the 37 not in the pilot too), so the
    # projection's "+ one latency" tail is the same ~10% it is for a real frame of this size.
    with serve(time_scale=1.0, predict_time=0.6, create_rate=600) as sim:
        df = prompts(40, max_tokens=16)
        est = rb.estimate(df, model=TEXT, pilot=3, api_token=TOKEN, base_url=sim.url,
                          concurrency=4, progress=False)
        started = time.monotonic()
        res = go(df, sim, model=TEXT, concurrency=4)
        wall = time.monotonic() - started
        assert sim.stats.creates == 40  # the 3 pilot rows were reused from the cache
    total = est.loc["total"]
    actual_cost = res["cost_usd"].sum()
    assert abs(total["cost_usd"] - actual_cost) / actual_cost < 0.2
    assert abs(total["wall_s"] - wall) / wall < 0.2, (
        total["wall_s"], wall, est.loc[TEXT, "latency_mean_s"], res["latency_s"].mean())
    assert math.isclose(est.loc[TEXT, "rows"], 40)


def test_losing_track_of_a_prediction_keeps_its_marker_and_the_rerun_reattaches(cache_dir, monkeypatch):
    monkeypatch.setattr(create, "MAX_WAIT", 0)  # no Prefer: wait, so the row must poll
    with serve(time_scale=0.01, seed=8) as sim:
        version = replicate.Client(api_token=TOKEN, base_url=sim.url).models.get(TEXT).latest_version.id
        pinned = f"{TEXT}:{version}"  # no resolution request, so only the polls fail
        sim.configure(error_rate=1.0, error_statuses=(503,), fault_scope="read")
        res = go_on(SkippingClock(), prompts(1), sim, model=pinned, retries=1)
        assert res["status"].iloc[0] == "error"
        assert "re-run to re-attach" in res["error"].iloc[0]
        assert res["prediction_id"].iloc[0]
        sim.configure(error_rate=0.0)
        again = go(prompts(1), sim, model=pinned)
        assert again["status"].iloc[0] == "succeeded"
        assert again["prediction_id"].iloc[0] == res["prediction_id"].iloc[0]
        assert sim.stats.creates == 1


"""rb.train against the simulator: sweeps train once per row, re-runs and crashes never train
twice, lost create replies are reconciled, deadlines and interrupts cancel on Replicate, and the
trained versions' outputs show what they were trained on."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pandas as pd
import pytest
import replicate

import replibatch as rb
from replibatch._http import Connection
from replibatch._spend.spend import ledger_for
from replibatch.sim import SimServer
from replibatch.sim.trainers import read_zip

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "fine_tune"
TOKEN = "r8_train_test"
ME = "replibatch-sim"
TRAINER = "replibatch/tiny-llama"
TERMINAL = {"succeeded", "failed", "canceled"}


def make_destination(sim: SimServer, name: str) -> str:
    reply = httpx.post(f"{sim.url}/v1/models", headers={"Authorization": f"Bearer {TOKEN}"},
                       json={"owner": ME, "name": name, "visibility": "private", "hardware": "cpu"})
    assert reply.status_code == 201, reply.text
    return f"{ME}/{name}"


def pinned(sim: SimServer) -> str:
    return f"{TRAINER}:{sim.models[TRAINER].version_id}"


def sweep() -> pd.DataFrame:
    return rb.grid(train_data=[DATA / "sea-stories.zip"], steps=[100, 300],
                   learning_rate=[0.0002, 0.001])


def train(sim: SimServer, df: pd.DataFrame, **options: Any) -> pd.DataFrame:
    options.setdefault("trainer", pinned(sim))
    options.setdefault("destination", f"{ME}/sea-llama")
    return rb.train(df, api_token=TOKEN, base_url=sim.url, progress=False, **options)


def words(texts: Any) -> list[str]:
    return [w.lower() for text in texts for w in re.findall(r"[A-Za-z]+", str(text))]


def corpus_words(name: str) -> set[str]:
    return {w for _, data in read_zip((DATA / name).read_bytes(), (".txt",))
            for w in words([data.decode()])}


# --- a sweep, its re-run, the cache key ---------------------------------------------------------
def test_a_four_row_sweep_trains_four_versions_and_a_rerun_sends_nothing(sim):
    make_destination(sim, "sea-llama")
    first = train(sim, sweep())
    assert list(first["status"]) == ["succeeded"] * 4
    assert first["version"].str.startswith(f"{ME}/sea-llama:").all()
    assert first["version"].nunique() == 4 and first["training_id"].nunique() == 4
    assert not first["cached"].any()
    assert (first["predict_s"] > 0).all() and (first["cost_usd"] > 0).all()
    assert first["cost_basis"].str.contains("gpu-t4").all()
    assert sim.trainings.stats.creates == 4 and sim.trainings.stats.duplicate_creates == 0
    # One zip, four rows: uploaded once, by content.
    assert sim.stats.requests["POST /v1/files"] == 1
    # What Replicate reports for each training is what the row says.
    for _, row in first.iterrows():
        record = httpx.get(f"{sim.url}/v1/trainings/{row['training_id']}",
                           headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert record["output"]["version"] == row["version"]
        assert record["input"]["steps"] == row["steps"]

    before = sum(sim.stats.requests.values())
    again = train(sim, sweep())
    assert sum(sim.stats.requests.values()) == before  # zero requests: all from the cache
    assert again["cached"].all() and list(again["version"]) == list(first["version"])
    assert sim.trainings.stats.creates == 4
    fresh = train(sim, sweep().head(1), refresh=True)  # refresh trains again, and keeps that
    assert not fresh["cached"].any() and sim.trainings.stats.creates == 5
    assert train(sim, sweep().head(1))["version"].iloc[0] == fresh["version"].iloc[0]


def test_each_training_is_recorded_once_in_the_spend_ledger(sim):
    make_destination(sim, "sea-llama")
    df = sweep().head(2)
    first = train(sim, df)
    train(sim, df)
    entries = [e for e in ledger_for(True).entries() if e.kind == "training"]
    assert sorted(e.prediction_id for e in entries) == sorted(first["training_id"])
    assert sum(e.cost_usd for e in entries) == pytest.approx(first["cost_usd"].sum())


def test_the_key_is_the_data_content_and_the_destination_not_the_path(sim, tmp_path):
    make_destination(sim, "sea-llama")
    make_destination(sim, "other-llama")
    copy = tmp_path / "renamed.zip"
    copy.write_bytes((DATA / "sea-stories.zip").read_bytes())
    one = pd.DataFrame({"train_data": [DATA / "sea-stories.zip"], "steps": [100]})
    train(sim, one)
    renamed = train(sim, pd.DataFrame({"train_data": [copy], "steps": [100]}))
    assert renamed["cached"].all() and sim.trainings.stats.creates == 1
    elsewhere = train(sim, one, destination=f"{ME}/other-llama")
    assert not elsewhere["cached"].any() and sim.trainings.stats.creates == 2
    assert elsewhere["version"].iloc[0].startswith(f"{ME}/other-llama:")


# --- crashes and lost replies -------------------------------------------------------------------
def test_kill_9_during_the_trainings_and_a_rerun_creates_no_second_training(sim, tmp_path):
    make_destination(sim, "sea-llama")
    sim.configure(predict_time=400.0)  # 4 s real per training at time_scale 0.01
    cache = tmp_path / "cache"
    script = textwrap.dedent(f"""
        import replibatch as rb
        from pathlib import Path
        df = rb.grid(train_data=[Path({str(DATA / 'sea-stories.zip')!r})], steps=[100, 300],
                     learning_rate=[0.0002, 0.001])
        rb.train(df, trainer={pinned(sim)!r}, destination="{ME}/sea-llama", api_token={TOKEN!r},
                 base_url={sim.url!r}, cache={str(cache)!r}, progress=False)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 30
        while sim.trainings.stats.creates < 4 and time.monotonic() < deadline:
            assert child.poll() is None, "the child ended before all its trainings started"
            time.sleep(0.02)
        assert sim.trainings.stats.creates == 4
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    sim.configure(predict_time=None)
    out = train(sim, sweep(), cache=cache)
    assert list(out["status"]) == ["succeeded"] * 4
    assert sim.trainings.stats.creates == 4 and sim.trainings.stats.duplicate_creates == 0
    assert out["training_id"].nunique() == 4


@pytest.mark.parametrize("fault", ["error_after_create_rate", "drop_after_create_rate"])
def test_a_lost_create_reply_is_reconciled_not_created_again(sim, fault):
    make_destination(sim, "sea-llama")
    sim.configure(**{fault: 1.0}, fault_scope="create")
    out = train(sim, sweep().head(2))
    assert list(out["status"]) == ["succeeded"] * 2
    assert sim.trainings.stats.creates == 2 and sim.trainings.stats.duplicate_creates == 0
    assert sim.trainings.stats.faults  # the replies really were lost


class _AsyncNoListing(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/v1/trainings":
            return httpx.Response(500, json={"detail": "listing is down"})
        return await self.inner.handle_async_request(request)


def test_an_unknown_create_outcome_that_cannot_be_reconciled_keeps_its_marker(sim):
    make_destination(sim, "sea-llama")
    sim.configure(error_after_create_rate=1.0, fault_scope="create")
    client = Connection(api_token=TOKEN, base_url=sim.url, transport=_AsyncNoListing())
    df = sweep().head(1)
    out = rb.train(df, trainer=pinned(sim), destination=f"{ME}/sea-llama", client=client,
                   retries=1, progress=False)
    assert out["status"].iloc[0] == "error"
    assert "create outcome unknown" in out["error"].iloc[0]
    assert sim.trainings.stats.creates == 1  # never re-sent blind
    # The next run (listing works again) re-attaches to the training the lost reply made.
    sim.configure(error_after_create_rate=0.0)
    again = train(sim, df)
    assert again["status"].iloc[0] == "succeeded" and sim.trainings.stats.creates == 1


# --- deadlines, interrupts, budgets --------------------------------------------------------------
def test_a_training_past_its_timeout_is_canceled_on_replicate(sim):
    make_destination(sim, "sea-llama")
    sim.configure(predict_time=1000.0)  # 10 s real
    out = train(sim, sweep().head(2), timeout=0.3)
    assert list(out["status"]) == ["timeout"] * 2
    assert out["error"].str.contains("canceled on Replicate").all()
    assert sim.trainings.stats.cancels == 2
    # Not cached: a re-run trains afresh.
    sim.configure(predict_time=None)
    assert (train(sim, sweep().head(2))["status"] == "succeeded").all()


def test_an_interrupted_run_cancels_its_trainings(sim):
    make_destination(sim, "sea-llama")
    sim.configure(predict_time=1000.0)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            async def sweep_then_cancel() -> None:
                await rb.atrain(sweep(), trainer=pinned(sim), destination=f"{ME}/sea-llama",
                                api_token=TOKEN, base_url=sim.url, progress=False)

            tg.start_soon(sweep_then_cancel)
            with anyio.fail_after(20):
                while sim.trainings.stats.creates < 4:
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()  # what a notebook's stop button does to the cell's task

    anyio.run(main, backend="asyncio")
    assert sim.trainings.stats.creates == 4 and sim.trainings.stats.cancels == 4


def test_max_cost_reserves_timeout_times_the_hardware_price(sim):
    make_destination(sim, "sea-llama")
    unbounded = train(sim, sweep(), max_cost=1.0)  # no timeout: no worst case
    assert (unbounded["status"] == "skipped_budget").all()
    assert unbounded["error"].str.contains("timeout=").all()
    assert sim.trainings.stats.creates == 0
    # gpu-t4 $0.000225/s: a 10 s worst case is ~$0.0025 each; $0.006 leaves room for two at
    # a time. Trainings finish far below it, so the others wait for room and then run.
    sim.configure(predict_time=50.0)  # 0.5 s real each: long enough to overlap
    capped = train(sim, sweep(), max_cost=0.006, timeout=10.0, concurrency=4)
    assert (capped["status"] == "succeeded").all() and capped["cost_usd"].sum() <= 0.006
    records = [httpx.get(f"{sim.url}/v1/trainings/{t}", headers={"Authorization": f"Bearer {TOKEN}"}
                         ).json() for t in capped["training_id"]]
    spans = [(r["created_at"], r["completed_at"]) for r in records]
    most = max(sum(1 for a, b in spans if a <= at < b) for at, _ in spans)
    assert most == 2, spans  # never more than two worst cases in flight
    # A cap under one training's worst case starts nothing.
    tiny = train(sim, sweep().head(1).assign(steps=7), max_cost=0.002, timeout=10.0)
    assert tiny["status"].iloc[0] == "skipped_budget" and sim.trainings.stats.creates == 4


def test_a_trainer_without_a_per_second_price_refuses_under_max_cost(sim):
    make_destination(sim, "sea-llama")
    # Priced per output: no hardware price per second, so no training worst case.
    prices = {"models": {TRAINER: {"usd_per_output": 0.01, "unit": "image"}}}
    out = train(sim, sweep().head(1), max_cost=1.0, timeout=10.0, prices=prices)
    assert out["status"].iloc[0] == "skipped_budget"
    assert "hardware=" in out["error"].iloc[0] and sim.trainings.stats.creates == 0


# --- from training to comparison ----------------------------------------------------------------
def test_trained_versions_write_like_the_data_they_were_trained_on(sim):
    make_destination(sim, "sea-llama")
    make_destination(sim, "forest-llama")
    df = pd.DataFrame({
        "train_data": [DATA / "sea-stories.zip", DATA / "forest-stories.zip"],
        "dest": [f"{ME}/sea-llama", f"{ME}/forest-llama"],
        "steps": [300, 300], "learning_rate": [0.001, 0.001],
    })
    trained = train(sim, df, destination="dest")
    assert (trained["status"] == "succeeded").all()
    prompts = pd.DataFrame({"prompt": ["Tell me about the city at night", "Describe a walk",
                                       "What is a machine?"], "seed": 1, "max_tokens": 80})
    runs = rb.trained_grid(trained, prompts)
    assert list(runs.columns[:4]) == ["train_data", "dest", "steps", "learning_rate"]
    out = rb.run(runs, inputs=["prompt", "seed", "max_tokens"], api_token=TOKEN,
                 base_url=sim.url, progress=False)
    assert (out["status"] == "succeeded").all()
    sea, forest = corpus_words("sea-stories.zip"), corpus_words("forest-stories.zip")
    sea_only, forest_only = sea - forest, forest - sea
    for dest, own, other in ((f"{ME}/sea-llama", sea_only, forest_only),
                             (f"{ME}/forest-llama", forest_only, sea_only)):
        found = words(out.loc[out["dest"] == dest, "output"])
        assert sum(w in own for w in found) > 3 * max(1, sum(w in other for w in found)), dest


def test_trained_grid_carries_hyper_parameters_and_drops_failed_trainings():
    trained = pd.DataFrame({
        "steps": [100, 300], "lr": [0.1, 0.2], "training_id": ["t1", "t2"],
        "status": ["succeeded", "failed"], "error": [None, "boom"],
        "version": ["me/m:v1", None], "cost_usd": [0.1, 0.0], "cached": [False, False],
    })
    out = rb.trained_grid(trained, pd.DataFrame({"prompt": ["a", "b"]}))
    assert out.to_dict("list") == {"steps": [100, 100], "lr": [0.1, 0.1],
                                   "training_id": ["t1", "t1"], "model": ["me/m:v1"] * 2,
                                   "prompt": ["a", "b"]}
    with pytest.raises(rb.ConfigurationError):
        rb.trained_grid(trained.assign(status="failed"), pd.DataFrame({"prompt": ["a"]}))


def test_the_official_client_trains_against_the_simulator(sim):
    # The official client's own calls (the check exists in tests/sim; here: what rb.train made
    # is readable through it).
    make_destination(sim, "sea-llama")
    out = train(sim, sweep().head(1))
    client = replicate.Client(api_token=TOKEN, base_url=sim.url)
    got = client.trainings.get(out["training_id"].iloc[0])
    assert got.status == "succeeded" and got.output["version"] == out["version"].iloc[0]
    assert got.status in TERMINAL


# --- inputs, destinations, progress, Ctrl-C -----------------------------------------------------
def test_a_path_string_is_a_file_where_the_trainer_schema_says_so(sim):
    make_destination(sim, "sea-llama")
    df = pd.DataFrame({"train_data": [str(DATA / "sea-stories.zip")], "steps": [50]})
    out = train(sim, df, trainer=TRAINER)  # owner/name: its latest version and schema
    assert out["status"].iloc[0] == "succeeded"
    assert sim.stats.requests["POST /v1/files"] == 1  # sent as an uploaded file, not as text
    # Keyed by content: the same bytes given as a Path are the same training.
    again = train(sim, pd.DataFrame({"train_data": [DATA / "sea-stories.zip"], "steps": [50]}),
                  trainer=TRAINER)
    assert again["cached"].all() and sim.trainings.stats.creates == 1


def test_an_unknown_destination_ends_the_row_with_the_services_words(sim):
    out = train(sim, sweep().head(1), destination=f"{ME}/nowhere")
    assert out["status"].iloc[0] == "error"
    assert "destination does not exist" in out["error"].iloc[0]
    assert sim.trainings.stats.creates == 0


def test_the_bar_follows_the_trainings_own_percentages(sim, monkeypatch):
    from replibatch._engine import train as train_module
    from replibatch._engine.training_bar import TrainingBar

    seen: list[float] = []

    class Recorder:
        n = 0.0

        def set_postfix_str(self, text: str, refresh: bool = True) -> None:
            pass

        def refresh(self) -> None:
            seen.append(self.n)

        def close(self) -> None:
            pass

    monkeypatch.setattr(train_module, "open_training_bar",
                        lambda total, cached, progress: TrainingBar(Recorder(), total=total,
                                                                    cached=cached))
    make_destination(sim, "sea-llama")
    sim.configure(predict_time=100.0)  # 1 s real: ten log lines of progress
    train(sim, sweep().head(1))
    partial = [n for n in seen if 0 < n < 1]
    assert len(set(partial)) >= 3, seen  # moved in steps within the one training
    assert seen[-1] == 1


def test_ctrl_c_in_the_caller_cancels_the_trainings_on_replicate(sim):
    import _thread
    import threading

    make_destination(sim, "sea-llama")
    sim.configure(predict_time=1000.0)
    def interrupt_once_created() -> None:
        deadline = time.monotonic() + 20
        while sim.trainings.stats.creates < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        box["at"] = time.monotonic()
        _thread.interrupt_main()

    box: dict[str, float] = {}
    threading.Thread(target=interrupt_once_created, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        train(sim, sweep())
    assert time.monotonic() - box["at"] < 6.0  # control is back within ~4 s of Ctrl-C
    deadline = time.monotonic() + 5
    while sim.trainings.stats.cancels < sim.trainings.stats.creates and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.trainings.stats.creates == 4 and sim.trainings.stats.cancels == 4


def test_rows_the_trainer_schema_refuses_are_not_sent(sim):
    make_destination(sim, "sea-llama")
    df = pd.DataFrame({"train_data": [DATA / "sea-stories.zip"] * 3, "steps": [100, 99999, 100],
                       "colour": [None, None, "red"]})
    out = train(sim, df)
    assert out["status"].tolist() == ["succeeded", "error", "error"]
    assert "steps" in out["error"].iloc[1] and "colour" in out["error"].iloc[2]
    assert sim.trainings.stats.creates == 1


def test_image_versions_take_the_palette_of_their_training_images(sim):
    from PIL import Image, ImageStat

    make_destination(sim, "warm-pixels")
    make_destination(sim, "cool-pixels")
    df = pd.DataFrame({
        "input_images": [DATA / "warm-images.zip", DATA / "cool-images.zip"],
        "dest": [f"{ME}/warm-pixels", f"{ME}/cool-pixels"], "steps": [300, 300],
        "learning_rate": [0.001, 0.001],
    })
    pixel = "replibatch/pixel-diffusion"
    trained = train(sim, df, trainer=f"{pixel}:{sim.models[pixel].version_id}", destination="dest")
    assert (trained["status"] == "succeeded").all()
    prompts = pd.DataFrame({"prompt": ["a TOK house", "a TOK garden"], "seed": 5, "width": 64,
                            "height": 64})
    out = rb.run(rb.trained_grid(trained, prompts), inputs=["prompt", "seed", "width", "height"],
                 api_token=TOKEN, base_url=sim.url, progress=False)
    assert (out["status"] == "succeeded").all()

    def red_minus_blue(paths: Any) -> float:
        total = 0.0
        for files in paths:
            r, _, b = ImageStat.Stat(Image.open(files[0]).convert("RGB")).mean
            total += r - b
        return total / len(paths)

    warm = red_minus_blue(out.loc[out["dest"] == f"{ME}/warm-pixels", "output"].tolist())
    cool = red_minus_blue(out.loc[out["dest"] == f"{ME}/cool-pixels", "output"].tolist())
    assert warm > 0 > cool, (warm, cool)

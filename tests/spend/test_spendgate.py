"""Issue 16, engine side: every created prediction in the ledger once, standing budgets held by
every run (also across processes), a 402 that stops the run cleanly. Simulator on real sockets."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import replibatch as rb
from replibatch._spend.ledger import LEDGER_FILE, token_fingerprint
from replibatch.sim import serve

TOKEN = "r8_spendgate_secret_token_0000000000000000"
TEXT = "replibatch/tiny-llama"
CHAT = "replibatch/official-chat"  # priced per token: a bounded worst case with max_tokens


def go(df, sim, **options):
    options.setdefault("progress", False)
    options.setdefault("api_token", TOKEN)
    return rb.run(df, base_url=sim.url, **options)


def prompts(n: int, tag: str = "row", **extra) -> pd.DataFrame:
    return pd.DataFrame({"prompt": [f"{tag} {i}" for i in range(n)], **extra})


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("REPLIBATCH_CACHE_DIR", str(directory))
    for period in ("DAILY", "WEEKLY", "MONTHLY"):
        monkeypatch.delenv(f"REPLIBATCH_{period}_BUDGET", raising=False)
    return directory


def test_each_created_prediction_is_in_the_ledger_once_and_cached_rows_add_nothing(sim, cache_dir):
    res = go(prompts(12, max_tokens=4), sim, model=TEXT, concurrency=6)
    assert (res["status"] == "succeeded").all()
    ledger = rb.spend()
    assert sorted(ledger["prediction_id"]) == sorted(res["prediction_id"])
    assert (ledger["status"] == "succeeded").all()
    assert ledger["cost_usd"].sum() == pytest.approx(res["cost_usd"].sum())
    assert ledger["predict_s"].notna().all() and set(ledger["model"]) == {TEXT}
    assert set(ledger["token"]) == {token_fingerprint(TOKEN)}
    summary = res.attrs["replibatch"]
    assert summary["spend_by_token"] == {token_fingerprint(TOKEN): pytest.approx(res["cost_usd"].sum())}
    again = go(prompts(12, max_tokens=4), sim, model=TEXT)
    assert again["cached"].all()
    assert len(rb.spend()) == 12 and sim.stats.creates == 12
    # The token itself is nowhere in the database files (WAL included), only its fingerprint.
    files = list(cache_dir.glob(LEDGER_FILE + "*"))
    assert files
    raw = b"".join(f.read_bytes() for f in files)
    assert TOKEN.encode() not in raw and TOKEN[:12].encode() not in raw
    assert token_fingerprint(TOKEN).encode() in raw  # type: ignore[union-attr]


def test_a_refused_create_leaves_nothing_in_the_ledger(sim, cache_dir):
    sim.configure(create_rate=None)
    res = go(prompts(3), sim, model="replibatch/no-such-model")
    assert (res["status"] == "error").all()
    assert len(rb.spend()) == 0


def test_a_daily_budget_stops_a_second_run_at_the_cap(sim, cache_dir):
    rb.set_budget(daily=0.0004)
    first = go(prompts(4, "first", max_tokens=40), sim, model=CHAT)
    assert (first["status"] == "succeeded").all()
    second = go(prompts(40, "second", max_tokens=40), sim, model=CHAT, concurrency=8)
    skipped = second[second["status"] == "skipped_budget"]
    assert len(skipped) > 0 and (second["status"] == "succeeded").sum() > 0
    assert set(second["status"]) <= {"succeeded", "skipped_budget"}
    assert skipped["error"].str.contains("daily budget of \\$0.00", regex=True).all()
    assert skipped["error"].str.contains("left").all()
    assert rb.spend()["cost_usd"].sum() <= 0.0004
    # Skipped rows sent nothing: every create is in the ledger.
    assert sim.stats.creates == len(rb.spend())


def test_the_environment_budget_applies_too(sim, cache_dir, monkeypatch):
    monkeypatch.setenv("REPLIBATCH_DAILY_BUDGET", "0")
    res = go(prompts(3, max_tokens=10), sim, model=CHAT)
    assert (res["status"] == "skipped_budget").all()
    assert res["error"].str.contains("daily budget of \\$0.00", regex=True).all()
    assert sim.stats.creates == 0


_SCRIPT = textwrap.dedent(
    """
    import sys
    import pandas as pd
    import replibatch as rb
    url, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    df = pd.DataFrame({"prompt": [f"{tag} {i}" for i in range(n)], "max_tokens": 40})
    res = rb.run(df, model="replibatch/official-chat", api_token="r8_proc_token_" + tag,
                 base_url=url, progress=False, concurrency=4)
    print(dict(res["status"].value_counts()))
    """
)


def _processes(sim, tmp_path, cache_dir, jobs):
    script = tmp_path / "one_run.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "REPLIBATCH_CACHE_DIR": str(cache_dir),
           "PYTHONPATH": str(Path(rb.__file__).parent.parent)}
    procs = [subprocess.Popen([sys.executable, str(script), sim.url, tag, str(n)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for tag, n in jobs]
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]


def test_two_runs_in_two_processes_both_appear_in_spend(sim, cache_dir, tmp_path):
    _processes(sim, tmp_path, cache_dir, [("a", 5), ("b", 7)])
    by_token = rb.spend(by="token")
    assert by_token.loc[token_fingerprint("r8_proc_token_a"), "predictions"] == 5
    assert by_token.loc[token_fingerprint("r8_proc_token_b"), "predictions"] == 7
    assert len(rb.spend()) == sim.stats.creates == 12


def test_a_standing_budget_is_never_passed_by_two_processes_at_once(sim, cache_dir, tmp_path):
    cap = 0.0006
    rb.set_budget(daily=cap)
    _processes(sim, tmp_path, cache_dir, [("a", 30), ("b", 30)])
    spent = rb.spend()
    assert spent["cost_usd"].sum() <= cap
    assert spent["cost_usd"].sum() >= 0.3 * cap  # the cap was used, not refused outright
    assert len(spent) == sim.stats.creates < 60


def test_402_with_one_token_stops_the_run_cleanly(cache_dir):
    with serve(time_scale=0.01, seed=0, credit={TOKEN: 0.0003}) as sim:
        res = go(prompts(30, max_tokens=40), sim, model=CHAT, concurrency=1)
        created = res["prediction_id"].notna()
        assert 0 < created.sum() < 30
        assert (res.loc[created, "status"] == "succeeded").all()
        errors = res.loc[~created]
        assert (errors["status"] == "error").all()
        assert errors["error"].str.contains("needs credit or billing").all()
        assert errors["error"].str.contains("replicate.com/account/billing").all()
        # One 402, and nothing sent after it: no retry storm.
        assert sim.stats.statuses.get(402) == 1
        assert sim.stats.creates == created.sum()
        summary = res.attrs["replibatch"]
        assert "needs credit or billing" in summary["stopped"]
        assert "stopped:" in str(summary)
        # The refused create made nothing: the ledger holds exactly the created ones, no
        # reservation is left open.
        ledger = rb.spend()
        assert sorted(ledger["prediction_id"]) == sorted(res.loc[created, "prediction_id"])
        assert (ledger["status"] == "succeeded").all()


def test_a_generous_standing_budget_lets_a_per_second_model_run_whole(cache_dir):
    # No typical predict time for this model: the first row is a probe reserved at nearly all
    # that is left; the other rows wait for its figure, then are reserved at 4x the time seen.
    rb.set_budget(weekly=1.0)
    with serve(time_scale=0.1, seed=0) as slower:  # predictions long enough to be cut short
        res = go(prompts(10, max_tokens=8), slower, model=TEXT, concurrency=5)
        assert (res["status"] == "succeeded").all(), res["error"].dropna().unique()
        assert len(rb.spend()) == slower.stats.creates == 10
        assert slower.stats.cancels == 0
    assert rb.spend()["cost_usd"].sum() <= 1.0


def test_an_interrupted_run_leaves_no_reservation_for_creates_never_sent(cache_dir):
    import asyncio

    import anyio

    rb.set_budget(daily=1.0)
    with serve(time_scale=1.0, predict_time=30.0) as sim:

        async def main() -> None:
            with anyio.move_on_after(1.5):
                await rb.arun(prompts(6, max_tokens=20), model=CHAT, api_token=TOKEN,
                              base_url=sim.url, progress=False, rate_limit=2)  # one per 30 s

        asyncio.run(main())
        assert 1 <= sim.stats.creates < 6
        # The creates sent keep their entry (one whose reply never came stays counted at its
        # worst case: its outcome was not known to this run); the rows never sent left none.
        assert len(rb.spend()) == sim.stats.creates


def test_402_with_concurrency_sends_no_create_after_the_refusals_in_flight(cache_dir):
    with serve(time_scale=0.01, seed=0, credit={TOKEN: 0.0}) as sim:
        res = go(prompts(40, max_tokens=40), sim, model=CHAT, concurrency=8)
        assert (res["status"] == "error").all()
        assert res["error"].str.contains("needs credit or billing").all()
        # Only creates already on their way when the first 402 came back were answered 402.
        refused = sim.stats.statuses.get(402, 0)
        assert 1 <= refused <= 8 and sim.stats.creates == 0
        assert len(rb.spend()) == 0

"""Polling many predictions with list pages, deadlines on the wire, limits shared by processes."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest
import replicate

import replibatch as rb
from replibatch._engine import create
from replibatch._engine.shared_limits import SharedSchedule, account_fingerprint
from replibatch._http import Connection
from replibatch.sim import serve

TOKEN = "r8_test_not_a_real_token_0000000000000000"
TEXT = "replibatch/tiny-llama"


def prompts(n: int) -> pd.DataFrame:
    return pd.DataFrame({"prompt": [f"poll me {i}" for i in range(n)], "max_tokens": 4})


# --- polling ----------------------------------------------------------------------------------


def test_many_predictions_in_flight_are_polled_by_list_pages(monkeypatch):
    monkeypatch.setattr(create, "MAX_WAIT", 0)  # no Prefer: wait, so every row polls
    rows = 250
    with serve(time_scale=1.0, predict_time=2.0, create_rate=None, seed=2) as sim:
        warm = pd.DataFrame({"prompt": ["warm the model up"], "max_tokens": 4})
        rb.run(warm, model=TEXT, api_token=TOKEN, base_url=sim.url, progress=False, cache=False)
        sim.stats.reset()
        res = rb.run(prompts(rows), model=TEXT, api_token=TOKEN, base_url=sim.url, progress=False,
                     concurrency=rows, rate_limit=10**6)
        requests = sim.stats.requests
        official = replicate.Client(api_token=TOKEN, base_url=sim.url)
        finished = [official.predictions.get(pid).completed_at for pid in res["prediction_id"]]
    assert (res["status"] == "succeeded").all()
    pages = requests.get("GET /v1/predictions", 0)
    gets = requests.get("GET /v1/predictions/{prediction_id}", 0)
    poll = res.attrs["replibatch"]["poll"]
    assert poll["pages"] == pages and poll["gets"] == gets
    # One GET each per look would be > 1,000 requests; pages of 100 need a few dozen at most.
    assert 0 < pages <= 60 and gets <= 10, (pages, gets)
    # A finish is noticed soon after the server's completed_at (same machine, same clock).
    server_done = [datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() for t in finished]
    late = res["completed_at"].to_numpy() - server_done
    assert late.max() < 5.0, pd.Series(late).describe()  # generous: a loaded 2-core machine


def test_a_few_predictions_are_polled_one_get_each(monkeypatch):
    monkeypatch.setattr(create, "MAX_WAIT", 0)
    with serve(time_scale=1.0, predict_time=0.8, seed=2) as sim:
        res = rb.run(prompts(3), model=TEXT, api_token=TOKEN, base_url=sim.url, progress=False)
        requests = sim.stats.requests
    assert (res["status"] == "succeeded").all()
    assert requests.get("GET /v1/predictions", 0) == 0
    assert 3 <= requests.get("GET /v1/predictions/{prediction_id}", 0) <= 12


# --- deadlines --------------------------------------------------------------------------------


class _Recorder(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.creates: list[httpx.Headers] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/predictions"):
            self.creates.append(request.headers)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("timeout", [0.5, 1.5])
def test_rows_end_at_their_deadline_and_the_create_carries_cancel_after(timeout):
    with serve(time_scale=1.0, predict_time=3.0, seed=3) as sim:
        recorder = _Recorder()
        client = Connection(api_token=TOKEN, base_url=sim.url, transport=recorder)
        started = time.monotonic()
        res = rb.run(prompts(4), model=TEXT, client=client, timeout=timeout, progress=False)
        wall = time.monotonic() - started
        assert sim.stats.cancels == 4
    assert (res["status"] == "timeout").all()
    assert res["latency_s"].max() <= timeout + 0.2 and res["latency_s"].min() >= timeout
    assert res["predict_s"].max() <= timeout + 0.2
    assert wall < timeout + 2.0
    assert [h.get("cancel-after") for h in recorder.creates] == ["5s"] * 4
    expected = None if timeout < 1 else f"wait={int(timeout)}"
    assert [h.get("prefer") for h in recorder.creates] == [expected] * 4


# --- limits shared by processes ---------------------------------------------------------------


class Wall:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_two_schedules_on_one_directory_share_one_rate(tmp_path: Path):
    wall = Wall()
    account = account_fingerprint("r8_secret", "http://127.0.0.1:1")
    a = SharedSchedule(tmp_path, account, "create", wall=wall)
    b = SharedSchedule(tmp_path, account, "create", wall=wall)
    waits = [(a if i % 2 else b).claim(6000) for i in range(40)]  # both at the account's rate
    # one rate between them: after a catch-up burst of 0.1 s worth, slots 0.01 s apart
    assert waits == [pytest.approx(max(0.0, i * 0.01 - 0.1), abs=1e-6) for i in range(40)]
    assert "r8_secret" not in account and not any("r8_secret" in p.name for p in tmp_path.rglob("*"))
    other_account = account_fingerprint("r8_other", "http://127.0.0.1:1")
    other = SharedSchedule(tmp_path, other_account, "create", wall=wall)
    assert other.claim(6000) == 0.0  # another account has its own limits


def test_a_pause_and_a_learned_rate_hold_for_every_process(tmp_path: Path):
    wall = Wall()
    a = SharedSchedule(tmp_path, "acct", "create", wall=wall)
    b = SharedSchedule(tmp_path, "acct", "create", wall=wall)
    a.pause(2.0)
    assert b.claim(6000) == pytest.approx(2.0)
    a.learned(600)
    assert b.shared_rate() == 600
    wall.now += 10
    claims = [b.claim(6000) for _ in range(3)]  # after the 0.1 s catch-up, 0.1 s apart
    assert claims[2] - claims[1] == pytest.approx(0.1)  # the other process's learned 600/min
    wall.now += 1000
    assert b.shared_rate() is None  # stale: no longer imposed


def test_an_unusable_directory_turns_sharing_off(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    schedule = SharedSchedule(blocker, "acct", "read")
    assert not schedule.enabled and schedule.claim(3000) == 0.0

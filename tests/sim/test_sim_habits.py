"""The simulator's real-service habits: official models' internal names, key shapes, gateway
errors after a create, deep list paging, Cancel-After (aborted / canceled), delivery faults and
large files, rate-limit servers (accounts, headers, mid-run changes) and the counters."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from simhttp import AUTH, create, wait_terminal  # shared simulator HTTP helpers

from replibatch.sim import ACCOUNTS, SimServer, serve
from replibatch.sim.habits import (
    CancelAfterError,
    internal_model_name,
    parse_cancel_after,
)
from replibatch.sim.listing import page_of

THROTTLED = re.compile(r"Request was throttled\. Your rate limit resets in ~(\d+)s\.")


@pytest.fixture
def http(sim: SimServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, headers=AUTH, timeout=10) as client:
        yield client



# -- official models name another model -------------------------------------------------------------
def test_internal_name_follows_the_recorded_form() -> None:
    # test_predictions_create_by_model[True].yaml
    assert internal_model_name("meta", "meta-llama-3-8b-instruct") == (
        "replicate-internal/llama-3-8b-instruct-int8-triton")
    assert internal_model_name("replibatch", "official-chat") == (
        "replicate-internal/official-chat-int8-triton")


def test_official_model_predictions_report_an_internal_model(sim: SimServer,
                                                             http: httpx.Client) -> None:
    r = http.post("/v1/models/replibatch/official-chat/predictions",
                  json={"input": {"prompt": "hi", "max_tokens": 2}})
    assert r.status_code == 201
    internal = "replicate-internal/official-chat-int8-triton"
    assert r.json()["model"] == internal
    assert http.get(r.json()["urls"]["get"]).json()["model"] == internal
    listed = {p["id"]: p["model"] for p in http.get("/v1/predictions").json()["results"]}
    assert listed[r.json()["id"]] == internal
    # A non-official model run by name keeps its own name; the habit can be switched off.
    by_name = http.post("/v1/models/replibatch/tiny-llama/predictions", json={"input": {"prompt": "x"}})
    assert by_name.json()["model"] == "replibatch/tiny-llama"
    sim.configure(official_internal_names=False)
    r2 = http.post("/v1/models/replibatch/official-chat/predictions", json={"input": {"prompt": "x"}})
    assert r2.json()["model"] == "replibatch/official-chat"


# -- key shapes ------------------------------------------------------------------------------------
def test_unfinished_bodies_omit_output_finished_have_it_and_expired_keep_it_null(
    sim: SimServer, http: httpx.Client
) -> None:
    sim.configure(queue_delay=10.0, retention=10.0)  # 0.1 s each at time_scale 0.01
    body = create(http, sim, {"prompt": "x", "max_tokens": 3}).json()
    assert body["status"] == "starting"
    assert not {"output", "data_removed", "metrics", "completed_at", "started_at"} & set(body)
    assert set(body["urls"]) == {"get", "cancel", "stream"}
    done = wait_terminal(http, body["id"])
    assert done["status"] == "succeeded" and done["data_removed"] is False
    assert len(done["output"]) == 3 and "web" in done["urls"]
    deadline = time.monotonic() + 5
    gone = done
    while not gone["data_removed"] and time.monotonic() < deadline:
        time.sleep(0.02)
        gone = http.get(f"/v1/predictions/{body['id']}").json()
    assert gone["data_removed"] is True and "output" in gone and gone["output"] is None


# -- a gateway 5xx after the prediction was created -------------------------------------------------
@pytest.mark.parametrize("status", [502, 503, 504])
def test_error_after_create_records_the_prediction(sim: SimServer, http: httpx.Client,
                                                   status: int) -> None:
    sim.configure(error_after_create_rate=1.0, error_after_create_statuses=(status,))
    r = create(http, sim, {"prompt": "lost reply", "max_tokens": 1})
    assert r.status_code == status and r.headers["content-type"].startswith("text/html")
    assert "cloudflare" in r.text
    assert sim.stats.creates == 1 and sim.stats.errors_after_create == 1
    assert sim.stats.faults == {f"error_after_create_{status}": 1}
    sim.configure(error_after_create_rate=0.0)
    listed = http.get("/v1/predictions").json()["results"]
    assert [p["input"]["prompt"] for p in listed] == ["lost reply"]


# -- list paging ---------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.sampled_from([0.0, 0.5, 1.0]), max_size=60),
    page_size=st.integers(1, 12),
    after=st.none() | st.floats(-1, 40, allow_nan=False),
    before=st.none() | st.floats(-1, 40, allow_nan=False),
)
def test_paging_visits_each_prediction_in_the_window_once(
    gaps: list[float], page_size: int, after: float | None, before: float | None
) -> None:
    created, t = [], 0.0
    for gap in gaps:
        t += gap
        created.append(t)
    expected = [i for i in range(len(created) - 1, -1, -1)
                if (after is None or created[i] > after) and (before is None or created[i] < before)]
    seen: list[int] = []
    start: int | None = None
    pages = 0
    while True:
        page = page_of(created, start, page_size, after, before)
        pages += 1
        assert len(page.positions) <= page_size
        assert page.positions or pages == 1  # never an empty page on the way to the window
        seen += list(page.positions)
        if page.next_start is None:
            break
        start = page.next_start
    assert seen == expected
    assert pages == max(1, -(-len(expected) // page_size))


def test_list_pages_of_100_newest_first_with_a_time_window(http: httpx.Client,
                                                            sim: SimServer) -> None:
    sim.configure(create_rate=None, predict_time=0)
    ids = [create(http, sim, {"prompt": f"p{i}", "max_tokens": 1}).json()["id"] for i in range(250)]
    seen: list[str] = []
    url: str | None = "/v1/predictions"
    sizes = []
    while url:
        page = http.get(url).json()
        sizes.append(len(page["results"]))
        seen += [p["id"] for p in page["results"]]
        url = page["next"]
    assert seen == ids[::-1] and sizes == [100, 100, 50]
    assert sim.stats.list_pages == 3
    # A window given by two predictions' own created_at: both bounds exclusive.
    first = http.get(f"/v1/predictions/{ids[30]}").json()["created_at"]
    last = http.get(f"/v1/predictions/{ids[160]}").json()["created_at"]
    window: list[str] = []
    url = f"/v1/predictions?created_after={first}&created_before={last}"
    while url:
        page = http.get(url).json()
        assert page["results"]  # no empty pages on the way
        window += [p["id"] for p in page["results"]]
        url = page["next"]
    assert window == ids[31:160][::-1]


def test_paging_is_stable_while_predictions_are_created(http: httpx.Client, sim: SimServer) -> None:
    # A reconcile sweep pages back while the run keeps creating: new predictions go on top and
    # must not shift, repeat or hide the older pages the sweep is reading.
    sim.configure(create_rate=None, predict_time=0, page_size=10)
    ids = [create(http, sim, {"prompt": f"p{i}", "max_tokens": 1}).json()["id"] for i in range(35)]
    page = http.get("/v1/predictions").json()
    seen = [p["id"] for p in page["results"]]
    url = page["next"]
    while url:
        create(http, sim, {"prompt": "newer", "max_tokens": 1})
        page = http.get(url).json()
        seen += [p["id"] for p in page["results"]]
        url = page["next"]
    assert seen == ids[::-1]


# -- Cancel-After --------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "seconds"), [
    ("30", 30.0), ("30s", 30.0), ("90s", 90.0), ("5m", 300.0), ("1h", 3600.0),
    ("2h30m", 9000.0), ("1h30m45s", 5445.0), ("0.5s", 0.5), ("500ms", 0.5), ("1m30s", 90.0),
    (" 1.25 ", 1.25),
])
def test_cancel_after_parses_the_spec_forms(text: str, seconds: float) -> None:
    assert parse_cancel_after(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "5x", "1s5", "1m30", "-5s", "5 s", "1h 30m", "abc"])
def test_cancel_after_rejects_non_durations(text: str) -> None:
    with pytest.raises(CancelAfterError):
        parse_cancel_after(text)


def test_malformed_cancel_after_is_400_and_creates_nothing(sim: SimServer, http: httpx.Client) -> None:
    r = create(http, sim, {"prompt": "x"}, headers={"Cancel-After": "soon"})
    assert r.status_code == 400 and sim.stats.creates == 0


def test_cancel_after_below_the_minimum_is_raised_to_it(sim: SimServer, http: httpx.Client) -> None:
    body = create(http, sim, {"prompt": "x"}, headers={"Cancel-After": "1s"}).json()
    created = _epoch(body["created_at"])
    assert _epoch(body["deadline"]) - created == pytest.approx(5.0, abs=0.01)


def test_deadline_before_start_aborts_without_predict_time(sim: SimServer,
                                                           http: httpx.Client) -> None:
    sim.configure(cancel_after_minimum=0, queue_delay=100.0)  # 1 s starting at scale 0.01
    body = create(http, sim, {"prompt": "x"}, headers={"Cancel-After": "50ms"}).json()
    done = wait_terminal(http, body["id"])
    assert done["status"] == "aborted" and "started_at" not in done
    assert "predict_time" not in done["metrics"] and done["output"] is None
    assert sim.stats.aborted == 1 and sim.stats.cancels == 0 and sim.stats.in_flight == 0


def test_deadline_while_processing_cancels_with_predict_time_up_to_it(
    sim: SimServer, http: httpx.Client
) -> None:
    sim.configure(cancel_after_minimum=0, time_scale=1.0, queue_delay=0.1)
    body = create(http, sim, {"prompt": "x", "max_tokens": 1000},
                  headers={"Cancel-After": "0.5s"}).json()
    done = wait_terminal(http, body["id"])
    assert done["status"] == "canceled" and "started_at" in done
    # Real seconds, whatever time_scale: 0.5 s from creation minus 0.1 s queued.
    assert 0 < done["metrics"]["predict_time"] <= 0.4
    assert _epoch(done["completed_at"]) - _epoch(done["created_at"]) == pytest.approx(0.5, abs=0.002)
    assert sim.stats.cancels == 1 and sim.stats.aborted == 0


def test_cancel_after_is_real_seconds_whatever_the_time_scale(sim: SimServer,
                                                             http: httpx.Client) -> None:
    sim.configure(cancel_after_minimum=0, time_scale=0.01)
    body = create(http, sim, {"prompt": "x", "max_tokens": 1000},  # 10 model s = 0.1 real s
                  headers={"Cancel-After": "2s"}).json()
    assert wait_terminal(http, body["id"])["status"] == "succeeded"


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# -- downloads -------------------------------------------------------------------------------------
def _image_url(http: httpx.Client, sim: SimServer) -> str:
    body = create(http, sim, {"prompt": "a square", "width": 64, "height": 64},
                  ref="replibatch/pixel-diffusion", headers={"Prefer": "wait"}).json()
    assert body["status"] == "succeeded", body
    return str(body["output"][0])


def test_large_output_files_are_streamed_at_the_asked_size(sim: SimServer,
                                                           http: httpx.Client) -> None:
    sim.configure(output_file_bytes=3 * 1024 * 1024 + 7)
    url = _image_url(http, sim)
    with http.stream("GET", url) as r:
        assert int(r.headers["content-length"]) == 3 * 1024 * 1024 + 7
        data = b"".join(r.iter_bytes())
    assert len(data) == 3 * 1024 * 1024 + 7 and data.startswith(b"\x89PNG")
    assert sim.stats.downloads == 1


def test_download_faults(sim: SimServer, http: httpx.Client) -> None:
    url = _image_url(http, sim)
    sim.configure(download_error_rate=1.0)
    failed = http.get(url)
    assert failed.status_code in (502, 503) and "cloudflare" in failed.text
    sim.configure(download_error_rate=0.0, download_drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(url)
    sim.configure(download_drop_rate=0.0, download_slow_rate=1.0, download_slow_delay=0.1,
                  output_file_bytes=4 * 64 * 1024)
    slow_url = _image_url(http, sim)
    started = time.monotonic()
    assert len(http.get(slow_url).content) == 4 * 64 * 1024
    assert time.monotonic() - started >= 0.4
    assert {"download_error_502", "download_error_503"} & set(sim.stats.faults)
    assert sim.stats.faults["download_drop"] == 1 and sim.stats.faults["download_slow"] == 1


def test_output_url_base_puts_files_on_another_origin(sim: SimServer, http: httpx.Client) -> None:
    port = httpx.URL(sim.url).port
    sim.configure(output_url_base=f"http://localhost:{port}")
    url = _image_url(http, sim)
    assert url.startswith(f"http://localhost:{port}/delivery/")
    assert httpx.get(url).content.startswith(b"\x89PNG")  # no token needed, as on the CDN
    with pytest.raises(ValueError):
        sim.configure(output_url_base="http://localhost/with/path")


# -- rate-limit servers ------------------------------------------------------------------------------
def test_low_credit_account_allows_one_create_then_names_the_wait() -> None:
    with serve(account="low-credit", time_scale=0.01) as server, \
            httpx.Client(base_url=server.url, headers=AUTH) as c:
        assert server.options.create_rate == 6.0 and server.options.create_burst == 1.0
        body = {"version": server.models["replibatch/tiny-llama"].version_id, "input": {"prompt": "x"}}
        assert c.post("/v1/predictions", json=body).status_code == 201
        refused = c.post("/v1/predictions", json=body)
        assert refused.status_code == 429
        seconds = int(THROTTLED.fullmatch(refused.json()["detail"]).group(1))
        assert 9 <= seconds <= 10 and refused.headers["Retry-After"] == str(seconds)
        assert server.stats.throttled_creates == 1 and server.stats.creates == 1


def test_small_burst_account_refuses_the_21st_at_once() -> None:
    with serve(account="small-burst", predict_time=0) as server, \
            httpx.Client(base_url=server.url, headers=AUTH) as c:
        body = {"version": server.models["replibatch/tiny-llama"].version_id,
                "input": {"prompt": "x", "max_tokens": 1}}
        codes = [c.post("/v1/predictions", json=body).status_code for _ in range(21)]
        assert codes.count(201) in (20, 21) and codes[:20] == [201] * 20
        # 6,000/min is 100 a second: the bucket refills within a few hundredths of a second.
        time.sleep(0.05)
        assert c.post("/v1/predictions", json=body).status_code == 201


def test_account_presets_are_validated() -> None:
    assert set(ACCOUNTS) >= {"default", "low-credit", "small-burst", "unlimited"}
    with pytest.raises(ValueError, match="unknown account"):
        serve(account="platinum")
    with pytest.raises(ValueError, match="create_rate"):
        serve(account="low-credit", create_rate=60)


def test_no_ratelimit_headers_and_retry_after_only_in_the_body() -> None:
    with serve(create_rate=60, create_burst=1, ratelimit_headers=False, retry_after_header=False,
               retry_after_body=True) as server, \
            httpx.Client(base_url=server.url, headers=AUTH) as c:
        body = {"version": server.models["replibatch/tiny-llama"].version_id, "input": {"prompt": "x"}}
        ok = c.post("/v1/predictions", json=body)
        refused = c.post("/v1/predictions", json=body)
        for r in (ok, refused, c.get("/v1/models")):
            assert not any(h.lower().startswith("ratelimit") or h.lower() == "retry-after"
                           for h in r.headers)
        assert refused.status_code == 429 and refused.json()["retry_after"] == 1
        assert THROTTLED.fullmatch(refused.json()["detail"])


def test_limits_change_mid_run_keeping_the_tokens_spent(sim: SimServer, http: httpx.Client) -> None:
    sim.configure(create_rate=0.6, create_burst=600.0)  # refills too slowly to blur the counts
    for _ in range(3):
        spent = create(http, sim, {"prompt": "x", "max_tokens": 1})
    assert spent.headers["ratelimit-remaining"] == "597"
    sim.configure(create_rate=60.0, create_burst=600.0)  # a slower tier: no fresh bucket
    assert create(http, sim, {"prompt": "x", "max_tokens": 1}).headers["ratelimit-remaining"] == "596"
    sim.configure(account="low-credit")  # at most the one token the new size holds
    codes = [create(http, sim, {"prompt": "x", "max_tokens": 1}).status_code for _ in range(2)]
    assert codes == [201, 429]
    sim.configure(create_rate=60.0, create_burst=600.0)  # back up: the tokens are still spent
    assert create(http, sim, {"prompt": "x", "max_tokens": 1}).status_code == 429
    time.sleep(1.05)  # 60/min: a token a second
    assert create(http, sim, {"prompt": "x", "max_tokens": 1}).status_code == 201
    with pytest.raises(ValueError):
        sim.configure(account="nope")


# -- counters ---------------------------------------------------------------------------------------
def test_stats_snapshot_names_every_counter(sim: SimServer, http: httpx.Client) -> None:
    # An explicit 60 s predict time: tiny-llama's own length for "x" is only ~1.4 s, which a
    # loaded machine can spend between the create and the cancel (the cancel then found a
    # finished prediction and counted 0). Both predictions are certainly still running here;
    # the fixture's close cancels the second one.
    sim.configure(time_scale=1.0, predict_time=60)
    pid = create(http, sim, {"prompt": "x", "max_tokens": 1000}).json()["id"]
    create(http, sim, {"prompt": "x", "max_tokens": 1000})
    http.post(f"/v1/predictions/{pid}/cancel")
    http.get("/v1/predictions")
    snap = sim.stats.snapshot()
    assert snap["creates"] == 2 and snap["duplicate_creates"] == 1 and snap["cancels"] == 1
    assert snap["list_pages"] == 1 and snap["in_flight"] == 1 and snap["downloads"] == 0
    assert snap["requests"]["GET /v1/predictions"] == 1
    assert {"aborted", "throttled", "throttled_creates"} <= set(snap)


# -- command line ----------------------------------------------------------------------------------
def test_cli_plays_an_account_without_headers(capsys: pytest.CaptureFixture[str]) -> None:
    import threading

    from replibatch.sim.cli import main as cli_main

    stop = threading.Event()
    thread = threading.Thread(target=cli_main, args=(["--account", "low-credit",
                                                      "--no-ratelimit-headers"],),
                              kwargs={"stop": stop})
    thread.start()
    try:
        deadline, url = time.monotonic() + 5, None
        while url is None and time.monotonic() < deadline:
            match = re.search(r"listening on (http://\S+)", capsys.readouterr().out)
            url = match.group(1) if match else None
            time.sleep(0.01)
        assert url is not None
        with httpx.Client(base_url=url, headers=AUTH) as c:
            body = {"input": {"prompt": "x", "max_tokens": 1}}
            path = "/v1/models/replibatch/tiny-llama/predictions"
            first, second = c.post(path, json=body), c.post(path, json=body)
        assert (first.status_code, second.status_code) == (201, 429)
        assert "ratelimit-remaining" not in first.headers
    finally:
        stop.set()
        thread.join(5)
    with pytest.raises(SystemExit):
        cli_main(["--account", "platinum"])

"""replibatch.sim over raw HTTP: routes, spec conformance, limits, Prefer: wait, expiry, faults,
counters, and the demo models' behaviour."""

from __future__ import annotations

import base64
import copy
import io
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from PIL import Image
from simhttp import AUTH, create, version_of, wait_terminal  # shared simulator HTTP helpers

from replibatch.sim import SimServer, serve
from replibatch.sim.cli import main as cli_main
from replibatch.sim.cog import call_kwargs, materialize
from replibatch.sim.models import TinyLlama, default_models, generate_tokens

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


# -- helpers -----------------------------------------------------------------------------------
def _nullable_to_json_schema(node: Any) -> Any:
    """Fix two defects of the published spec so that jsonschema can apply it.

    It mixes OpenAPI 3.0 ``nullable`` into 3.1 (made a JSON Schema type list here), and its
    prediction ``version`` is ``oneOf: [string, enum "hidden"]``, which "hidden" matches twice
    (read here as the evidently intended ``anyOf``).
    """
    if isinstance(node, dict):
        out = {("anyOf" if k == "oneOf" else k): _nullable_to_json_schema(v)
               for k, v in node.items() if k != "nullable"}
        if node.get("nullable") and isinstance(node.get("type"), str):
            out["type"] = [node["type"], "null"]
        return out
    if isinstance(node, list):
        return [_nullable_to_json_schema(v) for v in node]
    return node


SPEC = _nullable_to_json_schema(json.loads((FIXTURES / "replicate-openapi.json").read_text()))


def _as_recorded(spec: Any) -> Any:
    """The spec with the one correction the recordings force: an unfinished prediction has no
    ``output``, ``data_removed`` or ``urls.web`` (every starting/processing body in
    fixtures/cassettes/run.yaml and predictions-create.yaml), though the spec lists them as
    required."""
    relaxed = copy.deepcopy(spec)
    prediction = relaxed["components"]["schemas"]["schemas_prediction_response"]
    prediction["required"] = [k for k in prediction["required"] if k not in ("output", "data_removed")]
    urls = prediction["properties"]["urls"]
    urls["required"] = [k for k in urls["required"] if k != "web"]
    return relaxed


RECORDED_SPEC = _as_recorded(SPEC)
UNFINISHED = ("starting", "processing")


def check_spec(method: str, path: str, response: httpx.Response) -> None:
    """Validate a response body against the spec's schema for that operation and status
    (relaxed as :func:`_as_recorded` says when the body holds an unfinished prediction)."""
    body = response.json()
    items = body.get("results", [body]) if isinstance(body, dict) else []
    unfinished = any(isinstance(i, dict) and i.get("status") in UNFINISHED for i in items)
    spec = RECORDED_SPEC if unfinished else SPEC
    op = spec["paths"][path][method.lower()]
    content = op["responses"][str(response.status_code)]["content"]
    schema = next(iter(content.values()))["schema"]
    root = {**copy.deepcopy(schema), "components": spec["components"]}
    jsonschema.Draft202012Validator(root).validate(body)



@pytest.fixture
def http(sim: SimServer):
    with httpx.Client(base_url=sim.url, headers=AUTH, timeout=10) as client:
        yield client


# -- auth ----------------------------------------------------------------------------------------
def test_missing_or_malformed_token_gets_the_recorded_401(sim: SimServer) -> None:
    recorded = "You did not pass a valid authentication token"
    with httpx.Client(base_url=sim.url) as anonymous:
        for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}):
            r = anonymous.post("/v1/predictions", json={"version": version_of(sim), "input": {}},
                               headers=headers)
            assert r.status_code == 401
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json() == {"title": "Unauthenticated", "detail": recorded, "status": 401}
        ok = anonymous.get("/v1/account", headers={"Authorization": "Token r8_test"})
        assert ok.status_code == 200
    assert sim.stats.creates == 0


def test_api_tokens_restrict_and_are_never_echoed() -> None:
    with serve(api_tokens={"r8_good"}) as server, httpx.Client(base_url=server.url) as c:
        bad = c.get("/v1/models", headers={"Authorization": "Bearer r8_wrong_secret"})
        assert bad.status_code == 401 and "r8_wrong_secret" not in bad.text
        assert c.get("/v1/models", headers={"Authorization": "Bearer r8_good"}).status_code == 200
        assert "r8_good" not in repr(server.options)


# -- predictions: shapes and spec -----------------------------------------------------------------
def test_prediction_lifecycle_matches_spec_and_recordings(sim: SimServer, http: httpx.Client) -> None:
    sim.configure(queue_delay=5.0)  # 50 ms starting at time_scale 0.01
    r = create(http, sim, {"prompt": "llamas", "max_tokens": 16})
    assert r.status_code == 201
    check_spec("POST", "/predictions", r)
    body = r.json()
    assert re.fullmatch(r"[a-z0-9]{26}", body["id"])
    assert body["status"] == "starting" and body["source"] == "api"
    assert body["model"] == "replibatch/tiny-llama" and body["version"] == version_of(sim)
    assert ISO_Z.match(body["created_at"]) and "completed_at" not in body
    assert body["urls"]["get"] == f"{sim.url}/v1/predictions/{body['id']}"
    assert body["urls"]["cancel"].endswith("/cancel") and "web" not in body["urls"]
    assert "output" not in body and "data_removed" not in body  # as recorded while starting
    assert body["input"] == {"prompt": "llamas", "max_tokens": 16}
    done = wait_terminal(http, body["id"])
    assert done["data_removed"] is False and done["urls"]["web"].endswith(f"/p/{body['id']}")
    assert done["status"] == "succeeded" and len(done["output"]) == 16
    got = http.get(f"/v1/predictions/{body['id']}")
    check_spec("GET", "/predictions/{prediction_id}", got)
    metrics = done["metrics"]
    assert metrics["output_token_count"] == 16 and metrics["input_token_count"] == 1
    assert 0 < metrics["time_to_first_token"] <= metrics["predict_time"] < metrics["total_time"]
    assert metrics["tokens_per_second"] == pytest.approx(16 / metrics["predict_time"], rel=0.01)
    assert done["started_at"] > done["created_at"] and done["completed_at"] >= done["started_at"]


def test_models_versions_hardware_account_match_spec(sim: SimServer, http: httpx.Client) -> None:
    models = http.get("/v1/models")
    check_spec("GET", "/models", models)
    assert {m["name"] for m in models.json()["results"]} >= {"tiny-llama", "pixel-diffusion"}
    model = http.get("/v1/models/replibatch/pixel-diffusion")
    check_spec("GET", "/models/{model_owner}/{model_name}", model)
    latest = model.json()["latest_version"]
    assert latest["id"] == version_of(sim, "replibatch/pixel-diffusion")
    assert re.fullmatch(r"[0-9a-f]{64}", latest["id"])
    schema = latest["openapi_schema"]["components"]["schemas"]
    width = schema["Input"]["properties"]["width"]
    assert (width["type"], width["minimum"], width["maximum"], width["default"]) == (
        "integer", 64, 1024, 512)
    assert schema["Input"]["required"] == ["prompt"]
    assert schema["Input"]["properties"]["scheduler"]["allOf"] == [
        {"$ref": "#/components/schemas/scheduler"}]
    assert schema["Input"]["properties"]["image"]["format"] == "uri"
    versions = http.get("/v1/models/replibatch/pixel-diffusion/versions")
    check_spec("GET", "/models/{model_owner}/{model_name}/versions", versions)
    one = http.get(f"/v1/models/replibatch/pixel-diffusion/versions/{latest['id']}")
    check_spec("GET", "/models/{model_owner}/{model_name}/versions/{version_id}", one)
    official = http.get("/v1/models/replibatch/official-chat").json()
    assert official["is_official"] is True and official["latest_version"] is None
    hardware = http.get("/v1/hardware")
    check_spec("GET", "/hardware", hardware)
    assert {h["sku"] for h in hardware.json()} >= {"gpu-t4", "gpu-l40s"}
    check_spec("GET", "/account", http.get("/v1/account"))
    assert sim.models["replibatch/tiny-llama"].hardware == "gpu-t4"
    assert sim.models["replibatch/pixel-diffusion"].hardware == "gpu-l40s"


def test_official_and_deployment_predictions(sim: SimServer, http: httpx.Client) -> None:
    official = http.post("/v1/models/replibatch/official-chat/predictions",
                         json={"input": {"prompt": "hi", "max_tokens": 4}})
    check_spec("POST", "/models/{model_owner}/{model_name}/predictions", official)
    assert official.json()["version"] == "hidden"
    assert sim.models["replibatch/official-chat"].pricing["output_token"] > 0
    dep = http.post("/v1/deployments/replibatch/tiny-llama-prod/predictions",
                    json={"input": {"prompt": "hi", "max_tokens": 3}})
    check_spec("POST", "/deployments/{deployment_owner}/{deployment_name}/predictions", dep)
    assert dep.json()["version"].startswith("dp-")
    assert dep.json()["deployment"] == "replibatch/tiny-llama-prod"
    assert wait_terminal(http, dep.json()["id"])["output"]
    info = http.get("/v1/deployments/replibatch/tiny-llama-prod").json()
    assert info["current_release"]["configuration"]["hardware"] == "gpu-t4"


def test_version_reference_forms(sim: SimServer, http: httpx.Client) -> None:
    v = version_of(sim)
    for ref in (v, f"replibatch/tiny-llama:{v}", "replibatch/tiny-llama"):
        r = http.post("/v1/predictions", json={"version": ref, "input": {"prompt": "x"}})
        assert r.status_code == 201, ref
        assert r.json()["version"] == v


# -- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("inputs", "field", "words"),
    [
        ({"prompt": "x", "colour": "red"}, "colour", "not allowed"),
        ({"prompt": 3}, "input.prompt", "Expected: string"),
        ({"prompt": "x", "width": 2048}, "input.width", "less than or equal to 1024"),
        ({"prompt": "x", "width": 32}, "input.width", "greater than or equal to 64"),
        ({"prompt": "x", "width": 100}, "input.width", "multiple of 8"),
        ({"prompt": "x", "scheduler": "fast"}, "input.scheduler", "one of the following"),
        ({"width": 512}, "prompt", "required"),
        ({"prompt": "x", "image": "not a uri"}, "input.image", "uri"),
    ],
)
def test_invalid_input_is_422_naming_the_field(
    sim: SimServer, http: httpx.Client, inputs: dict[str, Any], field: str, words: str
) -> None:
    r = create(http, sim, inputs, ref="replibatch/pixel-diffusion")
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert {"type", "title", "status", "detail"} <= body.keys() and body["status"] == 422
    assert field in body["detail"] and words in body["detail"]
    assert sim.stats.creates == 0


def test_unknown_things_are_404(sim: SimServer, http: httpx.Client) -> None:
    cases = [
        http.post("/v1/predictions", json={"version": "0" * 64, "input": {}}),
        http.post("/v1/models/nobody/nothing/predictions", json={"input": {}}),
        http.post("/v1/deployments/nobody/nothing/predictions", json={"input": {}}),
        http.get("/v1/models/nobody/nothing"),
        http.get("/v1/predictions/doesnotexist"),
        http.get("/v1/models/replibatch/tiny-llama/versions/" + "0" * 64),
        http.get("/v1/no/such/route"),
    ]
    for r in cases:
        assert r.status_code == 404, r.request.url
        assert r.json()["status"] == 404 and r.json()["detail"]


# -- rate limits -------------------------------------------------------------------------------------
def test_ratelimit_headers_match_recordings(sim: SimServer, http: httpx.Client) -> None:
    first = create(http, sim, {"prompt": "x"})
    assert first.headers["ratelimit-remaining"] == "599"
    assert first.headers["ratelimit-reset"] == "1"
    read = http.get(f"/v1/predictions/{first.json()['id']}")
    assert read.headers["ratelimit-remaining"] == "2999"


def test_creates_and_reads_have_separate_buckets_and_429_shape() -> None:
    with serve(create_rate=60, create_burst=2, read_rate=600, read_burst=50) as server, \
            httpx.Client(base_url=server.url, headers=AUTH) as c:
        body = {"version": version_of(server), "input": {"prompt": "x"}}
        assert [c.post("/v1/predictions", json=body).status_code for _ in range(2)] == [201, 201]
        throttled = c.post("/v1/predictions", json=body)
        assert throttled.status_code == 429
        detail = throttled.json()
        assert set(detail) == {"detail", "status"} and detail["status"] == 429
        seconds = int(re.fullmatch(r"Request was throttled\. Your rate limit resets in ~(\d+)s\.",
                                   detail["detail"]).group(1))
        assert 1 <= seconds <= 2 and throttled.headers["Retry-After"] == str(seconds)
        assert c.get("/v1/models").status_code == 200  # reads are not throttled by creates
        server.configure(retry_after_header=False, retry_after_body=True)
        again = c.post("/v1/predictions", json=body)
        assert "Retry-After" not in again.headers and again.json()["retry_after"] >= 1
        assert server.stats.throttled == 2 and server.stats.creates == 2


def test_unlimited_rates_send_no_ratelimit_headers() -> None:
    with serve(create_rate=None, read_rate=None, predict_time=0) as server, \
            httpx.Client(base_url=server.url, headers=AUTH) as c:
        body = {"version": version_of(server), "input": {"prompt": "x", "max_tokens": 1}}
        statuses = {c.post("/v1/predictions", json=body).status_code for _ in range(60)}
        assert statuses == {201}
        assert "ratelimit-remaining" not in c.get("/v1/models").headers


# -- Prefer: wait ------------------------------------------------------------------------------------
def test_prefer_wait_returns_terminal_prediction(sim: SimServer, http: httpx.Client) -> None:
    r = create(http, sim, {"prompt": "x", "max_tokens": 8}, headers={"Prefer": "wait"})
    assert r.status_code == 201 and r.headers["Preference-Applied"] == "wait"
    assert r.json()["status"] == "succeeded" and len(r.json()["output"]) == 8


def test_prefer_wait_times_out_with_partial_output(sim: SimServer, http: httpx.Client) -> None:
    sim.configure(time_scale=1.0)  # 0.15 s prefill + 10 ms per token: 1000 tokens take ~10 s
    started = time.monotonic()
    r = create(http, sim, {"prompt": "x", "max_tokens": 1000, "temperature": 0},
               headers={"Prefer": "wait=1"})
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 3
    assert r.headers["Preference-Applied"] == "wait=1"
    body = r.json()
    assert body["status"] == "processing" and 0 < len(body["output"]) < 1000
    http.post(f"/v1/predictions/{body['id']}/cancel")


def test_invalid_prefer_is_ignored(sim: SimServer, http: httpx.Client) -> None:
    r = create(http, sim, {"prompt": "x"}, headers={"Prefer": "wait=61"})
    assert "Preference-Applied" not in r.headers and r.json()["status"] == "starting"


# -- cancel, cancel-after, listing ------------------------------------------------------------------
def test_cancel_running_prediction(sim: SimServer, http: httpx.Client) -> None:
    # Explicitly long: "x" is only ~1.4 s of tokens, which a loaded machine can spend before
    # the cancel arrives.
    sim.configure(time_scale=1.0, predict_time=60)
    pid = create(http, sim, {"prompt": "x", "max_tokens": 1000}).json()["id"]
    canceled = http.post(f"/v1/predictions/{pid}/cancel")
    check_spec("POST", "/predictions/{prediction_id}/cancel", canceled)
    assert canceled.json()["status"] == "canceled" and "completed_at" in canceled.json()
    assert http.get(f"/v1/predictions/{pid}").json()["status"] == "canceled"
    assert http.post(f"/v1/predictions/{pid}/cancel").json()["status"] == "canceled"
    assert sim.stats.cancels == 1 and sim.stats.in_flight == 0


def test_cancel_after_header_cancels(sim: SimServer, http: httpx.Client) -> None:
    sim.configure(time_scale=1.0)
    sim.configure(cancel_after_minimum=0)
    r = create(http, sim, {"prompt": "x", "max_tokens": 1000}, headers={"Cancel-After": "100ms"})
    assert "deadline" in r.json()
    assert wait_terminal(http, r.json()["id"])["status"] == "canceled"


def test_list_predictions_pages_newest_first(sim: SimServer, http: httpx.Client) -> None:
    sim.configure(page_size=2)
    ids = [create(http, sim, {"prompt": f"p{i}", "max_tokens": 1}).json()["id"] for i in range(5)]
    seen: list[str] = []
    url: str | None = "/v1/predictions"
    while url:
        page = http.get(url)
        check_spec("GET", "/predictions", page)
        seen += [p["id"] for p in page.json()["results"]]
        url = page.json()["next"]
    assert seen == ids[::-1]


# -- outputs and expiry ------------------------------------------------------------------------------
def test_output_files_are_real_pngs_and_expire(sim: SimServer, http: httpx.Client) -> None:
    sim.configure(retention=20.0)  # 0.2 s at time_scale 0.01
    r = create(http, sim, {"prompt": "a red square", "width": 128, "height": 64, "num_outputs": 2},
               ref="replibatch/pixel-diffusion", headers={"Prefer": "wait"})
    body = r.json()
    assert body["status"] == "succeeded" and len(body["output"]) == 2
    image = Image.open(io.BytesIO(http.get(body["output"][0]).content))
    assert image.format == "PNG" and image.size == (128, 64)
    time.sleep(0.3)
    assert http.get(body["output"][0]).status_code == 404
    gone = http.get(f"/v1/predictions/{body['id']}").json()
    assert gone["data_removed"] is True and gone["output"] is None and gone["input"] == {}
    assert gone["status"] == "succeeded" and gone["metrics"]["predict_time"] > 0


def test_file_api_roundtrip_and_file_inputs(sim: SimServer, http: httpx.Client) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (0, 255, 0)).save(buffer, format="PNG")
    png = buffer.getvalue()
    up = http.post("/v1/files", files={"content": ("green.png", png, "image/png")},
                   data={"metadata": json.dumps({"k": "v"})})
    assert up.status_code == 201
    check_spec("POST", "/files", up)
    record = up.json()
    assert record["size"] == len(png) and record["metadata"] == {"k": "v"}
    check_spec("GET", "/files/{file_id}", http.get(f"/v1/files/{record['id']}"))
    check_spec("GET", "/files", http.get("/v1/files"))
    assert http.get(f"/v1/files/{record['id']}/download").content == png

    def render(image: str | None) -> bytes:
        inputs = {"prompt": "blue circle", "width": 64, "height": 64, "seed": 1}
        if image:
            inputs["image"] = image
        out = create(http, sim, inputs, ref="replibatch/pixel-diffusion",
                     headers={"Prefer": "wait"}).json()
        assert out["status"] == "succeeded", out["error"]
        return http.get(out["output"][0]).content

    data_uri = "data:image/png;base64," + base64.b64encode(png).decode()
    plain, via_url, via_data = render(None), render(record["urls"]["get"]), render(data_uri)
    pixels = [Image.open(io.BytesIO(b)).convert("RGB").getpixel((0, 0)) for b in (plain, via_url)]
    assert pixels[0] != pixels[1]
    assert Image.open(io.BytesIO(via_data)).size == (64, 64)
    assert http.delete(f"/v1/files/{record['id']}").status_code == 204
    assert http.get(f"/v1/files/{record['id']}").status_code == 404
    missing = create(http, sim, {"prompt": "x", "image": record["urls"]["get"], "width": 64,
                                 "height": 64}, ref="replibatch/pixel-diffusion",
                     headers={"Prefer": "wait"}).json()
    assert missing["status"] == "failed" and "could not download" in missing["error"]


def test_sse_stream_delivers_tokens(sim: SimServer, http: httpx.Client) -> None:
    body = create(http, sim, {"prompt": "x", "max_tokens": 5, "temperature": 0}).json()
    with http.stream("GET", body["urls"]["stream"], headers={"Accept": "text/event-stream"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    outputs = re.findall(r"event: output\nid: \d+\ndata: (.*)\n", text)
    assert len(outputs) == 5 and text.rstrip().endswith("data: {}")
    assert "".join(outputs) == "".join(wait_terminal(http, body["id"])["output"])


# -- faults -------------------------------------------------------------------------------------------
def test_server_errors_including_html_502(sim: SimServer, http: httpx.Client) -> None:
    sim.configure(error_rate=1.0, error_statuses=(502,))
    r = http.get("/v1/models")
    assert r.status_code == 502 and r.headers["content-type"].startswith("text/html")
    with pytest.raises(ValueError):
        r.json()
    sim.configure(error_statuses=(503,))
    assert http.get("/v1/models").json()["status"] == 503
    assert sim.stats.faults == {"error_502": 1, "error_503": 1}


def test_dropped_connection_before_anything(sim: SimServer, http: httpx.Client) -> None:
    sim.configure(drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        create(http, sim, {"prompt": "x"})
    assert sim.stats.creates == 0 and sim.stats.faults == {"drop": 1}


def test_dropped_connection_after_create_records_the_prediction(
    sim: SimServer, http: httpx.Client
) -> None:
    sim.configure(drop_after_create_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        create(http, sim, {"prompt": "x", "max_tokens": 2})
    sim.configure(drop_after_create_rate=0.0)
    listed = http.get("/v1/predictions").json()["results"]
    assert sim.stats.creates == 1 and len(listed) == 1
    assert sim.stats.faults == {"drop_after_create": 1}


def test_slow_responses_and_fault_scope(sim: SimServer, http: httpx.Client) -> None:
    sim.configure(slow_rate=1.0, slow_delay=0.2, fault_scope="create")
    http.get("/v1/models")
    # Reads are out of scope: the counter says no delay was applied (an elapsed-time upper
    # bound would fail on a loaded machine); a lower bound on the delayed create is safe.
    assert sim.stats.faults == {}
    started = time.monotonic()
    create(http, sim, {"prompt": "x"})
    assert time.monotonic() - started >= 0.2
    assert sim.stats.faults == {"slow": 1}


def test_model_failures(sim: SimServer, http: httpx.Client) -> None:
    sim.configure(failure_rate=1.0, failure_message="boom")
    body = create(http, sim, {"prompt": "x"}, headers={"Prefer": "wait"}).json()
    assert body["status"] == "failed" and body["error"] == "boom"
    assert "predict_time" in body["metrics"] and sim.stats.faults == {"model_failure": 1}


def test_faults_replay_with_the_same_seed() -> None:
    def pattern(seed: int) -> list[int]:
        with serve(seed=seed, error_rate=0.5, error_statuses=(500,)) as server, \
                httpx.Client(base_url=server.url, headers=AUTH) as c:
            return [c.get("/v1/account").status_code for _ in range(30)]

    first = pattern(7)
    assert first == pattern(7)
    assert {200, 500} == set(first)


def test_queue_delay_and_time_scale(sim: SimServer, http: httpx.Client) -> None:
    # 0.5 s queued (long enough to still be queued at the read on a loaded machine), 0.1 s
    # predicting. The metrics follow the simulator's schedule, not its loop's wake-ups.
    sim.configure(queue_delay=50.0, predict_time=10.0)
    body = create(http, sim, {"prompt": "x"}).json()
    time.sleep(0.05)
    assert http.get(f"/v1/predictions/{body['id']}").json()["status"] == "starting"
    done = wait_terminal(http, body["id"])
    assert done["metrics"]["predict_time"] == pytest.approx(0.1, abs=0.005)
    assert done["metrics"]["total_time"] == pytest.approx(0.6, abs=0.005)


# -- counters ----------------------------------------------------------------------------------------
def test_stats_count_routes_duplicates_and_in_flight(sim: SimServer, http: httpx.Client) -> None:
    # Running for certain while counted (a loaded machine can spend 0.3 s on four creates);
    # canceling them at the end finishes them just as completing would (Lifecycle._finish).
    sim.configure(time_scale=1.0, predict_time=60)
    ids = [create(http, sim, {"prompt": p}).json()["id"] for p in ("a", "b", "a", "a")]
    assert sim.stats.creates == 4 and sim.stats.duplicate_creates == 2
    assert sorted(sim.stats.creates_by_input.values()) == [1, 3]
    assert sim.stats.in_flight == 4 and sim.stats.max_in_flight == 4
    http.get(f"/v1/predictions/{ids[0]}")
    assert sim.stats.requests == {"POST /v1/predictions": 4,
                                  "GET /v1/predictions/{prediction_id}": 1}
    reads: list[int] = []
    reader = threading.Thread(target=lambda: reads.extend(sim.stats.creates for _ in range(100)))
    reader.start()
    reader.join()
    assert set(reads) == {4}
    for pid in ids:
        http.post(f"/v1/predictions/{pid}/cancel")
    assert sim.stats.in_flight == 0 and sim.stats.cancels == 4
    sim.stats.reset()
    snap = sim.stats.snapshot()
    assert snap["creates"] == 0 and snap["requests"] == {} and snap["max_in_flight"] == 0


# -- options and CLI ---------------------------------------------------------------------------------
def test_configure_rejects_bad_options(sim: SimServer) -> None:
    with pytest.raises(TypeError, match="nonsense"):
        sim.configure(nonsense=1)
    with pytest.raises(ValueError, match="error_rate"):
        sim.configure(error_rate=2)
    with pytest.raises(ValueError, match="time_scale"):
        serve(time_scale=0)
    assert sim.options.error_rate == 0.0


def test_cli_serves_until_stopped(capsys: pytest.CaptureFixture[str]) -> None:
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(cli_main(["--port", "0"], stop=stop)))
    thread.start()
    deadline = time.monotonic() + 5
    url = None
    while url is None and time.monotonic() < deadline:
        match = re.search(r"listening on (http://\S+)", capsys.readouterr().out)
        url = match.group(1) if match else None
        time.sleep(0.01)
    assert url is not None
    assert httpx.get(f"{url}/v1/hardware", headers=AUTH).status_code == 200
    stop.set()
    thread.join(5)
    assert result == [0]


# -- demo models (pure) ------------------------------------------------------------------------------
def test_tiny_llama_determinism_and_parameters() -> None:
    greedy = [generate_tokens("tell me", max_tokens=50, temperature=0, seed=s) for s in (1, 2, None)]
    assert greedy[0] == greedy[1] == greedy[2]
    same = generate_tokens("tell me", max_tokens=50, temperature=1, seed=5)
    assert same == generate_tokens("tell me", max_tokens=50, temperature=1, seed=5)
    assert same != generate_tokens("tell me", max_tokens=50, temperature=1, seed=6)
    assert generate_tokens("other", max_tokens=50, temperature=0, seed=None) != greedy[0]
    text = "".join(same)
    assert all(t.startswith(" ") or t in ",." for t in same[1:]) and " " in text
    model = TinyLlama()
    short = materialize(model.predict(**call_kwargs(model, {"prompt": "x", "max_tokens": 5})))[0]
    long = materialize(model.predict(**call_kwargs(model, {"prompt": "x", "max_tokens": 30})))[0]
    assert len(short) == 5 and len(long) == 30
    assert model.nominal_seconds({}, long) > model.nominal_seconds({}, short)


def test_pixel_diffusion_depends_on_its_inputs() -> None:
    model = next(m for m in default_models() if m.name == "pixel-diffusion").predictor

    def png(**inputs: Any) -> bytes:
        kwargs = call_kwargs(model, {"prompt": "red circle", "width": 64, "height": 64, "seed": 3,
                                     **inputs})
        return model.predict(**kwargs)[0].data

    assert png() == png()
    assert png() != png(seed=4) and png() != png(prompt="blue square")
    assert png() != png(num_inference_steps=50)
    assert Image.open(io.BytesIO(png(width=128))).size == (128, 64)
    fast = call_kwargs(model, {"prompt": "x", "num_inference_steps": 5})
    slow = call_kwargs(model, {"prompt": "x", "num_inference_steps": 50})
    assert model.nominal_seconds(slow, None) > model.nominal_seconds(fast, None)
    assert 2 <= model.nominal_seconds(call_kwargs(model, {"prompt": "x"}), None) <= 5


def test_list_predictions_filters_by_created_after(sim):
    import datetime as dt

    import httpx

    headers = {"Authorization": "Bearer r8_test"}
    body = {"input": {"prompt": "old", "max_tokens": 1}}
    httpx.post(f"{sim.url}/v1/models/replibatch/tiny-llama/predictions", json=body, headers=headers)
    time.sleep(0.05)
    cut = dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    time.sleep(0.05)
    body = {"input": {"prompt": "new", "max_tokens": 1}}
    httpx.post(f"{sim.url}/v1/models/replibatch/tiny-llama/predictions", json=body, headers=headers)
    page = httpx.get(f"{sim.url}/v1/predictions", params={"created_after": cut}, headers=headers).json()
    assert [p["input"]["prompt"] for p in page["results"]] == ["new"]
    everything = httpx.get(f"{sim.url}/v1/predictions", headers=headers).json()
    assert [p["input"]["prompt"] for p in everything["results"]] == ["new", "old"]
    bad = httpx.get(f"{sim.url}/v1/predictions", params={"created_after": "yesterday"}, headers=headers)
    assert bad.status_code == 400


# -- shutdown inside a running event loop (Jupyter) --------------------------------------------------
def test_close_and_serve_work_inside_a_running_event_loop() -> None:
    import asyncio

    async def inside() -> None:
        server = serve()
        assert httpx.get(f"{server.url}/v1/hardware", headers=AUTH).status_code == 200
        server.close()
        server.close()  # idempotent
        assert not server._thread.is_alive() and server._loop.is_closed()
        with serve() as other:
            assert httpx.get(f"{other.url}/v1/account", headers=AUTH).status_code == 200
        assert not other._thread.is_alive() and other._loop.is_closed()

    asyncio.run(inside())


def test_close_from_another_thread() -> None:
    server = serve()
    errors: list[BaseException] = []

    def shut() -> None:
        try:
            server.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    worker = threading.Thread(target=shut)
    worker.start()
    worker.join(10)
    assert errors == [] and server._loop.is_closed()


# -- demo models agree with the price table ----------------------------------------------------------
def test_demo_models_hardware_and_pricing_match_the_price_table() -> None:
    from replibatch._spend.cost import PriceTable
    from replibatch.sim.models import HARDWARE, default_deployments

    table = PriceTable.default()
    prices = json.loads((Path(__file__).resolve().parents[2] / "replibatch" / "data" / "prices.json")
                        .read_text())
    for model in default_models():
        entry = table.lookup(model.ref)
        assert entry is not None, model.ref
        if entry.kind == "per_second":
            assert not model.official and model.pricing is None
            assert model.hardware == entry.hardware, model.ref
        elif entry.kind == "per_token":
            assert model.official, model.ref
            expected = {"input_token": entry.usd_per_input_token,
                        "output_token": entry.usd_per_output_token}
            assert model.pricing == {k: float(v) for k, v in expected.items() if v is not None}
        else:
            assert model.official and model.pricing == {entry.unit: float(entry.usd_per_output)}
        assert model.hardware in HARDWARE and model.hardware in table.hardware_skus
    assert default_models()[2].pricing == {"input_token": 5e-07, "output_token": 1.5e-06}
    for deployment in default_deployments():
        entry = table.lookup(f"deployments/{deployment.ref}")
        assert entry is not None and deployment.hardware == entry.hardware
    for sku, name in HARDWARE.items():
        assert prices["hardware"][sku]["name"] == name


# -- CLI program name ------------------------------------------------------------------------------
def test_cli_usage_names_the_command_it_was_started_as(capsys: pytest.CaptureFixture[str]) -> None:
    from replibatch._cli.main import main as replibatch_main

    with pytest.raises(SystemExit) as exc:
        cli_main(["--bad"])
    assert exc.value.code == 2
    assert "usage: python -m replibatch.sim" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["--port", "x"], prog="replibatch sim")
    err = capsys.readouterr().err
    assert "usage: replibatch sim" in err and "python -m" not in err
    # Through the `replibatch` command: an option the simulator rejects is a usage error (2).
    assert replibatch_main(["sim", "--error-rate", "2"]) == 2
    err = capsys.readouterr().err
    assert "usage: replibatch sim" in err and "replibatch sim: error: error_rate" in err
    assert "python -m" not in err

"""replibatch.sim trains: trainings routes, lifecycle, cancel, expiry, the demo trainers' learning,
the versions they push, the official client against them, and the training cost function."""

from __future__ import annotations

import base64
import copy
import io
import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import replicate
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageStat

from replibatch._spend.cost import PriceTable
from replibatch._spend.training_cost import training_cost
from replibatch.sim import SimServer
from replibatch.sim.trainers import (
    Palette,
    TrainingDataError,
    learn_text_style,
    read_zip,
    recolour,
    restyle_tokens,
    strength,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "fine_tune"
CASSETTES = Path("/work/shared/replicate-api/cassettes")
SPEC_FILE = Path(__file__).resolve().parents[1] / "fixtures" / "replicate-openapi.json"
AUTH = {"Authorization": "Bearer r8_test"}
ME = "replibatch-sim"
TERMINAL = {"succeeded", "failed", "canceled"}


# -- helpers -----------------------------------------------------------------------------------
def data_uri(path: Path) -> str:
    return "data:application/zip;base64," + base64.b64encode(path.read_bytes()).decode()


def zip_uri(files: dict[str, bytes]) -> str:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return "data:application/zip;base64," + base64.b64encode(buffer.getvalue()).decode()


def _openapi_to_json_schema(node: Any) -> Any:
    """The spec mixes OpenAPI 3.0 ``nullable`` into 3.1; make it a JSON Schema type list."""
    if isinstance(node, dict):
        out = {k: _openapi_to_json_schema(v) for k, v in node.items() if k != "nullable"}
        if node.get("nullable") and isinstance(node.get("type"), str):
            out["type"] = [node["type"], "null"]
        return out
    if isinstance(node, list):
        return [_openapi_to_json_schema(v) for v in node]
    return node


SPEC = _openapi_to_json_schema(json.loads(SPEC_FILE.read_text()))


def check_spec(method: str, path: str, status: int, body: Any) -> None:
    op = SPEC["paths"][path][method]
    schema = next(iter(op["responses"][str(status)]["content"].values()))["schema"]
    jsonschema.Draft202012Validator({**copy.deepcopy(schema), "components": SPEC["components"]}
                                    ).validate(body)


def cassette_body(name: str) -> dict[str, Any]:
    recorded = yaml.safe_load((CASSETTES / name).read_text())["interactions"][0]["response"]
    return json.loads(recorded["content"])


@pytest.fixture
def http(sim: SimServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, headers=AUTH, timeout=10) as client:
        yield client


def version_of(http: httpx.Client, model: str) -> str:
    return str(http.get(f"/v1/models/{model}").json()["latest_version"]["id"])


def make_model(http: httpx.Client, name: str, hardware: str = "gpu-t4") -> None:
    reply = http.post("/v1/models", json={"owner": ME, "name": name, "visibility": "private",
                                          "hardware": hardware})
    assert reply.status_code == 201, reply.text


def start(http: httpx.Client, model: str, destination: str, **inputs: Any) -> httpx.Response:
    version = version_of(http, model)
    return http.post(f"/v1/models/{model}/versions/{version}/trainings",
                     json={"destination": destination, "input": inputs})


def finish(http: httpx.Client, training_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """Poll the training until it ends (the simulator runs it on real loopback time)."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = http.get(f"/v1/trainings/{training_id}").json()
        if body["status"] in TERMINAL or time.monotonic() > deadline:
            return body
        time.sleep(0.01)


def train(http: httpx.Client, model: str, destination: str, **inputs: Any) -> dict[str, Any]:
    reply = start(http, model, destination, **inputs)
    assert reply.status_code == 201, reply.text
    return finish(http, reply.json()["id"])


def text_of(http: httpx.Client, version: str, prompt: str, seed: int) -> str:
    body = http.post("/v1/predictions", headers={**AUTH, "Prefer": "wait"}, json={
        "version": version, "input": {"prompt": prompt, "seed": seed, "max_tokens": 120}}).json()
    assert body["status"] == "succeeded", body
    return "".join(body["output"])


def words(texts: list[str]) -> list[str]:
    return [w.lower() for text in texts for w in re.findall(r"[A-Za-z]+", text)]


def corpus_words(name: str) -> set[str]:
    """The words of a bundled text data set."""
    return set(words([data.decode() for _, data in read_zip((DATA / name).read_bytes(), (".txt",))]))


def share(texts: list[str], vocabulary: set[str]) -> float:
    found = words(texts)
    return sum(w in vocabulary for w in found) / len(found)


PROMPTS = ["Tell me about the city at night", "Describe a morning walk", "What is a machine?"]


# -- routes and shapes -------------------------------------------------------------------------
def test_create_reply_and_reads_are_shaped_like_the_recorded_traffic(
    sim: SimServer, http: httpx.Client
) -> None:
    make_model(http, "sea-llama")
    reply = start(http, "replibatch/tiny-llama", f"{ME}/sea-llama",
                  train_data=data_uri(DATA / "sea-stories.zip"))
    assert reply.status_code == 201
    created = reply.json()
    # cassettes/trainings-create.yaml: exactly these keys, urls naming /v1/predictions/{id}
    assert set(created) == set(cassette_body("trainings-create.yaml"))
    assert created["status"] == "starting" and created["logs"] == ""
    assert created["urls"]["get"].endswith(f"/v1/predictions/{created['id']}")
    assert created["model"] == "replibatch/tiny-llama"
    assert created["version"] == sim.models["replibatch/tiny-llama"].version_id
    done = finish(http, created["id"])
    # cassettes/trainings-get.yaml: its keys all present (plus source and data_removed)
    assert set(cassette_body("trainings-get.yaml")) <= set(done)
    assert done["urls"]["get"].endswith(f"/v1/trainings/{created['id']}")
    assert done["status"] == "succeeded", done["error"]
    check_spec("get", "/trainings/{training_id}", 200, done)
    check_spec("get", "/trainings", 200, http.get("/v1/trainings").json())


def test_lifecycle_timestamps_metrics_progress_logs_and_the_pushed_version(
    sim: SimServer, http: httpx.Client
) -> None:
    make_model(http, "sea-llama")
    sim.configure(predict_time=40.0)  # 0.4 s of processing: long enough to be seen by polling
    reply = start(http, "replibatch/tiny-llama", f"{ME}/sea-llama",
                  train_data=data_uri(DATA / "sea-stories.zip"), steps=300)
    seen = {reply.json()["status"]}
    deadline = time.monotonic() + 10
    while (body := http.get(f"/v1/trainings/{reply.json()['id']}").json())["status"] not in TERMINAL:
        seen.add(body["status"])
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert body["status"] == "succeeded" and seen == {"starting", "processing"}
    assert body["created_at"] <= body["started_at"] <= body["completed_at"]
    metrics = body["metrics"]
    assert 0 < metrics["predict_time"] <= metrics["total_time"]
    percents = [int(p) for p in re.findall(r"(\d+)%\|", body["logs"])]
    assert percents == sorted(percents) and percents[-1] == 100 and len(percents) == 10
    assert "300/300" in body["logs"]
    ref, version = body["output"]["version"].split(":")
    assert ref == f"{ME}/sea-llama" and re.fullmatch(r"[0-9a-f]{64}", version)
    weights = httpx.get(body["output"]["weights"]).json()
    assert weights["kind"] == "text-style" and "harbor" in [w for w, _ in weights["words"]]
    model = http.get(f"/v1/models/{ME}/sea-llama").json()
    assert model["latest_version"]["id"] == version
    assert http.get(f"/v1/models/{ME}/sea-llama/versions/{version}").status_code == 200
    # A second training pushes a second version; both stay listed and runnable.
    sim.configure(predict_time=None)
    second = train(http, "replibatch/tiny-llama", f"{ME}/sea-llama",
                   train_data=data_uri(DATA / "sea-stories.zip"), steps=50)
    newer = second["output"]["version"].split(":")[1]
    listed = [v["id"] for v in http.get(f"/v1/models/{ME}/sea-llama/versions").json()["results"]]
    assert listed == [newer, version]
    assert text_of(http, version, "hello", 1) != text_of(http, newer, "hello", 1)
    assert sim.trainings.stats.creates == 2 and sim.trainings.stats.succeeded == 2
    assert sim.stats.creates == 2  # the two predictions; trainings are counted apart


def test_trainer_versions_publish_their_training_input_schema(http: httpx.Client) -> None:
    schemas = http.get("/v1/models/replibatch/pixel-diffusion").json()[
        "latest_version"]["openapi_schema"]["components"]["schemas"]
    training = schemas["TrainingInput"]
    assert training["required"] == ["input_images"]
    assert training["properties"]["input_images"]["format"] == "uri"
    assert {"steps", "learning_rate", "lora_rank", "trigger_word"} <= set(training["properties"])
    assert "Input" in schemas and "prompt" in schemas["Input"]["properties"]


def test_trainings_create_draws_on_the_general_rate_limit_not_the_create_one(
    sim: SimServer, http: httpx.Client
) -> None:
    # trainings-create.yaml answered ratelimit-remaining 2999 (the 3000/min bucket).
    make_model(http, "sea-llama")
    sim.configure(create_rate=1.0, create_burst=1.0)
    http.post("/v1/predictions", json={"version": version_of(http, "replibatch/tiny-llama"),
                                       "input": {"prompt": "x"}})
    assert http.post("/v1/models/replibatch/tiny-llama/predictions",
                     json={"input": {"prompt": "x"}}).status_code == 429
    reply = start(http, "replibatch/tiny-llama", f"{ME}/sea-llama",
                  train_data=data_uri(DATA / "sea-stories.zip"))
    assert reply.status_code == 201
    assert int(reply.headers["ratelimit-remaining"]) > 1


def test_create_errors_are_problem_bodies(sim: SimServer, http: httpx.Client) -> None:
    version = version_of(http, "replibatch/tiny-llama")
    url = f"/v1/models/replibatch/tiny-llama/versions/{version}/trainings"
    unknown = http.post(url, json={"destination": f"{ME}/nowhere", "input": {}})
    assert unknown.status_code == 404  # the real body (replicate/flux-fine-tuner#72)
    assert unknown.json() == {"detail": "The specified training destination does not exist",
                              "status": 404}
    missing = http.post(url, json={"input": {}})
    assert missing.status_code == 422
    assert [f["field"] for f in missing.json()["invalid_fields"]] == ["destination"]
    assert http.post(url, json={"destination": f"{ME}/x"}).json()["invalid_fields"][0][
        "field"] == "input"
    assert http.post(url, json={"destination": "no-slash", "input": {}}).status_code == 422
    assert http.post(url, content=b"{not json").status_code == 400
    # Someone else's model exists but is not ours to push to.
    assert http.post(url, json={"destination": "replibatch/tiny-llama", "input": {}}
                     ).status_code == 403
    assert http.post(f"/v1/models/replibatch/tiny-llama/versions/{'0' * 64}/trainings",
                     json={"destination": f"{ME}/x", "input": {}}).status_code == 404
    assert http.post(f"/v1/models/replibatch/pixel-diffusion/versions/{version}/trainings",
                     json={"destination": f"{ME}/x", "input": {}}).status_code == 404
    assert httpx.post(sim.url + url, json={"destination": f"{ME}/x", "input": {}}
                      ).status_code == 401
    assert http.get("/v1/trainings/nope").status_code == 404
    assert http.post("/v1/trainings/nope/cancel").status_code == 404
    assert sim.trainings.stats.creates == 0


def test_invalid_training_input_is_created_then_fails_at_once(
    sim: SimServer, http: httpx.Client
) -> None:
    # Replicate answers 201 and fails the training (replicate/replicate-python#308).
    make_model(http, "sea-llama")
    reply = start(http, "replibatch/tiny-llama", f"{ME}/sea-llama", steps=0)
    assert reply.status_code == 201
    body = finish(http, reply.json()["id"])
    assert body["status"] == "failed" and body["started_at"] is None
    assert body["error"].startswith("Prediction input failed validation: ")
    detail = json.loads(body["error"].split(": ", 1)[1])["detail"]
    assert [d["loc"] for d in detail] == [["body", "input", "steps"], ["body", "input", "train_data"]]
    assert "predict_time" not in body["metrics"]
    assert training_cost(PriceTable.default(), "replibatch/tiny-llama", body) == (
        0.0, "ended before it started: no training time billed")


def test_unusable_training_data_fails_the_training_with_the_reason(http: httpx.Client) -> None:
    make_model(http, "sea-llama")
    not_zip = "data:application/zip;base64," + base64.b64encode(b"plain text").decode()
    body = train(http, "replibatch/tiny-llama", f"{ME}/sea-llama", train_data=not_zip)
    assert body["status"] == "failed" and body["error"] == "training data is not a zip file"
    assert "TrainingDataError" in body["logs"] and body["metrics"]["predict_time"] >= 0
    no_text = zip_uri({"a.png": b"\x89PNG"})
    body = train(http, "replibatch/tiny-llama", f"{ME}/sea-llama", train_data=no_text)
    assert body["status"] == "failed" and ".txt" in body["error"]
    assert http.get(f"/v1/models/{ME}/sea-llama").json()["latest_version"] is None


def test_model_failures_hit_trainings_too(sim: SimServer, http: httpx.Client) -> None:
    make_model(http, "sea-llama")
    sim.configure(failure_rate=1.0)
    body = train(http, "replibatch/tiny-llama", f"{ME}/sea-llama",
                 train_data=data_uri(DATA / "sea-stories.zip"))
    assert body["status"] == "failed" and body["error"] == sim.options.failure_message
    assert body["output"] is None and body["metrics"]["predict_time"] > 0


def test_cancel_stops_a_running_training_and_pushes_nothing(
    sim: SimServer, http: httpx.Client
) -> None:
    make_model(http, "sea-llama")
    sim.configure(predict_time=500.0)  # 5 s at time_scale 0.01
    reply = start(http, "replibatch/tiny-llama", f"{ME}/sea-llama",
                  train_data=data_uri(DATA / "sea-stories.zip"))
    training_id = reply.json()["id"]
    deadline = time.monotonic() + 5
    while http.get(f"/v1/trainings/{training_id}").json()["status"] != "processing":
        assert time.monotonic() < deadline
        time.sleep(0.005)
    canceled = http.post(f"/v1/trainings/{training_id}/cancel")
    assert canceled.status_code == 200
    body = canceled.json()
    assert body["status"] == "canceled" and body["completed_at"] and body["output"] is None
    assert body["metrics"]["predict_time"] < 5
    again = http.post(f"/v1/trainings/{training_id}/cancel").json()
    assert again["status"] == "canceled" and again["completed_at"] == body["completed_at"]
    assert sim.trainings.stats.cancels == 1
    assert http.get(f"/v1/models/{ME}/sea-llama").json()["latest_version"] is None


def test_list_is_newest_first_and_paged(sim: SimServer, http: httpx.Client) -> None:
    make_model(http, "sea-llama")
    sim.configure(page_size=2, predict_time=500.0)
    ids = [start(http, "replibatch/tiny-llama", f"{ME}/sea-llama",
                 train_data=data_uri(DATA / "sea-stories.zip"), steps=s).json()["id"]
           for s in (1, 2, 3)]
    first = http.get("/v1/trainings").json()
    assert [t["id"] for t in first["results"]] == [ids[2], ids[1]]
    assert first["previous"] is None and first["next"]
    second = httpx.get(first["next"], headers=AUTH).json()
    assert [t["id"] for t in second["results"]] == [ids[0]] and second["next"] is None
    assert [t["id"] for t in httpx.get(second["previous"], headers=AUTH).json()["results"]] == [
        ids[2], ids[1]]
    for training_id in ids:
        http.post(f"/v1/trainings/{training_id}/cancel")


def test_a_dropped_create_reply_still_leaves_the_training_listed(
    sim: SimServer, http: httpx.Client
) -> None:
    make_model(http, "sea-llama")
    sim.configure(drop_after_create_rate=1.0, fault_scope="create")
    with pytest.raises(httpx.TransportError):
        start(http, "replibatch/tiny-llama", f"{ME}/sea-llama",
              train_data=data_uri(DATA / "sea-stories.zip"))
    sim.configure(drop_after_create_rate=0.0)
    listed = http.get("/v1/trainings").json()["results"]
    assert len(listed) == 1 and sim.trainings.stats.creates == 1
    assert sim.stats.faults == {"drop_after_create": 1}
    sim.configure(error_after_create_rate=1.0, error_after_create_statuses=(502,))
    reply = start(http, "replibatch/tiny-llama", f"{ME}/sea-llama",
                  train_data=data_uri(DATA / "sea-stories.zip"))
    assert reply.status_code == 502 and "text/html" in reply.headers["content-type"]
    assert len(http.get("/v1/trainings").json()["results"]) == 2
    # Both creates carried the same request: the second is counted as a duplicate.
    assert sim.trainings.stats.duplicate_creates == 1
    assert sim.trainings.stats.faults == {"drop_after_create": 1, "error_after_create_502": 1}
    snap = sim.trainings.stats.snapshot()
    assert snap["creates"] == 2 and snap["duplicate_creates"] == 1
    assert set(snap) == {"creates", "creates_by_input", "duplicate_creates", "cancels",
                         "succeeded", "faults"}
    sim.trainings.stats.reset()
    assert sim.trainings.stats.snapshot()["creates"] == 0


def test_inputs_logs_output_and_weights_expire_but_the_version_stays(
    sim: SimServer, http: httpx.Client
) -> None:
    make_model(http, "sea-llama")
    sim.configure(retention=10.0)  # 0.1 s at time_scale 0.01
    body = train(http, "replibatch/tiny-llama", f"{ME}/sea-llama",
                 train_data=data_uri(DATA / "sea-stories.zip"))
    version = body["output"]["version"].split(":")[1]
    deadline = time.monotonic() + 5
    while not (late := http.get(f"/v1/trainings/{body['id']}").json())["data_removed"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert late["input"] == {} and late["output"] is None and late["logs"] is None
    assert httpx.get(body["output"]["weights"]).status_code == 404
    assert text_of(http, version, "hello", 1)


# -- models.create (training destinations) ------------------------------------------------------
def test_models_create_makes_an_empty_destination(http: httpx.Client) -> None:
    reply = http.post("/v1/models", json={"owner": ME, "name": "new-one", "visibility": "private",
                                          "hardware": "gpu-t4", "description": "mine"})
    assert reply.status_code == 201
    check_spec("post", "/models", 201, reply.json())
    got = http.get(f"/v1/models/{ME}/new-one").json()
    assert got["latest_version"] is None and got["description"] == "mine"
    body = {"owner": ME, "name": "new-one", "visibility": "private", "hardware": "gpu-t4"}
    assert http.post("/v1/models", json=body).status_code == 409
    assert http.post("/v1/models", json={**body, "owner": "someone"}).status_code == 403
    assert http.post("/v1/models", json={**body, "name": "x", "hardware": "gpu-z9"}
                     ).status_code == 422
    fields = http.post("/v1/models", json={"owner": ME}).json()["invalid_fields"]
    assert [f["field"] for f in fields] == ["name", "visibility", "hardware"]


# -- what the trainers learn shows in the trained versions' outputs -----------------------------
def test_trained_text_versions_write_with_their_training_corpus(http: httpx.Client) -> None:
    make_model(http, "sea-llama")
    make_model(http, "forest-llama")
    runs = {
        "sea-strong": (f"{ME}/sea-llama", "sea-stories.zip", 400, 0.001),
        "sea-weak": (f"{ME}/sea-llama", "sea-stories.zip", 40, 0.0005),
        "forest": (f"{ME}/forest-llama", "forest-stories.zip", 400, 0.001),
    }
    versions = {"base": version_of(http, "replibatch/tiny-llama")}
    for label, (destination, data, steps, rate) in runs.items():
        body = train(http, "replibatch/tiny-llama", destination, train_data=data_uri(DATA / data),
                     steps=steps, learning_rate=rate)
        assert body["status"] == "succeeded", body["error"]
        versions[label] = body["output"]["version"].split(":")[1]
    texts = {label: [text_of(http, v, p, seed) for p in PROMPTS for seed in (1, 2)]
             for label, v in versions.items()}
    # Words only the training corpus has (not the base model's own vocabulary).
    sea_only = corpus_words("sea-stories.zip") - set(words(texts["base"]))
    forest_only = corpus_words("forest-stories.zip") - set(words(texts["base"]))
    sea = {label: share(t, sea_only - forest_only) for label, t in texts.items()}
    forest = {label: share(t, forest_only - sea_only) for label, t in texts.items()}
    assert sea["base"] == 0 and forest["base"] == 0
    assert sea["sea-strong"] > 0.5 and forest["sea-strong"] == 0
    assert forest["forest"] > 0.5 and sea["forest"] == 0
    # More training imprints more: strength 0.98 vs 0.18.
    assert sea["sea-strong"] > sea["sea-weak"] + 0.3 and sea["sea-weak"] > 0
    # Same inputs, same text; the trained version keeps the base model's input schema.
    assert texts["sea-strong"][0] == text_of(http, versions["sea-strong"], PROMPTS[0], 1)


def _mean_rgb(http: httpx.Client, version: str, prompt: str) -> tuple[float, float, float]:
    body = http.post("/v1/predictions", headers={**AUTH, "Prefer": "wait"}, json={
        "version": version,
        "input": {"prompt": prompt, "seed": 5, "width": 128, "height": 128}}).json()
    assert body["status"] == "succeeded", body
    png = httpx.get(body["output"][0]).content
    r, g, b = ImageStat.Stat(Image.open(io.BytesIO(png)).convert("RGB")).mean
    return r, g, b


def test_trained_image_versions_paint_with_their_training_palette(http: httpx.Client) -> None:
    make_model(http, "warm-diffusion", "gpu-l40s")
    make_model(http, "cool-diffusion", "gpu-l40s")
    versions = {"base": version_of(http, "replibatch/pixel-diffusion")}
    for label in ("warm", "cool"):
        body = train(http, "replibatch/pixel-diffusion", f"{ME}/{label}-diffusion",
                     input_images=data_uri(DATA / f"{label}-images.zip"), steps=600,
                     learning_rate=0.001, trigger_word="TOK")
        assert body["status"] == "succeeded", body["error"]
        assert "learned palette #" in body["logs"]
        versions[label] = body["output"]["version"].split(":")[1]
    prompt = "a TOK picture of a green garden"  # green: the base model paints it green
    warm, cool, base = (_mean_rgb(http, versions[k], prompt) for k in ("warm", "cool", "base"))
    assert warm[0] - warm[2] > 60  # reds and ambers
    assert cool[2] - cool[0] > 60  # blues and teals
    assert abs(base[0] - base[2]) < abs(warm[0] - warm[2])
    # Without the trigger word the style comes through at a quarter of the strength.
    untriggered = _mean_rgb(http, versions["warm"], "a picture of a green garden")
    plain = _mean_rgb(http, versions["base"], "a picture of a green garden")
    assert 0 < (untriggered[0] - untriggered[2]) - (plain[0] - plain[2]) < warm[0] - warm[2] - (
        base[0] - base[2])


# -- the official client, unchanged -------------------------------------------------------------
def test_official_client_creates_gets_lists_cancels_and_runs_trainings(sim: SimServer) -> None:
    client = replicate.Client(api_token="r8_test", base_url=sim.url)
    client.poll_interval = 0.01
    try:
        destination = client.models.create(owner=ME, name="sea-llama", visibility="private",
                                           hardware="gpu-t4")
        assert destination.latest_version is None
        base = client.models.get("replibatch/tiny-llama")
        with (DATA / "sea-stories.zip").open("rb") as handle:  # the SDK uploads the file
            training = client.trainings.create(
                model="replibatch/tiny-llama", version=base.latest_version.id,
                input={"train_data": handle, "steps": 400, "learning_rate": 0.001},
                destination=f"{ME}/sea-llama")
        assert training.status == "starting"
        deadline = time.monotonic() + 10
        while training.status not in TERMINAL:
            assert time.monotonic() < deadline
            time.sleep(0.01)
            training.reload()
        assert training.status == "succeeded", training.error
        assert training.destination == f"{ME}/sea-llama"  # parsed from output.version
        assert client.trainings.get(training.id).output == training.output
        assert client.trainings.list().results[0].id == training.id
        text = "".join(client.run(training.output["version"],
                                  input={"prompt": "The city at night", "seed": 3}))
        base_text = "".join(client.run(f"replibatch/tiny-llama:{base.latest_version.id}",
                                       input={"prompt": "The city at night", "seed": 3}))
        sea_only = corpus_words("sea-stories.zip") - set(words([base_text]))
        assert share([text], sea_only) > 0.5 and share([base_text], sea_only) == 0
        sim.configure(predict_time=500.0)
        slow = client.trainings.create(f"replibatch/tiny-llama:{base.latest_version.id}",
                                       {"train_data": data_uri(DATA / "sea-stories.zip")},
                                       f"{ME}/sea-llama")
        slow.cancel()
        assert slow.status == "canceled"
        assert client.trainings.get(slow.id).status == "canceled"
        assert sim.stats.requests["POST /v1/files"] == 1
    finally:
        client._client.close()


def test_official_client_async_trainings(sim: SimServer) -> None:
    import asyncio

    async def scenario() -> str:
        client = replicate.Client(api_token="r8_test", base_url=sim.url)
        await client.models.async_create(owner=ME, name="forest-llama", visibility="public",
                                         hardware="cpu")
        version = (await client.models.async_get("replibatch/tiny-llama")).latest_version
        training = await client.trainings.async_create(
            model="replibatch/tiny-llama", version=version.id,
            input={"train_data": data_uri(DATA / "forest-stories.zip")},
            destination=f"{ME}/forest-llama")
        while training.status not in TERMINAL:
            await asyncio.sleep(0.01)
            await training.async_reload()
        return training.status

    assert asyncio.run(scenario()) == "succeeded"


# -- pure parts ---------------------------------------------------------------------------------
def test_strength_grows_with_steps_and_learning_rate() -> None:
    assert strength(0, 0.001) == 0
    assert strength(100, 0.0002) < strength(300, 0.0002) < strength(300, 0.001) < 1
    assert round(strength(200, 0.0004), 2) == 0.55


def test_text_style_learns_the_corpus_vocabulary_and_order() -> None:
    style = learn_text_style(["The tide turns. The tide rises over the harbor wall."],
                             vocabulary_size=3, strength=0.5)
    assert [w for w, _ in style.words] == ["tide", "harbor", "over"]  # "the": a stop word; ties: a-z
    assert dict(style.followers["tide"]) == {"over": 1}  # order among the learned words
    with pytest.raises(TrainingDataError):
        learn_text_style(["a an the"], vocabulary_size=3, strength=0.5)


def test_read_zip_refuses_what_it_cannot_use() -> None:
    with pytest.raises(TrainingDataError, match="not a zip"):
        read_zip(b"nope", (".txt",))
    names = [n for n, _ in read_zip((DATA / "sea-stories.zip").read_bytes(), (".txt",))]
    assert names == ["harbor.txt", "storm.txt", "tide.txt", "voyage.txt"]


def test_bundled_data_sets_are_small_and_reproducible() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_data", DATA / "make_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, data in module.data_sets().items():
        assert (DATA / name).read_bytes() == data, f"{name}: rerun data/fine_tune/make_data.py"
        assert len(data) < 4096


# -- training cost ------------------------------------------------------------------------------
def test_training_cost_is_predict_time_times_the_trainer_hardware() -> None:
    table = PriceTable.default()
    record = {"status": "succeeded", "model": "replibatch/pixel-diffusion",
              "started_at": "2026-01-01T00:00:00Z", "metrics": {"predict_time": 502.713876}}
    cost, basis = training_cost(table, "replibatch/pixel-diffusion", record)
    assert cost == 0.4901460291  # 502.713876 × 0.000975, exactly
    assert basis == "training predict_time 502.714 s × gpu-l40s $0.000975/s"
    version = "a" * 64
    assert training_cost(table, version, record)[0] == cost  # the record names the model


def test_training_cost_unknown_says_what_to_pass() -> None:
    table = PriceTable.default()
    record = {"status": "succeeded", "metrics": {"predict_time": 100.0},
              "model": "ostris/flux-dev-lora-trainer"}
    cost, basis = training_cost(table, "ostris/flux-dev-lora-trainer", record)
    assert math.isnan(cost)
    assert basis == ("unknown hardware for trainer ostris/flux-dev-lora-trainer: pass "
                     "hardware={'ostris/flux-dev-lora-trainer': 'gpu-…'} or prices=…")
    priced = table.with_overrides(hardware={"ostris/flux-dev-lora-trainer": "gpu-h100"})
    assert training_cost(priced, "ostris/flux-dev-lora-trainer", record) == (
        0.1525, "training predict_time 100 s × gpu-h100 $0.001525/s")
    per_token = training_cost(table, "replibatch/official-chat", record)
    assert math.isnan(per_token[0]) and "bill per second" in per_token[1]
    running = {"status": "processing", "metrics": {}, "started_at": "2026-01-01T00:00:00Z"}
    assert math.isnan(training_cost(table, "replibatch/tiny-llama", running)[0])


def test_training_cost_of_a_simulated_training(http: httpx.Client) -> None:
    make_model(http, "sea-llama")
    body = train(http, "replibatch/tiny-llama", f"{ME}/sea-llama",
                 train_data=data_uri(DATA / "sea-stories.zip"))
    cost, basis = training_cost(PriceTable.default(), f"replibatch/tiny-llama:{body['version']}",
                                body)
    assert cost == pytest.approx(body["metrics"]["predict_time"] * 0.000225)
    assert "gpu-t4 $0.000225/s" in basis


def test_rb_run_runs_trained_versions_by_reference(sim: SimServer, http: httpx.Client) -> None:
    import pandas as pd

    import replibatch as rb

    make_model(http, "sea-llama")
    body = train(http, "replibatch/tiny-llama", f"{ME}/sea-llama",
                 train_data=data_uri(DATA / "sea-stories.zip"), steps=400, learning_rate=0.001)
    trained = body["output"]["version"]
    frame = pd.DataFrame({"prompt": PROMPTS, "seed": [1, 2, 3]})
    res = rb.run(rb.grid(frame, model=[trained, "replibatch/tiny-llama"]), api_token="r8_test",
                 base_url=sim.url, progress=False, cache=False)
    assert list(res["status"]) == ["succeeded"] * 6
    sea_only = corpus_words("sea-stories.zip") - set(words(list(
        res.loc[res["model"] == "replibatch/tiny-llama", "output"])))
    by_model = res.groupby("model")["output"].apply(lambda s: share(list(s), sea_only))
    assert by_model[trained] > 0.5 and by_model["replibatch/tiny-llama"] == 0
    assert set(res.loc[res["model"] == trained, "version"]) == {trained.split(":")[1]}


# -- progress from logs ---------------------------------------------------------------------------
def test_training_progress_reads_the_last_report_in_the_logs() -> None:
    from replibatch._engine.training_progress import training_progress

    assert training_progress(None) is None and training_progress("loading weights\n") is None
    assert training_progress("train:  40%|####      | 80/200 [loss=1.6]\n") == 0.4
    # tqdm's carriage-return updates, then a later plain "step" line.
    logs = "flux_train:  10%|#   | 100/1000\rflux_train:  20%|##  | 200/1000\nstep 450/1000\n"
    assert training_progress(logs) == 0.45
    assert training_progress("Epoch 3/4 done\nsaving 100%|##########| 9/9") == 1.0
    assert training_progress("dropout 10% of tokens") is None  # a percentage, not a bar
    assert training_progress("step 12/10") == 1.0


def test_training_progress_follows_a_simulated_training(sim: SimServer, http: httpx.Client) -> None:
    from replibatch._engine.training_progress import training_progress

    make_model(http, "sea-llama")
    sim.configure(predict_time=40.0)
    reply = start(http, "replibatch/tiny-llama", f"{ME}/sea-llama",
                  train_data=data_uri(DATA / "sea-stories.zip"))
    seen: list[float] = []
    deadline = time.monotonic() + 10
    while (body := http.get(f"/v1/trainings/{reply.json()['id']}").json())["status"] not in TERMINAL:
        assert time.monotonic() < deadline
        if (fraction := training_progress(body["logs"])) is not None:
            seen.append(fraction)
        time.sleep(0.01)
    assert training_progress(body["logs"]) == 1.0
    assert seen == sorted(seen) and len(set(seen)) >= 3 and seen[0] < 0.5


# -- applying learned weights (pure) ------------------------------------------------------------
_TOKENS = st.lists(st.one_of(
    st.sampled_from([".", ",", " 42"]),
    st.from_regex(r"\A ?[A-Za-z]{1,8}\Z"),
), max_size=40)


@settings(max_examples=60, deadline=None)
@given(tokens=_TOKENS, amount=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_restyle_keeps_the_text_shape_and_swaps_only_words(
    tokens: list[str], amount: float, seed: int
) -> None:
    import random

    style = learn_text_style(["Harbor tide waves. Sailors mend nets by the tide."],
                             vocabulary_size=8, strength=amount)
    out = restyle_tokens(tokens, style, rng=random.Random(seed))
    assert len(out) == len(tokens)
    vocabulary = {w for w, _ in style.words}
    for before, after in zip(tokens, out, strict=True):
        lead = before[: len(before) - len(before.lstrip())]
        assert after.startswith(lead)
        if not before.strip().isalpha():
            assert after == before  # punctuation and numbers are never touched
        elif after != before:
            assert after.strip().lower() in vocabulary
            assert after.strip()[0].isupper() == before.strip()[0].isupper()
    if amount == 0:
        assert out == tokens
    if amount == 1:
        assert all(t.strip().lower() in vocabulary for t in out if t.strip().isalpha())


def test_recolour_maps_pixels_onto_the_palette_by_amount() -> None:
    buffer = io.BytesIO()
    Image.linear_gradient("L").convert("RGB").resize((32, 32)).save(buffer, format="PNG")
    png = buffer.getvalue()
    palette = Palette(((200, 30, 30), (250, 200, 40)), "TOK", 1.0)
    assert recolour(png, palette, 0.0) == png
    full = Image.open(io.BytesIO(recolour(png, palette, 1.0))).convert("RGB")
    assert {colour for _, colour in full.getcolors()} <= set(palette.colours)
    half = Image.open(io.BytesIO(recolour(png, palette, 0.5))).convert("RGB")
    assert len(half.getcolors()) > 2  # a blend, not the palette alone

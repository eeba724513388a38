"""replibatch.sim through the official ``replicate`` client, sync and async, unchanged."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import httpx
import pytest
import replicate
from PIL import Image
from replicate.exceptions import ModelError, ReplicateError

from replibatch.sim import SimServer, serve


@pytest.fixture
def client(sim: SimServer) -> Iterator[replicate.Client]:
    c = replicate.Client(api_token="r8_test", base_url=sim.url)
    c.poll_interval = 0.01
    yield c
    c._client.close()  # the SDK never closes its httpx client itself


def test_run_each_demo_model(client: replicate.Client, sim: SimServer) -> None:
    tokens = client.run("replibatch/tiny-llama", input={"prompt": "llamas", "max_tokens": 12})
    assert len(list(tokens)) == 12
    pinned = f"replibatch/tiny-llama:{sim.models['replibatch/tiny-llama'].version_id}"
    text = "".join(client.run(pinned, input={"prompt": "llamas", "max_tokens": 12,
                                                "temperature": 0}))
    assert text.split()
    images = client.run("replibatch/pixel-diffusion",
                        input={"prompt": "green circle", "width": 64, "height": 64,
                               "num_outputs": 2})
    assert len(images) == 2
    # The SDK wraps only https: URLs in FileOutput; the simulator serves plain http on loopback.
    assert Image.open(io.BytesIO(httpx.get(images[0]).content)).size == (64, 64)
    chat = client.run("replibatch/official-chat", input={"prompt": "hi", "max_tokens": 3})
    assert len(list(chat)) == 3
    assert sim.stats.creates == 4


def test_create_wait_reload_and_cancel(client: replicate.Client, sim: SimServer) -> None:
    version = sim.models["replibatch/tiny-llama"].version_id
    prediction = client.predictions.create(version=version, input={"prompt": "x", "max_tokens": 4})
    prediction.wait()
    assert prediction.status == "succeeded" and len(prediction.output) == 4
    assert prediction.metrics["output_token_count"] == 4
    # Certainly still running when canceled ("x" alone is ~1.4 s, spendable on a loaded machine).
    sim.configure(time_scale=1.0, predict_time=60)
    slow = client.predictions.create(version=version, input={"prompt": "x", "max_tokens": 1000})
    slow.cancel()
    assert client.predictions.get(slow.id).status == "canceled"
    sim.configure(predict_time=None)
    deployment = client.deployments.predictions.create(
        "replibatch/tiny-llama-prod", input={"prompt": "x", "max_tokens": 2}, wait=True)
    assert deployment.status == "succeeded"
    page = client.predictions.list()
    assert [p.id for p in page.results][:2] == [deployment.id, slow.id]


def test_files_through_the_client(client: replicate.Client) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, format="PNG")
    buffer.name = "tiny.png"
    created = client.files.create(buffer, metadata={"purpose": "test"})
    assert created.content_type == "image/png" and created.metadata == {"purpose": "test"}
    assert client.files.get(created.id).size == len(buffer.getvalue())
    assert [f.id for f in client.files.list()] == [created.id]
    out = client.run("replibatch/pixel-diffusion",
                     input={"prompt": "x", "width": 64, "height": 64, "image": created.urls["get"]})
    assert httpx.get(out[0]).content.startswith(b"\x89PNG")
    assert client.files.delete(created.id) is True


def test_models_and_hardware(client: replicate.Client, sim: SimServer) -> None:
    model = client.models.get("replibatch/tiny-llama")
    assert model.latest_version.id == sim.models["replibatch/tiny-llama"].version_id
    assert [v.id for v in model.versions.list()] == [model.latest_version.id]
    assert "gpu-l40s" in {h.sku for h in client.hardware.list()}


def test_errors_raise_replicate_error_with_status(client: replicate.Client, sim: SimServer) -> None:
    version = sim.models["replibatch/tiny-llama"].version_id
    with pytest.raises(ReplicateError) as not_found:
        client.models.predictions.create(model="nobody/nothing", input={})
    assert not_found.value.status == 404
    with pytest.raises(ReplicateError) as invalid:
        client.predictions.create(version=version, input={"prompt": "x", "temperature": 5})
    assert invalid.value.status == 422 and "temperature" in invalid.value.detail
    anonymous = replicate.Client(api_token="r8_wrong", base_url=sim.url)
    sim.configure(api_tokens={"r8_test"})
    with pytest.raises(ReplicateError) as unauthenticated:
        anonymous.predictions.create(version=version, input={"prompt": "x"})
    assert unauthenticated.value.status == 401
    anonymous._client.close()
    sim.configure(create_rate=60, create_burst=1)
    client.predictions.create(version=version, input={"prompt": "x"})
    with pytest.raises(ReplicateError) as throttled:  # the SDK does not retry POST on 429
        client.predictions.create(version=version, input={"prompt": "x"})
    assert throttled.value.status == 429 and "throttled" in throttled.value.detail
    sim.configure(failure_rate=1.0, create_rate=None)
    with pytest.raises(ModelError):
        client.run("replibatch/tiny-llama", input={"prompt": "x"})


def test_async_client_runs_waits_and_cancels(sim: SimServer) -> None:
    async def scenario() -> None:
        client = replicate.Client(api_token="r8_test", base_url=sim.url)
        client.poll_interval = 0.01
        try:
            outputs = await asyncio.gather(*[
                client.async_run("replibatch/tiny-llama",
                                 input={"prompt": f"p{i}", "max_tokens": 3, "seed": i})
                for i in range(8)
            ])
            assert all(len(list(o)) == 3 for o in outputs)
            version = sim.models["replibatch/tiny-llama"].version_id
            prediction = await client.predictions.async_create(
                version=version, input={"prompt": "x", "max_tokens": 5})
            await prediction.async_wait()
            assert prediction.status == "succeeded"
            sim.configure(time_scale=1.0, predict_time=60)  # certainly running when canceled
            slow = await client.predictions.async_create(
                version=version, input={"prompt": "x", "max_tokens": 1000})
            await slow.async_cancel()
            assert (await client.predictions.async_get(slow.id)).status == "canceled"
            with pytest.raises(ReplicateError) as invalid:
                await client.predictions.async_create(version=version, input={"nope": 1})
            assert invalid.value.status == 422
        finally:
            await client._async_client.aclose()

    asyncio.run(scenario())
    assert sim.stats.creates == 10 and sim.stats.max_in_flight >= 2


def test_benchmark_shaped_load_all_succeeds() -> None:
    """Many concurrent Prefer: wait creates against an unlimited, zero-latency server."""
    with serve(create_rate=None, read_rate=None, predict_time=0) as server:
        version = server.models["replibatch/tiny-llama"].version_id

        async def load() -> list[int]:
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(base_url=server.url, limits=limits,
                                         headers={"Authorization": "Bearer r8_test",
                                                  "Prefer": "wait"}) as http:
                async def one(i: int) -> int:
                    r = await http.post("/v1/predictions", json={
                        "version": version, "input": {"prompt": f"p{i}", "max_tokens": 8}})
                    return r.status_code if r.json()["status"] == "succeeded" else -1
                return await asyncio.gather(*[one(i) for i in range(200)])

        statuses = asyncio.run(load())
        assert set(statuses) == {201}
        assert server.stats.creates == 200 and server.stats.duplicate_creates == 0

"""HTTP helpers shared by the simulator's tests (tests/ is on sys.path under pytest)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from replibatch.sim import SimServer

AUTH = {"Authorization": "Bearer r8_test"}


def version_of(sim: SimServer, ref: str = "replibatch/tiny-llama") -> str:
    return sim.models[ref].version_id


def create(http: httpx.Client, sim: SimServer, inputs: dict[str, Any], *, ref: str =
           "replibatch/tiny-llama", headers: dict[str, str] | None = None) -> httpx.Response:
    return http.post("/v1/predictions", json={"version": version_of(sim, ref), "input": inputs},
                     headers=headers)


def wait_terminal(http: httpx.Client, prediction_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = http.get(f"/v1/predictions/{prediction_id}").json()
        if body["status"] in ("succeeded", "failed", "canceled", "aborted"):
            return body
        time.sleep(0.01)
    raise AssertionError(f"prediction {prediction_id} did not finish")

"""The simulator's prepaid credit: 402 "Billing required" once a token's credit is spent."""

from __future__ import annotations

import httpx
import pytest

from replibatch._spend.cost import PriceTable, cost_of
from replibatch.sim import serve


def _create(http: httpx.Client, token: str, prompt: str) -> httpx.Response:
    return http.post("/v1/models/replibatch/tiny-llama/predictions",
                     json={"input": {"prompt": prompt, "max_tokens": 8}},
                     headers={"Authorization": f"Bearer {token}", "Prefer": "wait"})


def test_spent_credit_gives_the_recorded_402_and_other_tokens_go_on() -> None:
    with (
        serve(time_scale=0.01, seed=0, credit={"r8_poor": 1e-9}) as sim,
        httpx.Client(base_url=sim.url, timeout=30) as http,
    ):
        first = _create(http, "r8_poor", "a")
        assert first.status_code == 201 and first.json()["status"] == "succeeded"
        # The finished prediction was charged what the client's price table says it cost.
        expected, _ = cost_of(PriceTable.default(), "replibatch/tiny-llama", first.json())
        assert sim.credit.charged()["r8_poor"] == pytest.approx(expected)
        assert sim.credit.remaining("r8_poor") < 0
        refused = _create(http, "r8_poor", "b")
        assert refused.status_code == 402
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["title"] == "Billing required"
        assert refused.json()["status"] == 402
        # Reads still work for the account; another token has unlimited credit.
        pid = first.json()["id"]
        assert http.get(f"/v1/predictions/{pid}",
                        headers={"Authorization": "Bearer r8_poor"}).status_code == 200
        assert _create(http, "r8_rich", "c").status_code == 201
        assert sim.credit.remaining("r8_rich") is None
        assert sim.stats.creates == 2


def test_credit_can_be_topped_up_and_is_validated_and_hidden() -> None:
    with serve(time_scale=0.01, seed=0, credit={"r8_t": 0.0}) as sim:
        with httpx.Client(base_url=sim.url, timeout=30) as http:
            assert _create(http, "r8_t", "a").status_code == 402
            sim.configure(credit={"r8_t": 1.0})
            assert _create(http, "r8_t", "a").status_code == 201
        assert "r8_t" not in repr(sim.options)
        with pytest.raises(ValueError, match="credit must"):
            sim.configure(credit={"r8_t": -1})

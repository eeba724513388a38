"""Shared fixtures. Simulator fixtures: ``sim`` (a running replibatch.sim server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from replibatch.sim import SimServer, serve


@pytest.fixture
def sim() -> Iterator[SimServer]:
    """A fresh simulator on an ephemeral port: demo models, model time x0.01, seeded faults off.

    Change options per test with ``sim.configure(...)``.
    """
    with serve(time_scale=0.01, seed=0) as server:
        yield server


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own cache directory and no Replicate credentials from the machine:
    nothing a test does can touch the user's cache, and no test can reach a real account."""
    monkeypatch.setenv("REPLIBATCH_CACHE_DIR", str(tmp_path_factory.mktemp("rb-cache")))
    for name in ("REPLICATE_API_TOKEN", "REPLICATE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)

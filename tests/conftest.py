"""Shared fixtures. Simulator fixtures: ``sim`` (a running replibatch.sim server)."""

from __future__ import annotations

from typing import Iterator

import pytest

from replibatch.sim import SimServer, serve


@pytest.fixture
def sim() -> Iterator[SimServer]:
    """A fresh simulator on an ephemeral port: demo models, model time x0.01, seeded faults off.

    Change options per test with ``sim.configure(...)``.
    """
    with serve(time_scale=0.01, seed=0) as server:
        yield server

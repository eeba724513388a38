"""What a training cost: ``metrics.predict_time`` × the trainer's hardware price per second.

Trainings bill by time on their hardware. The trainer is a model version (``owner/name:version``,
``owner/name``, or a bare version id with the record's ``model`` naming it) and its price entry
in the table (:class:`replibatch._spend.cost.PriceTable`, ``replibatch/data/prices.json``) names the
hardware it runs on. Per the spec (trainings.get) ``predict_time`` is the CPU or GPU time the
training used while running, without the time it waited to start, which is what is billed.

Replicate publishes no trainer's hardware (the API exposes none, see pricing-facts), so a real
trainer such as ``ostris/flux-dev-lora-trainer`` is unknown until the user says what it runs on:
its cost is NaN and the basis says what to pass (``hardware={'ostris/flux-dev-lora-trainer':
'gpu-h100'}``), as for predictions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from replibatch._spend.cost import (  # one decimal arithmetic for all costs
    PriceTable,
    _metric,
    _plain,
    _rounded,
)
from replibatch._table.refs import parse_model_ref
from replibatch.errors import ConfigurationError

__all__ = ["training_cost"]


def training_cost(table: PriceTable, trainer: str, record: Mapping[str, Any]) -> tuple[float, str]:
    """``(cost_usd, cost_basis)`` of one training record (Replicate's training JSON).

    NaN with a basis saying what to pass when the trainer is not in the table, is priced per
    unit rather than per second, or the record has no ``metrics.predict_time``; 0 when the
    training ended (canceled or failed) before it started. Never raises for a malformed record.
    """
    recorded = record.get("model") if isinstance(record.get("model"), str) else None
    price = table.lookup(trainer, recorded)
    name = _model_name(trainer) or recorded or str(trainer).strip()[:12] + "…"
    if price is None:
        return math.nan, (
            f"unknown hardware for trainer {name}: pass hardware={{'{name}': 'gpu-…'}} or prices=…"
        )
    if price.kind != "per_second" or price.usd_per_second is None:
        return math.nan, (
            f"trainer {name} is priced per {price.unit if price.kind == 'per_output' else 'token'}"
            f" in the price table, but trainings bill per second: pass hardware={{'{name}': 'gpu-…'}}"
        )
    predict_time = _metric(record, "predict_time")
    if predict_time is None:
        if record.get("status") in ("canceled", "failed") and not record.get("started_at"):
            return 0.0, "ended before it started: no training time billed"
        return math.nan, "no metrics.predict_time in the training: cost unknown"
    cost = predict_time * price.usd_per_second
    return float(cost), (
        f"training predict_time {_rounded(predict_time)} s × {price.hardware} "
        f"${_plain(price.usd_per_second)}/s"
    )


def _model_name(ref: Any) -> str | None:
    try:
        return parse_model_ref(ref).model
    except (ConfigurationError, AttributeError, TypeError):
        return None

"""Cost arithmetic: what a finished prediction cost, from the price table and its record.

Replicate's API returns no price, so a cost is the prediction record's metrics priced by the
entry of its model in the price table (`replibatch._spend.prices`: per second of hardware, per
output item or per token); the basis text says which and with what figures.

Arithmetic is done on the decimal text of each figure (``Decimal(repr(x))``) and converted to the
nearest float once, so ``43 tokens × $0.0000095`` is exactly ``0.0004085``. An unknown cost is
NaN, never 0, and its basis says what to pass to make it known.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from replibatch._spend.expected import expected_cost
from replibatch._spend.prices import ModelPrice, PriceTable, price_key

# ModelPrice, PriceTable (`prices`) and expected_cost (`expected`) are imported from here by
# callers from before the split; they stay importable from here.
__all__ = ["ModelPrice", "PriceTable", "cost_of", "expected_cost"]


def cost_of(table: PriceTable, model_ref: str, record: Mapping[str, Any]) -> tuple[float, str]:
    """``(cost_usd, cost_basis)`` of one prediction record (Replicate's prediction JSON).

    `model_ref` is the reference as the user wrote it; for a bare version id the record's
    ``model`` field names the model. The cost is NaN when it cannot be known (unpriced model, no
    ``predict_time`` or token counts), and the basis then says why and what to pass. Failed
    predictions bill what they used; a prediction canceled before it started costs 0.
    Never raises for a malformed record.
    """
    recorded_model = record.get("model") if isinstance(record.get("model"), str) else None
    key = price_key(model_ref, recorded_model)
    if key is None:
        return math.nan, (
            f"unknown model for version {str(model_ref).strip()[:12]}…: the record names no model; "
            "pass model='owner/name:version' or prices=…"
        )
    price = table.lookup(model_ref, recorded_model)
    if price is None:
        return math.nan, (
            f"unknown hardware for {key}: pass hardware={{'{key}': 'gpu-…'}} or prices=…"
        )
    if price.kind == "per_second":
        return _per_second_cost(price, record)
    if price.kind == "per_output":
        return _per_output_cost(price, record)
    return _per_token_cost(price, record)


def _per_second_cost(price: ModelPrice, record: Mapping[str, Any]) -> tuple[float, str]:
    assert price.usd_per_second is not None and price.hardware is not None
    predict_time = _metric(record, "predict_time")
    if predict_time is None:
        if record.get("status") == "canceled" and not record.get("started_at"):
            return 0.0, "canceled before it started: no predict time billed"
        return math.nan, "no metrics.predict_time in the prediction: cost unknown"
    cost = predict_time * price.usd_per_second
    basis = (
        f"predict_time {_rounded(predict_time)} s × {price.hardware} "
        f"${_plain(price.usd_per_second)}/s"
    )
    if price.dedicated:
        what = "deployment" if price.key.startswith("deployments/") else "private model"
        basis += f" (lower bound: a {what} also bills setup and idle time)"
    else:
        basis += " (public model: only predict time is billed)"
    return float(cost), basis


def _per_output_cost(price: ModelPrice, record: Mapping[str, Any]) -> tuple[float, str]:
    assert price.usd_per_output is not None
    output = record.get("output")
    if output is None and (record.get("status") == "succeeded" or record.get("data_removed")):
        return math.nan, f"output not available to count {price.unit}s: cost unknown"
    units = _count_outputs(output)
    noun = price.unit if units == 1 else f"{price.unit}s"
    return float(units * price.usd_per_output), f"{units} {noun} × ${_plain(price.usd_per_output)}"


def _per_token_cost(price: ModelPrice, record: Mapping[str, Any]) -> tuple[float, str]:
    total = Decimal(0)
    parts = []
    for side, usd in (("output", price.usd_per_output_token), ("input", price.usd_per_input_token)):
        if usd is None:
            continue
        count = _metric(record, f"{side}_token_count")
        if count is None:
            return math.nan, f"no metrics.{side}_token_count in the prediction: cost unknown"
        total += count * usd
        parts.append(f"{_rounded(count)} {side} tokens × ${_plain(usd * 1_000_000)}/M")
    return float(total), " + ".join(parts)


def _metric(record: Mapping[str, Any], name: str) -> Decimal | None:
    """A numeric metric from ``record['metrics']`` (or the record itself, if flattened)."""
    metrics = record.get("metrics")
    value = metrics.get(name) if isinstance(metrics, Mapping) else None
    if value is None:
        value = record.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _count_outputs(output: Any) -> int:
    if output is None:
        return 0
    if isinstance(output, (list, tuple)):
        return len(output)
    return 1


def _plain(number: Decimal) -> str:
    """A price as exact plain decimal text: ``0.000975``, ``9.5`` (never ``9.75E-4``)."""
    return format(number.normalize(), "f")


def _rounded(number: Decimal) -> str:
    """A measured quantity for the basis text: 3 decimals (round-half-even), or 2 significant
    digits when smaller than that, trailing zeros dropped."""
    if number == 0:
        return "0"
    if abs(number) >= Decimal("0.001"):
        quantum = Decimal("0.001")
    else:
        quantum = Decimal(1).scaleb(number.adjusted() - 1)
    text = format(number.quantize(quantum, rounding=ROUND_HALF_EVEN), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text

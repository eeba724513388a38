"""Expected cost before a prediction runs: a prior for budgets and estimates."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from replibatch._spend.prices import PriceTable

__all__ = ["expected_cost"]

_MAX_TOKEN_INPUTS = ("max_tokens", "max_new_tokens")
# Input fields whose text the model reads as its prompt (upper bound on input tokens: a Llama
# token covers at least one UTF-8 byte).
_PROMPT_INPUTS = ("prompt", "system_prompt", "messages")


def expected_cost(table: PriceTable, model_ref: str, input: Mapping[str, Any]) -> float | None:
    """A prior for one prediction's cost before any row of its model has finished, or None.

    - per output item: ``num_outputs`` (default 1) × the price;
    - per second: the entry's ``typical_predict_s`` × the SKU's price, else None;
    - per token: an upper bound, ``max_tokens`` (or ``max_new_tokens``, else the entry's
      ``typical_output_tokens``) × the output price + the UTF-8 bytes of the prompt fields ×
      the input price; None when no output token count is known.

    None also when the model is not in the table (including bare version ids). Never raises.
    """
    price = table.lookup(model_ref)
    if price is None:
        return None
    if price.kind == "per_output":
        assert price.usd_per_output is not None
        units = _non_negative_int(input.get("num_outputs"))
        return float((1 if units is None else units) * price.usd_per_output)
    if price.kind == "per_second":
        if price.typical_predict_s is None or price.usd_per_second is None:
            return None
        return float(price.typical_predict_s * price.usd_per_second)
    max_output = next(
        (n for n in (_non_negative_int(input.get(k)) for k in _MAX_TOKEN_INPUTS) if n is not None),
        price.typical_output_tokens,
    )
    total = Decimal(0)
    if price.usd_per_output_token is not None:
        if max_output is None:
            return None
        total += max_output * price.usd_per_output_token
    if price.usd_per_input_token is not None:
        total += _prompt_bytes(input) * price.usd_per_input_token
    return float(total)


def _non_negative_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number < 0 or number != int(number):
        return None
    return int(number)


def _prompt_bytes(input: Mapping[str, Any]) -> int:
    total = 0
    for name in _PROMPT_INPUTS:
        value = input.get(name)
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        total += len(text.encode("utf-8"))
    return total

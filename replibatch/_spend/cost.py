"""Price table and cost arithmetic: what a prediction cost, and what one is expected to cost.

Replicate's API returns no price and no hardware, so cost is computed from a price table (data,
shipped as ``replibatch/data/prices.json``; see its ``about`` field for the shape) and the
prediction record. Three ways of billing, one per kind of model entry:

- ``{"hardware": "gpu-l40s"}``: per second of ``metrics.predict_time`` on that SKU. Public models
  bill only that; private models (``"dedicated": true``) and deployments also bill setup and idle
  time on their dedicated hardware, so the figure is a lower bound and its basis says so.
- ``{"usd_per_output": 0.003, "unit": "image"}``: official models priced per output item.
- ``{"usd_per_input_token": ..., "usd_per_output_token": ...}``: official models priced per token
  (``metrics.input_token_count`` / ``output_token_count``).

Arithmetic is done on the decimal text of each figure (``Decimal(repr(x))``) and converted to the
nearest float once, so ``43 tokens × $0.0000095`` is exactly ``0.0004085``. An unknown cost is
NaN, never 0, and its basis says what to pass to make it known.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from replibatch._table.refs import parse_model_ref
from replibatch.errors import ConfigurationError

__all__ = ["ModelPrice", "PriceTable", "cost_of", "expected_cost"]

SCHEMA = 1
PriceKind = Literal["per_second", "per_output", "per_token"]

_TOKEN_PRICE_KEYS = ("usd_per_input_token", "usd_per_output_token")
_MAX_TOKEN_INPUTS = ("max_tokens", "max_new_tokens")
# Input fields whose text the model reads as its prompt (upper bound on input tokens: a Llama
# token covers at least one UTF-8 byte).
_PROMPT_INPUTS = ("prompt", "system_prompt", "messages")


@dataclass(frozen=True)
class ModelPrice:
    """How one model is billed; exactly the fields of its `kind` are set.

    ``usd_per_second`` is resolved from ``hardware`` through the table's hardware prices.
    """

    key: str
    kind: PriceKind
    hardware: str | None = None
    usd_per_second: Decimal | None = None
    dedicated: bool = False
    usd_per_output: Decimal | None = None
    unit: str = "output"
    usd_per_input_token: Decimal | None = None
    usd_per_output_token: Decimal | None = None
    typical_predict_s: Decimal | None = None
    typical_output_tokens: int | None = None


class PriceTable:
    """Hardware prices per second and model price entries, validated; immutable.

    Build with `PriceTable.default()` (the packaged data), `PriceTable.from_dict(...)` or
    `PriceTable.from_file(...)`, and refine with `with_overrides(...)`.
    """

    def __init__(self, hardware: Mapping[str, Decimal], models: Mapping[str, Mapping[str, Any]]):
        """Use the constructors instead; raises ConfigurationError when an entry is malformed."""
        self._hardware = dict(hardware)
        self._entries = {key: dict(entry) for key, entry in models.items()}
        self._models = {key: self._model_price(key, entry) for key, entry in models.items()}

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def default(cls) -> PriceTable:
        """The price table shipped with replibatch (``replibatch/data/prices.json``)."""
        return _packaged_table()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PriceTable:
        """A table from data in the ``prices.json`` shape.

        Raises ConfigurationError when the shape, a price or a hardware reference is invalid.
        """
        hardware, models = _parse_data(data, known_hardware={})
        return cls(hardware, models)

    @classmethod
    def from_file(cls, path: str | PathLike[str]) -> PriceTable:
        """A table from a JSON file in the ``prices.json`` shape.

        Raises ConfigurationError when the file cannot be read or parsed, or its data is invalid.
        """
        return cls.from_dict(_read_json(path))

    def with_overrides(
        self,
        prices: Mapping[str, Any] | str | PathLike[str] | None = None,
        hardware: Mapping[str, str] | None = None,
    ) -> PriceTable:
        """A new table with entries replaced or added.

        `prices` is data in the ``prices.json`` shape (or a path to such a JSON file): each of its
        hardware SKUs and model entries replaces the one of the same name. `hardware` maps
        ``owner/name`` (or ``deployments/owner/name``) to the SKU it runs on, making that model
        billed per second on it (applied after `prices`).

        Raises ConfigurationError for invalid data, an unreadable file, a model key that is not
        ``owner/name`` / ``deployments/owner/name``, or an unknown SKU (the message lists the
        known SKUs).
        """
        new_hardware = dict(self._hardware)
        new_models: dict[str, Mapping[str, Any]] = dict(self._entries)
        if prices is not None:
            data = _read_json(prices) if isinstance(prices, (str, PathLike)) else prices
            added_hardware, added_models = _parse_data(data, known_hardware=new_hardware)
            new_hardware.update(added_hardware)
            new_models.update(added_models)
        if hardware is not None:
            if not isinstance(hardware, Mapping):
                raise ConfigurationError(
                    f"hardware must be a dict {{'owner/name': 'gpu-...'}}, got {type(hardware).__name__}"
                )
            for model, sku in hardware.items():
                key = _entry_key(model)
                if not isinstance(sku, str) or sku not in new_hardware:
                    raise ConfigurationError(
                        f"unknown hardware {sku!r} for {key}; known SKUs: {', '.join(sorted(new_hardware))}"
                    )
                previous = new_models.get(key, {})
                entry: dict[str, Any] = {"hardware": sku}
                # Keep what the user already said about the model's billing and typical time.
                for carried in ("dedicated", "typical_predict_s"):
                    if carried in previous:
                        entry[carried] = previous[carried]
                new_models[key] = entry
        return PriceTable(new_hardware, new_models)

    # -- queries ------------------------------------------------------------------------------

    @property
    def hardware_skus(self) -> tuple[str, ...]:
        """The known hardware SKUs, sorted."""
        return tuple(sorted(self._hardware))

    def usd_per_second(self, sku: str) -> float:
        """The price of one second on `sku`; raises ConfigurationError for an unknown SKU."""
        if sku not in self._hardware:
            raise ConfigurationError(
                f"unknown hardware {sku!r}; known SKUs: {', '.join(self.hardware_skus)}"
            )
        return float(self._hardware[sku])

    def lookup(self, model_ref: str, recorded_model: str | None = None) -> ModelPrice | None:
        """The price entry for a model reference as the user wrote it, or None when unknown.

        ``owner/name:version`` uses the ``owner/name`` entry; a bare version id uses the entry of
        `recorded_model` (the prediction record's ``model`` field). Never raises.
        """
        key = _price_key(model_ref, recorded_model)
        return self._models.get(key) if key else None

    def __contains__(self, model_ref: object) -> bool:
        return isinstance(model_ref, str) and self.lookup(model_ref) is not None

    def __repr__(self) -> str:
        return f"PriceTable({len(self._hardware)} hardware SKUs, {len(self._models)} models)"

    def _model_price(self, key: str, entry: Mapping[str, Any]) -> ModelPrice:
        typical_s = _optional_decimal(entry, "typical_predict_s", key)
        typical_tokens = entry.get("typical_output_tokens")
        if typical_tokens is not None and (
            not isinstance(typical_tokens, int) or isinstance(typical_tokens, bool) or typical_tokens < 0
        ):
            raise ConfigurationError(f"{key}: typical_output_tokens must be a non-negative integer")
        kinds = [
            kind
            for kind, present in (
                ("per_second", "hardware" in entry),
                ("per_output", "usd_per_output" in entry),
                ("per_token", any(k in entry for k in _TOKEN_PRICE_KEYS)),
            )
            if present
        ]
        if len(kinds) != 1:
            raise ConfigurationError(
                f"{key}: a model entry needs exactly one of 'hardware', 'usd_per_output', "
                f"'usd_per_input_token'/'usd_per_output_token'; got {sorted(entry)}"
            )
        kind = kinds[0]
        if kind == "per_second":
            sku = entry["hardware"]
            if not isinstance(sku, str) or sku not in self._hardware:
                raise ConfigurationError(
                    f"{key}: unknown hardware {sku!r}; known SKUs: {', '.join(sorted(self._hardware))}"
                )
            dedicated = entry.get("dedicated", key.startswith("deployments/"))
            if not isinstance(dedicated, bool):
                raise ConfigurationError(f"{key}: 'dedicated' must be true or false")
            return ModelPrice(
                key,
                "per_second",
                hardware=sku,
                usd_per_second=self._hardware[sku],
                dedicated=dedicated or key.startswith("deployments/"),
                typical_predict_s=typical_s,
                typical_output_tokens=typical_tokens,
            )
        if kind == "per_output":
            unit = entry.get("unit", "output")
            if not isinstance(unit, str) or not unit.strip():
                raise ConfigurationError(f"{key}: 'unit' must be a non-empty string such as 'image'")
            return ModelPrice(
                key,
                "per_output",
                usd_per_output=_optional_decimal(entry, "usd_per_output", key),
                unit=unit.strip(),
                typical_predict_s=typical_s,
                typical_output_tokens=typical_tokens,
            )
        return ModelPrice(
            key,
            "per_token",
            usd_per_input_token=_optional_decimal(entry, "usd_per_input_token", key),
            usd_per_output_token=_optional_decimal(entry, "usd_per_output_token", key),
            typical_predict_s=typical_s,
            typical_output_tokens=typical_tokens,
        )


# -- cost of a finished prediction ----------------------------------------------------------------


def cost_of(table: PriceTable, model_ref: str, record: Mapping[str, Any]) -> tuple[float, str]:
    """``(cost_usd, cost_basis)`` of one prediction record (Replicate's prediction JSON).

    `model_ref` is the reference as the user wrote it; for a bare version id the record's
    ``model`` field names the model. The cost is NaN when it cannot be known (unpriced model, no
    ``predict_time`` or token counts), and the basis then says why and what to pass. Failed
    predictions bill what they used; a prediction canceled before it started costs 0.
    Never raises for a malformed record.
    """
    recorded_model = record.get("model") if isinstance(record.get("model"), str) else None
    key = _price_key(model_ref, recorded_model)
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


# -- expected cost before a prediction runs -------------------------------------------------------


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


# -- helpers --------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _packaged_table() -> PriceTable:
    text = resources.files("replibatch").joinpath("data/prices.json").read_text(encoding="utf-8")
    return PriceTable.from_dict(json.loads(text))


def _read_json(path: str | PathLike[str]) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read price file {str(path)!r}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigurationError(f"price file {str(path)!r} is not valid JSON: {exc}") from exc


def _parse_data(
    data: Any, *, known_hardware: Mapping[str, Decimal]
) -> tuple[dict[str, Decimal], dict[str, Mapping[str, Any]]]:
    """Check the top-level shape; returns (hardware SKU -> USD/s, model key -> raw entry)."""
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"prices must be a dict or a JSON file path, got {type(data).__name__}")
    schema = data.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise ConfigurationError(f"unsupported prices schema {schema!r}; this replibatch reads {SCHEMA}")
    unknown = set(data) - {"schema", "about", "hardware", "models"}
    if unknown:
        raise ConfigurationError(
            f"unknown keys in prices: {sorted(unknown)}; expected 'hardware' and/or 'models'"
        )
    hardware: dict[str, Decimal] = {}
    for sku, entry in _section(data, "hardware").items():
        if not isinstance(entry, Mapping):
            raise ConfigurationError(f"hardware {sku!r}: expected {{'usd_per_second': ...}}")
        price = _optional_decimal(entry, "usd_per_second", f"hardware {sku!r}")
        if price is None:
            raise ConfigurationError(f"hardware {sku!r}: missing 'usd_per_second'")
        hardware[str(sku)] = price
    models: dict[str, Mapping[str, Any]] = {}
    for model, entry in _section(data, "models").items():
        key = _entry_key(model)
        if not isinstance(entry, Mapping):
            raise ConfigurationError(f"model {key}: expected a dict of prices")
        models[key] = entry
    # Validate the model entries against the hardware they may refer to.
    PriceTable({**known_hardware, **hardware}, models)
    return hardware, models


def _section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = data.get(name, {})
    if not isinstance(section, Mapping):
        raise ConfigurationError(f"prices[{name!r}] must be a dict")
    return section


def _entry_key(model: Any) -> str:
    """The table key for ``owner/name`` or ``deployments/owner/name``; ConfigurationError else."""
    try:
        ref = parse_model_ref(model)
    except ConfigurationError:
        ref = None
    if ref is None or ref.kind == "version":
        raise ConfigurationError(
            f"price entries are keyed by 'owner/name' or 'deployments/owner/name', got {model!r}"
        )
    return str(ref)


def _price_key(model_ref: Any, recorded_model: str | None) -> str | None:
    try:
        ref = parse_model_ref(model_ref)
    except ConfigurationError:
        return None
    if ref.kind == "deployment":
        return str(ref)
    if ref.model is not None:
        return ref.model
    if recorded_model:
        try:
            recorded = parse_model_ref(recorded_model)
        except ConfigurationError:
            return None
        return recorded.model
    return None


def _optional_decimal(entry: Mapping[str, Any], name: str, where: str) -> Decimal | None:
    value = entry.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise ConfigurationError(f"{where}: {name} must be a number, got {value!r}")
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite() or number < 0:
        raise ConfigurationError(f"{where}: {name} must be a finite number >= 0, got {value!r}")
    return number


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

"""The price table: what each model and hardware SKU costs, loaded from data.

Replicate's API returns no price and no hardware, so cost is computed from a price table (data,
shipped as ``replibatch/data/prices.json``; see its ``about`` field for the shape) and the
prediction record. Three ways of billing, one per kind of model entry:

- ``{"hardware": "gpu-l40s"}``: per second of ``metrics.predict_time`` on that SKU. Public models
  bill only that; private models (``"dedicated": true``) and deployments also bill setup and idle
  time on their dedicated hardware, so the figure is a lower bound and its basis says so.
- ``{"usd_per_output": 0.003, "unit": "image"}``: official models priced per output item.
- ``{"usd_per_input_token": ..., "usd_per_output_token": ...}``: official models priced per token
  (``metrics.input_token_count`` / ``output_token_count``).

Prices are kept as `Decimal` (from their decimal text) so that the arithmetic in `cost` is exact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from replibatch._table.refs import parse_model_ref
from replibatch.errors import ConfigurationError

__all__ = ["SCHEMA", "ModelPrice", "PriceKind", "PriceTable", "price_key"]

SCHEMA = 1
PriceKind = Literal["per_second", "per_output", "per_token"]

_TOKEN_PRICE_KEYS = ("usd_per_input_token", "usd_per_output_token")


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
        key = price_key(model_ref, recorded_model)
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


def price_key(model_ref: Any, recorded_model: str | None) -> str | None:
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

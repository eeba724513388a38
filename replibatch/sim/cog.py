"""The Cog predictor interface, small enough for the simulator's demo models.

A predictor is a class with ``setup()`` and ``predict(**inputs)``. Its inputs are the parameters of
``predict``, each declared with a type annotation and ``Input(...)`` (default, description, ``ge``,
``le``, ``choices``, ``multiple_of``), as in Cog. From them :func:`openapi_schema` builds the version's
``openapi_schema`` in Cog's shape (``components.schemas.Input`` / ``Output``), and
:class:`InputValidator` checks request inputs against that schema (jsonschema) with messages that
name the field.

Types: ``str``, ``int``, ``float``, ``bool``, ``Optional[...]`` of those, and :class:`FileInput`
(a URI in the request; the predictor receives the fetched bytes as a binary file object).
Outputs: ``Iterator[str]`` (streamed tokens), ``list[OutputFile]`` (file URLs) or a plain JSON value.
"""

from __future__ import annotations

import collections.abc
import copy
import functools
import inspect
import io
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import jsonschema

__all__ = [
    "BasePredictor",
    "FileInput",
    "Input",
    "InputValidator",
    "InvalidField",
    "OutputFile",
    "openapi_schema",
]

_MISSING: Any = object()


class FileInput(io.BytesIO):
    """A file input: a URI in the request (data:, or a URL of the simulator's file stores)."""

    def __init__(self, data: bytes = b"", name: str = "input") -> None:
        super().__init__(data)
        self.name = name


@dataclass(frozen=True)
class OutputFile:
    """A file produced by a predictor; the simulator serves it at an expiring URL."""

    data: bytes
    name: str
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class _InputSpec:
    default: Any = _MISSING
    description: str | None = None
    ge: float | None = None
    le: float | None = None
    choices: tuple[Any, ...] | None = None
    multiple_of: int | None = None


def Input(  # noqa: N802 - named like Cog's Input
    default: Any = _MISSING,
    *,
    description: str | None = None,
    ge: float | None = None,
    le: float | None = None,
    choices: typing.Sequence[Any] | None = None,
    multiple_of: int | None = None,
) -> Any:
    """Declare a predictor input (used as the default value of a ``predict`` parameter)."""
    return _InputSpec(
        default, description, ge, le, tuple(choices) if choices is not None else None, multiple_of
    )


class BasePredictor:
    """Base class of simulator models, following Cog's ``BasePredictor``.

    Beyond Cog, the simulator asks a predictor how long a prediction nominally takes
    (:meth:`nominal_seconds`, before ``time_scale``), how long until the first streamed item
    (``prefill_seconds``) and, for text models, its token counts (:meth:`token_counts`).
    """

    prefill_seconds: float = 0.0

    def setup(self) -> None:
        """Load whatever the model needs; called once when the server starts."""

    def predict(self, **inputs: Any) -> Any:
        """Run one prediction; raising makes the prediction ``failed`` with the message as error."""
        raise NotImplementedError

    def nominal_seconds(self, inputs: Mapping[str, Any], output: Any) -> float:
        """Seconds of predict time this prediction would take on its hardware."""
        return 1.0

    def token_counts(self, inputs: Mapping[str, Any], output: Any) -> tuple[int, int] | None:
        """(input tokens, output tokens) for text models, None for others."""
        return None


_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Union and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return annotation, False


def _input_property(annotation: Any) -> dict[str, Any]:
    if annotation is FileInput:
        return {"type": "string", "format": "uri"}
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation]}
    raise TypeError(f"unsupported input type {annotation!r}")


def _output_schema(annotation: Any) -> dict[str, Any]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (collections.abc.Iterator, collections.abc.Iterable):
        return {
            "type": "array",
            "items": {"type": "string"},
            "title": "Output",
            "x-cog-array-type": "iterator",
            "x-cog-array-display": "concatenate",
        }
    if origin is list and args and args[0] is OutputFile:
        return {"type": "array", "items": {"type": "string", "format": "uri"}, "title": "Output"}
    if annotation is OutputFile:
        return {"type": "string", "format": "uri", "title": "Output"}
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation], "title": "Output"}
    return {"title": "Output"}


def input_specs(predictor: type[BasePredictor] | BasePredictor) -> dict[str, tuple[Any, _InputSpec]]:
    """Map each ``predict`` parameter to (annotation without Optional, its Input spec)."""
    cls = predictor if isinstance(predictor, type) else type(predictor)
    # A class is hashable (by identity); typeshed's Hashable protocol does not see type objects as such.
    return _input_specs(cls)  # type: ignore[arg-type]


@functools.cache
def _input_specs(cls: type[BasePredictor]) -> dict[str, tuple[Any, _InputSpec]]:
    # Cached per class: signature inspection is too slow to repeat on every prediction.
    hints = typing.get_type_hints(cls.predict)
    specs: dict[str, tuple[Any, _InputSpec]] = {}
    for name, param in inspect.signature(cls.predict).parameters.items():
        if name == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        spec = param.default if isinstance(param.default, _InputSpec) else _InputSpec(
            _MISSING if param.default is inspect.Parameter.empty else param.default
        )
        annotation, optional = _unwrap_optional(hints.get(name, str))
        if optional and spec.default is _MISSING:
            spec = _InputSpec(None, spec.description, spec.ge, spec.le, spec.choices, spec.multiple_of)
        specs[name] = (annotation, spec)
    return specs


def openapi_schema(predictor: type[BasePredictor] | BasePredictor) -> dict[str, Any]:
    """The Cog-shaped ``openapi_schema`` of a predictor's version.

    Raises TypeError for an input or output type the simulator does not support.
    """
    cls = predictor if isinstance(predictor, type) else type(predictor)
    properties: dict[str, Any] = {}
    required: list[str] = []
    schemas: dict[str, Any] = {}
    for order, (name, (annotation, spec)) in enumerate(input_specs(cls).items()):
        prop: dict[str, Any] = {"title": name.replace("_", " ").title(), "x-order": order}
        if spec.choices is not None:
            # Cog puts enums in their own component schema and refers to it with allOf.
            schemas[name] = {
                "title": name,
                "description": "An enumeration.",
                "enum": list(spec.choices),
                **_input_property(annotation),
            }
            prop["allOf"] = [{"$ref": f"#/components/schemas/{name}"}]
        else:
            prop.update(_input_property(annotation))
        if spec.default is not _MISSING and spec.default is not None:
            prop["default"] = spec.default
        if spec.description:
            prop["description"] = spec.description
        if spec.ge is not None:
            prop["minimum"] = spec.ge
        if spec.le is not None:
            prop["maximum"] = spec.le
        if spec.multiple_of is not None:
            prop["multipleOf"] = spec.multiple_of
        if spec.default is _MISSING:
            required.append(name)
        properties[name] = prop
    input_schema: dict[str, Any] = {"type": "object", "title": "Input", "properties": properties}
    if required:
        input_schema["required"] = required
    schemas["Input"] = input_schema
    schemas["Output"] = _output_schema(typing.get_type_hints(cls.predict).get("return", Any))
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {},
        "components": {"schemas": schemas},
    }


@dataclass(frozen=True)
class InvalidField:
    """One input problem, shaped like Replicate's ``invalid_fields`` entries."""

    type: str
    field: str
    description: str


class InputValidator:
    """Checks request inputs against a version's ``openapi_schema`` (``components.schemas.Input``).

    Unknown fields are rejected too (the published schema stays in Cog's shape).
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        components = copy.deepcopy(dict(schema.get("components", {})))
        input_schema = dict(components.get("schemas", {}).get("Input", {"type": "object"}))
        self._properties: dict[str, Any] = dict(input_schema.get("properties", {}))
        self.uri_fields = {
            name for name, prop in self._properties.items() if prop.get("format") == "uri"
        }
        # Embedding the components lets Cog's "#/components/schemas/<enum>" refs resolve.
        checked = {**input_schema, "additionalProperties": False, "components": components}
        self._validator = jsonschema.Draft202012Validator(checked)

    def errors(self, inputs: Any) -> list[InvalidField]:
        """Every problem with ``inputs``; an empty list when they are valid."""
        if not isinstance(inputs, dict):
            return [InvalidField("invalid_type", "input", "Invalid type. Expected: object")]
        found = [self._describe(error, inputs) for error in self._validator.iter_errors(inputs)]
        for name in sorted(self.uri_fields & inputs.keys()):
            value = inputs[name]
            if isinstance(value, str) and not value.startswith(("data:", "http://", "https://")):
                found.append(InvalidField("format", f"input.{name}", "Does not match format 'uri'"))
        return sorted(found, key=lambda f: f.field)

    def _describe(self, error: jsonschema.ValidationError, inputs: dict[str, Any]) -> InvalidField:
        field = "input" + "".join(f".{part}" for part in error.absolute_path)
        kind, value = error.validator, error.validator_value
        if kind == "additionalProperties":
            extra = sorted(set(inputs) - set(self._properties))
            names = ", ".join(extra)
            return InvalidField("additional_property_not_allowed", "input." + extra[0],
                                f"Additional property {names} is not allowed")
        if kind == "required":
            missing = [name for name in cast("list[str]", value) if name not in inputs]  # schema: a list
            return InvalidField("required", f"input.{missing[0]}", f"{missing[0]} is required")
        if kind == "type":
            given = _json_type_name(error.instance)
            return InvalidField("invalid_type", field,
                                f"Invalid type. Expected: {value}, given: {given}")
        if kind == "minimum":
            return InvalidField("number_gte", field, f"Must be greater than or equal to {value}")
        if kind == "maximum":
            return InvalidField("number_lte", field, f"Must be less than or equal to {value}")
        if kind == "multipleOf":
            return InvalidField("multiple_of", field, f"Must be a multiple of {value}")
        if kind == "enum":
            options = ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in cast("list[Any]", value))
            return InvalidField("enum", field, f"{field} must be one of the following: {options}")
        return InvalidField(str(kind), field, error.message)


def _json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def call_kwargs(predictor: BasePredictor, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments for ``predict``: the request's inputs plus declared defaults."""
    kwargs: dict[str, Any] = {}
    for name, (_annotation, spec) in input_specs(predictor).items():
        if name in inputs:
            kwargs[name] = inputs[name]
        elif spec.default is not _MISSING:
            kwargs[name] = spec.default
    return kwargs


def materialize(output: Any) -> tuple[Any, bool]:
    """Run a generator output to a list; returns (output, whether it streams item by item)."""
    if isinstance(output, Iterator):
        return list(output), True
    return output, False

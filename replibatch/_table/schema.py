"""A model version's input schema: checking a row's input before anything is sent for it.

Replicate publishes each version's ``openapi_schema`` (Cog's shape: the input is
``components.schemas.Input``; enums are separate component schemas referred to with
``allOf: [{"$ref": "#/components/schemas/<name>"}]``). `InputSchema.from_openapi` reads it;
`InputSchema.check` lists every problem of one input (type, enum, minimum/maximum, required,
unknown field, ``format: uri``) as ``"input.<field>: <value> <rule>"`` lines; `shape_input`
turns the frame's values into what the schema wants (whole floats become ints except where the
schema says ``number``; a string naming an existing local file becomes a file where the schema
says the input is a file).

Pure apart from `shape_input` reading the files a string names (to hash them). Raises nothing
for a bad input: problems are returned, so a bad row ends ``error`` and the run goes on.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import jsonschema

from replibatch._table.inputs import FileInput, is_uri, path_file_input
from replibatch.errors import ConfigurationError

__all__ = ["InputSchema", "promote_files", "shape_input"]

_VALUE_CHARS = 120
# What a FileInput will be once sent (a data URI or an uploaded file's URL): validated as a URI.
_FILE_PLACEHOLDER = "data:application/octet-stream;base64,"
_ARTICLE = {"integer": "an integer", "array": "an array", "object": "an object"}


def _show(value: Any) -> str:
    """A value as a short repr for a message (long strings are cut)."""
    if isinstance(value, FileInput):
        return f"file {value.filename!r}"
    text = repr(value)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 1] + "…"


def _type_phrase(expected: Any) -> str:
    kinds = expected if isinstance(expected, list) else [expected]
    return " or ".join(_ARTICLE.get(str(kind), f"a {kind}") for kind in kinds)


@dataclass(frozen=True)
class InputSchema:
    """The input part of a version's ``openapi_schema``.

    `properties` maps each input name to its property with Cog's ``allOf``/``$ref`` indirection
    merged in (so ``type``, ``enum`` and ``format`` are read directly); `fields` holds one
    jsonschema validator per input; `memo` remembers the problems of values already checked.
    """

    properties: Mapping[str, Mapping[str, Any]]
    required: tuple[str, ...]
    fields: Mapping[str, Any] = field(repr=False, compare=False)  # name -> jsonschema validator
    file_fields: frozenset[str] = frozenset()
    number_fields: frozenset[str] = frozenset()
    memo: dict[tuple[Any, ...], tuple[str, ...]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def from_openapi(cls, openapi: Any) -> InputSchema | None:
        """The input schema of a version's ``openapi_schema``, or None when it has none (a
        missing or malformed schema is not an error: the service still validates)."""
        if not isinstance(openapi, Mapping):
            return None
        components = openapi.get("components")
        schemas = components.get("schemas") if isinstance(components, Mapping) else None
        input_schema = schemas.get("Input") if isinstance(schemas, Mapping) else None
        if not isinstance(input_schema, Mapping):
            return None
        raw_properties = input_schema.get("properties")
        if not isinstance(raw_properties, Mapping):
            return None
        raw = {str(k): v for k, v in raw_properties.items() if isinstance(v, Mapping)}
        properties = {name: _merged(prop, schemas) for name, prop in raw.items()}  # type: ignore[arg-type]
        required = tuple(str(name) for name in input_schema.get("required") or ())
        # One validator per field, with the components embedded so Cog's "$ref"s resolve: rows
        # are checked field by field, and a value seen before is not checked again.
        fields = {}
        try:
            for name, prop in raw.items():
                document = {**copy.deepcopy(dict(prop)), "components": copy.deepcopy(dict(components))}  # type: ignore[arg-type]
                jsonschema.Draft202012Validator.check_schema(document)
                fields[name] = jsonschema.Draft202012Validator(document)
        except jsonschema.SchemaError:
            return None
        files = frozenset(name for name, prop in properties.items() if _is_file(prop))
        numbers = frozenset(name for name, prop in properties.items() if _is_number(prop))
        return cls(properties, required, fields, files, numbers)

    def kind(self, name: str) -> str | None:
        """The JSON type the schema gives input `name` (None when it gives none)."""
        kind = self.properties.get(name, {}).get("type")
        return kind if isinstance(kind, str) else None

    def is_file(self, name: str) -> bool:
        """True when input `name` is a file (``format: uri``) or a list of files."""
        return name in self.file_fields

    def check(self, value: Mapping[str, Any]) -> list[str]:
        """Every problem of input `value`, one line each, sorted by field; [] when it is valid.

        Unknown inputs are problems too (Cog ignores them silently, which hides a typo'd
        parameter). FileInputs count as URIs (that is what they are sent as).
        """
        problems: list[str] = []
        extra = [name for name in value if name not in self.properties]
        if extra:
            names = ", ".join(sorted(self.properties))
            problems += [
                f"input.{name}: the model has no input named {name!r} (its inputs: {names})"
                for name in extra
            ]
        problems += [
            f"input.{name}: required, and the row has no value for it"
            for name in self.required if name not in value
        ]
        for name, item in value.items():
            if name in self.fields:
                problems += self._field_problems(name, item)
        return sorted(problems)

    def _field_problems(self, name: str, item: Any) -> tuple[str, ...]:
        where = f"input.{name}"
        problems = _quick_check(self.properties[name], item, where)
        if problems is None:
            try:
                key: tuple[Any, ...] | None = (name, type(item), item)
                found = self.memo.get(key)  # type: ignore[arg-type]
            except TypeError:  # a list or dict: not hashable, checked every time
                key, found = None, None
            if found is None:
                instance = _with_placeholders(item)
                found = tuple(
                    self._describe(error, where)
                    for error in self.fields[name].iter_errors(instance)
                )
                if key is not None and len(self.memo) < 100_000:
                    self.memo[key] = found
            problems = found
        if name in self.file_fields:
            problems += tuple(self._uri_problems({name: item}))
        return problems

    def _describe(self, error: jsonschema.ValidationError, field_name: str) -> str:
        where = field_name + "".join(f"[{part!r}]" for part in error.absolute_path)
        kind, rule, got = error.validator, error.validator_value, error.instance
        if kind == "type":
            return f"{where}: {_show(got)} is not {_type_phrase(rule)}"
        if kind == "enum":
            options = ", ".join(_show(v) for v in cast("list[Any]", rule))
            return f"{where}: {_show(got)} is not one of {options}"
        if kind == "minimum":
            return f"{where}: {_show(got)} is less than the minimum {rule}"
        if kind == "maximum":
            return f"{where}: {_show(got)} is more than the maximum {rule}"
        if kind == "exclusiveMinimum":
            return f"{where}: {_show(got)} must be more than {rule}"
        if kind == "exclusiveMaximum":
            return f"{where}: {_show(got)} must be less than {rule}"
        if kind == "multipleOf":
            return f"{where}: {_show(got)} is not a multiple of {rule}"
        return f"{where}: {_show(got)}: {error.message}"

    def _uri_problems(self, value: Mapping[str, Any]) -> list[str]:
        # jsonschema leaves "format" unchecked by default; a file input must be a URL or a file.
        problems = []
        for name, item in value.items():
            if not self.is_file(name):
                continue
            for where, text in _strings(item, f"input.{name}"):
                if not is_uri(text):
                    problems.append(
                        f"{where}: {_show(text)} is not a URL, and no such local file exists"
                    )
        return problems


# Keywords the hand-written check below understands; a property using any other goes to jsonschema.
_QUICK_KEYWORDS = frozenset(
    ("type", "title", "description", "default", "x-order", "format", "minimum", "maximum", "enum",
     "nullable", "readOnly", "writeOnly", "examples", "deprecated", "multipleOf")
)
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,)
}


def _quick_check(prop: Mapping[str, Any], item: Any, where: str) -> tuple[str, ...] | None:
    """The problems of a scalar under a simple scalar property, or None to ask jsonschema.

    Same rules as jsonschema (a bool is no number; jsonschema's "integer" also takes 1.0, which
    never reaches here: `shape_input` made it 1), with this module's messages. A few µs per
    value, where jsonschema takes tens: a 100,000-row frame is checked in well under a second.
    """
    kind = prop.get("type")
    if kind not in _PY_TYPES or not _QUICK_KEYWORDS.issuperset(prop):
        return None
    step = prop.get("multipleOf")
    if step is not None and not (type(step) is int and type(item) is int):
        return None  # float steps need jsonschema's care with rounding
    if (type(item) is bool and kind != "boolean") or not isinstance(item, _PY_TYPES[kind]):
        if isinstance(item, FileInput) and kind == "string":
            return ()
        return (f"{where}: {_show(item)} is not {_type_phrase(kind)}",)
    problems = []
    enum = prop.get("enum")
    if enum is not None and not any((type(item) is type(v) and item == v) or (
        kind == "number" and type(item) is not bool and type(v) in (int, float) and item == v
    ) for v in enum):
        problems.append(f"{where}: {_show(item)} is not one of {', '.join(_show(v) for v in enum)}")
    if kind in ("integer", "number"):
        number = cast(float, item)  # an int or a float: checked above
        low, high = prop.get("minimum"), prop.get("maximum")
        if isinstance(low, (int, float)) and number < low:
            problems.append(f"{where}: {_show(item)} is less than the minimum {low}")
        if isinstance(high, (int, float)) and number > high:
            problems.append(f"{where}: {_show(item)} is more than the maximum {high}")
        if step and number % step:
            problems.append(f"{where}: {_show(item)} is not a multiple of {step}")
    return tuple(problems)


def _merged(prop: Mapping[str, Any], schemas: Mapping[str, Any]) -> dict[str, Any]:
    """`prop` with the component schemas its ``allOf`` refers to merged in (Cog's enums)."""
    merged = {k: v for k, v in prop.items() if k != "allOf"}
    for part in prop.get("allOf") or ():
        if not isinstance(part, Mapping):
            continue
        ref = part.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            target = schemas.get(ref.rsplit("/", 1)[-1])
            part = target if isinstance(target, Mapping) else {}
        for key, item in part.items():
            merged.setdefault(key, item)
    return merged


def _strings(value: Any, where: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(where, value)]
    if isinstance(value, list):
        return [(f"{where}[{i}]", item) for i, item in enumerate(value) if isinstance(item, str)]
    return []


def _with_placeholders(value: Any) -> Any:
    if isinstance(value, FileInput):
        return _FILE_PLACEHOLDER
    if isinstance(value, Mapping):
        return {key: _with_placeholders(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_with_placeholders(item) for item in value]
    return value


def _whole_to_int(value: Any, keep_floats: bool) -> Any:
    if type(value) is float:
        if not keep_floats and value.is_integer() and abs(value) < 2**53:
            # pandas turns an int column with a missing cell into floats (24 -> 24.0); a model
            # with an integer input rejects 24.0. Keys treat 24 and 24.0 alike.
            return int(value)
        return value
    if isinstance(value, dict):
        return {key: _whole_to_int(item, keep_floats) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_to_int(item, keep_floats) for item in value]
    return value


def _is_file(prop: Mapping[str, Any]) -> bool:
    if prop.get("format") == "uri":
        return True
    items = prop.get("items")
    return isinstance(items, Mapping) and items.get("format") == "uri"


def _is_number(prop: Mapping[str, Any]) -> bool:
    if prop.get("type") == "number":
        return True
    items = prop.get("items")
    return prop.get("type") == "array" and isinstance(items, Mapping) and items.get("type") == "number"


def _promote(value: Any) -> tuple[Any, str | None]:
    """A string (or list of strings) naming existing local files as FileInputs."""
    if isinstance(value, list):
        out, problem = [], None
        for item in value:
            item, problem_here = _promote(item)
            problem = problem or problem_here
            out.append(item)
        return out, problem
    if isinstance(value, str):
        try:
            return path_file_input(value) or value, None
        except ConfigurationError as exc:
            return value, str(exc)
    return value, None


def promote_files(
    value: Mapping[str, Any], schema: InputSchema | None
) -> tuple[Mapping[str, Any], list[str]]:
    """`value` with the strings of the schema's file inputs that name existing local files as
    FileInputs (hashed now: a file is keyed by its content), and the files that could not be
    read. `value` itself when the schema has no file input. Done before cache keys are made;
    `shape_input` does the rest once the cache has answered."""
    if schema is None or not schema.file_fields or not schema.file_fields & value.keys():
        return value, []
    promoted = dict(value)
    problems = []
    for name in schema.file_fields & value.keys():
        promoted[name], problem = _promote(value[name])
        if problem:
            problems.append(f"input.{name}: {problem}")
    return promoted, problems


def shape_input(value: Mapping[str, Any], schema: InputSchema | None) -> tuple[dict[str, Any], list[str]]:
    """`value` made ready to send under `schema`, and the problems found (see `check`).

    Whole-number floats become ints, except in inputs the schema types ``number`` (kept as
    floats). Where the schema says an input is a file (``format: uri``), a string naming an
    existing local file becomes a FileInput (hashed now). With no schema only the float rule
    applies and nothing is checked.
    """
    shaped: dict[str, Any] = {}
    problems: list[str] = []
    numbers = schema.number_fields if schema is not None else frozenset()
    files = schema.file_fields if schema is not None else frozenset()
    for name, item in value.items():
        if type(item) is not str:
            item = _whole_to_int(item, name in numbers)
        if name in files:
            item, problem = _promote(item)
            if problem:
                problems.append(f"input.{name}: {problem}")
        shaped[name] = item
    if schema is not None and not problems:
        problems = schema.check(shaped)
    return shaped, problems

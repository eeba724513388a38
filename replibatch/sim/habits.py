"""Pure rules for the real service's habits that the spec does not spell out.

Each rule cites where it was seen: the spec (shared/replicate-api/openapi.json) or a recorded
cassette (shared/replicate-api/cassettes, copied to tests/fixtures/cassettes).
"""

from __future__ import annotations

import re

__all__ = ["CancelAfterError", "internal_model_name", "parse_cancel_after"]

# parameters_cancel_after_header: "The duration can be specified as string with an optional unit
# suffix: s, m, h ... defaults to seconds if no unit suffix is provided (e.g. `30` is the same as
# `30s`). You can combine units for more precision (e.g., `1h30m45s`). The minimum allowed
# duration is 5 seconds." Fractions (`1.5s`) and `ms` are accepted too, as Go's duration syntax
# (the API's own) does; clients sending exact sub-second deadlines rely on that.
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class CancelAfterError(ValueError):
    """A ``Cancel-After`` value that is not a duration."""


def parse_cancel_after(value: str) -> float:
    """Seconds of a ``Cancel-After`` header value (``90``, ``1m``, ``1h30m45s``, ``0.5s``).

    A bare number (the whole value) is seconds; in a combination every part has its unit.
    Raises CancelAfterError when ``value`` is empty or not such a duration.
    """
    text = value.strip()
    if not text:
        raise CancelAfterError("Cancel-After is empty")
    total, position, parts = 0.0, 0, 0
    while position < len(text):
        match = _PART.match(text, position)
        if match is None:
            raise CancelAfterError(f"Cancel-After is not a duration: {value!r}")
        unit = match.group(2)
        position, parts = match.end(), parts + 1
        if unit is None and (parts > 1 or position < len(text)):
            raise CancelAfterError(f"Cancel-After is not a duration: {value!r}")
        total += float(match.group(1)) * _UNITS[unit]
    return total


def internal_model_name(owner: str, name: str) -> str:
    """The ``model`` an official model's prediction reports.

    Recorded: a create through ``/v1/models/meta/meta-llama-3-8b-instruct/predictions`` answers
    ``"model": "replicate-internal/llama-3-8b-instruct-int8-triton"``
    (test_predictions_create_by_model[True].yaml) and ``meta/llama-2-70b-chat`` answers
    ``"replicate/lifeboat-70b"`` (models-predictions-create.yaml). The simulator follows the
    first form: the owner prefix dropped from the name, under ``replicate-internal/``.
    """
    short = name[len(owner) + 1:] if name.startswith(f"{owner}-") else name
    return f"replicate-internal/{short}-int8-triton"

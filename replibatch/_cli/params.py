"""Command-line values: ``--param name=v1,v2`` axes, typed values and ``--older-than`` ages."""

from __future__ import annotations

import csv
import math
import re
from typing import Any

from replibatch._cli.common import CliError

__all__ = ["parse_duration", "parse_param", "parse_value"]

_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def parse_value(text: str) -> bool | int | float | str:
    """A command-line value as the type it spells: ``true``/``false`` (any case) as bool, then
    int, then float (finite), else the text unchanged. Never raises."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def parse_param(text: str) -> tuple[str, list[bool | int | float | str]]:
    """``name=v1,v2,...`` -> (name, [parsed values]). Values are split like a CSV line, so a value
    holding a comma can be quoted: ``style="warm, soft",cold``.

    Raises CliError for a missing ``=``, a bad name, an empty value or a repeated value.
    """
    name, sep, rest = text.partition("=")
    name = name.strip()
    example = "e.g. --param temperature=0.2,0.9"
    if not sep:
        raise CliError(f"--param {text!r} has no '=': write NAME=VALUE[,VALUE...], {example}")
    if not _PARAM_NAME.match(name):
        raise CliError(f"--param {text!r}: {name!r} is not a parameter name ({example})")
    try:
        raw = next(csv.reader([rest], skipinitialspace=True))
    except (csv.Error, StopIteration):
        raw = []
    if not raw or any(value.strip() == "" for value in raw):
        raise CliError(f"--param {text!r} has an empty value: give one or more values, {example}")
    values = [parse_value(value.strip()) for value in raw]
    seen: list[Any] = []
    for value in values:
        # bool is an int subclass: True == 1, so compare type and value.
        if any(type(value) is type(other) and value == other for other in seen):
            raise CliError(f"--param {name} lists {value!r} twice")
        seen.append(value)
    return name, values


def parse_duration(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``45s``, ``2w`` or plain seconds -> seconds.

    Raises CliError for anything else.
    """
    from replibatch._table.durations import duration_seconds

    seconds = duration_seconds(text)
    if seconds is None:
        raise CliError(
            f"--older-than {text!r} is not a duration: use e.g. 7d, 12h, 30m or a number of seconds"
        )
    return seconds



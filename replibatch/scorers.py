"""Common scorers for `replibatch.score`: each call returns a scorer (a callable of the row, a
mapping of column -> value such as `replibatch._evaluate.score.Row` or a pandas Series).

    rb.score(res,
             cat=rb.scorers.contains("cat"),                 # 1.0 / 0.0
             digits=rb.scorers.regex(r"\\d+"),
             valid=rb.scorers.json_valid(),
             words=rb.scorers.length("words"),
             exact=rb.scorers.equals("expected"),             # a reference column
             close=rb.scorers.similarity("expected"))         # 0..1 text similarity

Text scorers read the row's ``output`` as text: a string as it is, a list of strings joined, a
dict or list of other things as JSON. Scorers raise (and `score` records the reason) when a
reference column is missing from the row.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "contains",
    "equals",
    "json_valid",
    "length",
    "regex",
    "similarity",
    "text_of",
    "text_ratio",
]

RowScorer = Callable[[Mapping[str, Any]], float]


def text_of(output: Any) -> str:
    """`output` as text: str unchanged, a list of str joined, None as "", anything else as JSON."""
    if output is None:
        return ""
    if isinstance(output, str):
        return str(output)
    if isinstance(output, (list, tuple)) and all(isinstance(item, str) for item in output):
        return "".join(output)
    try:
        return json.dumps(output, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(output)


def text_ratio(a: str, b: str) -> float:
    """Similarity of two texts in [0, 1]: difflib's ratio over words (1.0 when equal).

    Word-level, so a changed word counts once and the cost stays low on long outputs.
    """
    if a == b:
        return 1.0
    left, right = a.split(), b.split()
    if not left and not right:
        return 1.0 if a.strip() == b.strip() else 0.0
    return difflib.SequenceMatcher(None, left, right, autojunk=False).ratio()


def _reference(row: Mapping[str, Any], column: str) -> Any:
    if column not in row:
        raise KeyError(f"the row has no column {column!r}")
    return row[column]


def _normalize(text: str, case: bool) -> str:
    text = " ".join(text.split())
    return text if case else text.casefold()


def contains(text: str, *, case: bool = False) -> RowScorer:
    """1.0 when the output contains `text` (case-insensitive unless `case`), else 0.0."""
    needle = text if case else text.casefold()

    def scorer(row: Mapping[str, Any]) -> float:
        haystack = text_of(row["output"])
        return float(needle in (haystack if case else haystack.casefold()))

    return scorer


def regex(pattern: str, *, flags: int = 0, count: bool = False) -> RowScorer:
    """1.0 when `pattern` matches somewhere in the output (`count`: the number of matches).

    Raises re.error at once when the pattern does not compile.
    """
    compiled = re.compile(pattern, flags)

    def scorer(row: Mapping[str, Any]) -> float:
        text = text_of(row["output"])
        if count:
            return float(sum(1 for _ in compiled.finditer(text)))
        return float(compiled.search(text) is not None)

    return scorer


def json_valid(*, required: tuple[str, ...] | list[str] = ()) -> RowScorer:
    """1.0 when the output is (or, as text, parses as) JSON having every `required` key."""
    wanted = tuple(required)

    def scorer(row: Mapping[str, Any]) -> float:
        output = row["output"]
        if isinstance(output, str):
            text = output.strip()
            # Models often wrap JSON in a ``` fence.
            fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
            try:
                output = json.loads(fenced.group(1) if fenced else text)
            except ValueError:
                return 0.0
        if wanted:
            return float(isinstance(output, dict) and all(key in output for key in wanted))
        return float(isinstance(output, (dict, list)))

    return scorer


def length(unit: str = "chars") -> RowScorer:
    """The output's length in ``"chars"``, ``"words"`` or ``"lines"``.

    Raises ValueError at once for another unit.
    """
    if unit not in ("chars", "words", "lines"):
        raise ValueError(f"unit must be 'chars', 'words' or 'lines', got {unit!r}")

    def scorer(row: Mapping[str, Any]) -> float:
        text = text_of(row["output"])
        if unit == "chars":
            return float(len(text))
        if unit == "words":
            return float(len(text.split()))
        return float(len(text.splitlines()))

    return scorer


def equals(column: str, *, case: bool = False) -> RowScorer:
    """1.0 when the output equals the row's `column` (whitespace-collapsed; case-insensitive
    unless `case`). The scorer raises KeyError on a row without `column`."""

    def scorer(row: Mapping[str, Any]) -> float:
        expected = text_of(_reference(row, column))
        return float(_normalize(text_of(row["output"]), case) == _normalize(expected, case))

    return scorer


def similarity(column: str) -> RowScorer:
    """Text similarity in [0, 1] of the output to the row's `column` (`text_ratio`, case-folded).
    The scorer raises KeyError on a row without `column`."""

    def scorer(row: Mapping[str, Any]) -> float:
        expected = _normalize(text_of(_reference(row, column)), False)
        return text_ratio(_normalize(text_of(row["output"]), False), expected)

    return scorer

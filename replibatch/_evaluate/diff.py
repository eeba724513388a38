"""`diff`: align two result frames and say, per pair of rows, what changed — the regression check
a user runs when a model version, a prompt template or a parameter setting changes.

`diff(before, after, on=[...])` pairs the rows of both frames that have the same values in the
`on` columns (by default every parameter column the frames share: not ``model``, result, score,
judge or rating columns) and returns one row per pair:

| column | meaning |
|---|---|
| the `on` columns | what the pair was aligned on |
| ``pair`` | ``both``, ``before only`` or ``after only`` (a row the other frame lacks) |
| ``output_before``, ``output_after``, ``status_before``, ``status_after`` | the two sides |
| ``changed`` | True when the outputs differ (or the status, or one side is missing) |
| ``similarity`` | 1.0 for equal outputs; text: a word-level ratio (`scorers.text_ratio`); images: 1 - the dHash distance (a 64-bit perceptual hash computed locally) |
| ``<score>_before``, ``<score>_after``, ``<score>_delta`` | each ``score_*`` column both frames have (after - before) |
| ``cost_delta``, ``latency_delta`` | after - before of ``cost_usd`` and ``latency_s`` |

Outputs are compared as text (file outputs by their file-store path, which is named by the
file's content hash, so equal files compare equal). `differing_rows` backs
``rb.compare(..., only_different=True)``.
"""  # noqa: E501 - the table's rows cannot wrap

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from replibatch._evaluate.score import evaluation_columns, score_columns
from replibatch._store.outfiles import image_paths
from replibatch._table.frame import ADDED_COLUMNS, SAMPLE_COLUMN
from replibatch.errors import ConfigurationError
from replibatch.scorers import text_of, text_ratio

__all__ = ["dhash", "diff", "differing_rows", "fingerprint", "image_similarity", "output_similarity"]

def fingerprint(value: Any) -> str | None:
    """A text that is equal for equal outputs (None for a missing output)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (list, tuple)):
        return "\x1f".join(fingerprint(item) or "" for item in value)
    if isinstance(value, str) and hasattr(value, "path"):
        return str(value.path)  # a file-store output: its path names its content hash
    return text_of(value)


def dhash(path: str | Path) -> np.ndarray:
    """The 64-bit difference hash of an image (8 rows x 8 brightness steps), as 64 booleans.

    Raises OSError (from PIL) when the file is not a readable image.
    """
    from PIL import Image

    with Image.open(path) as image:
        small = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.LANCZOS), dtype=float)
    return (small[:, 1:] > small[:, :-1]).ravel()


def image_similarity(a: str | Path, b: str | Path) -> float:
    """1 - the share of differing dHash bits: 1.0 for look-alike images, ~0.5 for unrelated ones.

    Raises OSError when either file is not a readable image.
    """
    return 1.0 - float(np.mean(dhash(a) != dhash(b)))


def output_similarity(before: Any, after: Any) -> float:
    """How alike two outputs are, in [0, 1] (see the module docstring); NaN when one is missing
    or images cannot be read."""
    left, right = fingerprint(before), fingerprint(after)
    if left is None or right is None:
        return math.nan
    if left == right:
        return 1.0
    # Read here only (hashed, never sent): plain paths from a Parquet round trip count.
    images_before = image_paths(before, local_paths=True)
    images_after = image_paths(after, local_paths=True)
    if images_before and images_after:
        try:
            pairs = list(zip(images_before, images_after, strict=False))
            similar = [image_similarity(a, b) for a, b in pairs]
        except OSError:
            return math.nan
        # A different number of images is a difference too: unmatched ones count as 0.
        return sum(similar) / max(len(images_before), len(images_after))
    return text_ratio(text_of(before), text_of(after))


def _as_list(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _default_on(before: pd.DataFrame, after: pd.DataFrame) -> list[str]:
    derived = set(evaluation_columns(list(before.columns))) | set(evaluation_columns(list(after.columns)))
    shared = [c for c in before.columns
              if c in after.columns and c not in ADDED_COLUMNS and c not in derived]
    if SAMPLE_COLUMN in before.columns and SAMPLE_COLUMN in after.columns and SAMPLE_COLUMN not in shared:
        shared.append(SAMPLE_COLUMN)
    return shared


def _keys(frame: pd.DataFrame, on: list[str], side: str) -> list[tuple[Any, ...]]:
    keys = [tuple(None if (isinstance(v, float) and math.isnan(v)) else v for v in row)
            for row in zip(*(frame[c].tolist() for c in on), strict=True)]
    seen: set[tuple[Any, ...]] = set()
    for key in keys:
        if key in seen:
            raise ConfigurationError(
                f"{side} has more than one row for {dict(zip(on, key, strict=False))!r}: "
                "pass on=[...] with the "
                "columns that tell its rows apart (e.g. add 'model' or 'sample')"
            )
        seen.add(key)
    return keys


class _Columns:
    """The cells of a frame's columns as lists, read once (a per-cell frame lookup is slow)."""

    def __init__(self, frame: pd.DataFrame, names: list[str]) -> None:
        self._lists = {name: frame[name].tolist() for name in names if name in frame.columns}

    def get(self, name: str, position: int | None) -> Any:
        values = self._lists.get(name)
        return None if values is None or position is None else values[position]


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def diff(before: pd.DataFrame, after: pd.DataFrame, on: str | Sequence[str] | None = None) -> pd.DataFrame:
    """One row per aligned pair of `before` and `after` rows (see the module docstring), in the
    order of `before` then the rows only `after` has. ``attrs["replibatch_diff"]`` holds a summary
    (pairs, changed, only before/after, mean similarity of the changed pairs).

    Raises ConfigurationError (a ValueError) for a non-frame, an `on` column missing from either
    frame, no column to align on, or several rows of one frame sharing the same `on` values.
    """
    for side, frame in (("before", before), ("after", after)):
        if not isinstance(frame, pd.DataFrame):
            raise ConfigurationError(f"diff() needs two DataFrames; {side} is a {type(frame).__name__}")
        if "output" not in frame.columns:
            raise ConfigurationError(f"{side} has no 'output' column: diff() compares result frames")
    columns = _as_list(on)
    if columns is None:
        columns = _default_on(before, after)
    if not columns:
        raise ConfigurationError("no shared parameter column to align on: pass on=[...]")
    for side, frame in (("before", before), ("after", after)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ConfigurationError(f"column {missing[0]!r} is not in {side}")

    left, right = _keys(before, columns, "before"), _keys(after, columns, "after")
    right_at = {key: i for i, key in enumerate(right)}
    pairs: list[tuple[tuple[Any, ...], int | None, int | None]] = [
        (key, i, right_at.get(key)) for i, key in enumerate(left)
    ]
    matched = {j for _, _, j in pairs if j is not None}
    pairs += [(key, None, j) for j, key in enumerate(right) if j not in matched]
    scores = [c for c in score_columns(before) if c in after.columns]
    wanted = ["output", "status", "cost_usd", "latency_s", *scores]
    left_cells, right_cells = _Columns(before, wanted), _Columns(after, wanted)

    records = []
    for key, i, j in pairs:
        out_b, out_a = left_cells.get("output", i), right_cells.get("output", j)
        st_b, st_a = left_cells.get("status", i), right_cells.get("status", j)
        both = i is not None and j is not None
        changed = not both or fingerprint(out_b) != fingerprint(out_a) or st_b != st_a
        record: dict[str, Any] = dict(zip(columns, key, strict=False))
        record.update(
            pair="both" if both else "before only" if j is None else "after only",
            output_before=out_b, output_after=out_a, status_before=st_b, status_after=st_a,
            changed=changed,
            similarity=output_similarity(out_b, out_a) if both else math.nan,
        )
        for name in scores:
            b, a = _number(left_cells.get(name, i)), _number(right_cells.get(name, j))
            record.update({f"{name}_before": b, f"{name}_after": a, f"{name}_delta": a - b})
        for name, label in (("cost_usd", "cost_delta"), ("latency_s", "latency_delta")):
            record[label] = _number(right_cells.get(name, j)) - _number(left_cells.get(name, i))
        records.append(record)
    result = pd.DataFrame.from_records(records)
    for name in ("output_before", "output_after"):
        values = np.empty(len(records), dtype=object)
        values[:] = [r[name] for r in records]  # keep lists and file outputs as they are
        result[name] = values
    result["changed"] = result["changed"].astype(bool)
    changed_similarity = result.loc[result["changed"] & (result["pair"] == "both"), "similarity"]
    result.attrs["replibatch_diff"] = {
        "pairs": int((result["pair"] == "both").sum()),
        "changed": int(result["changed"].sum()),
        "before_only": int((result["pair"] == "before only").sum()),
        "after_only": int((result["pair"] == "after only").sum()),
        "mean_similarity_changed": float(changed_similarity.mean()) if len(changed_similarity) else math.nan,
        "on": columns,
    }
    return result


def differing_rows(res: pd.DataFrame, index: list[str], columns: list[str], values: str) -> np.ndarray:
    """A boolean mask of the rows of `res` whose `index` group does not show one same value of
    `values` in every `columns` group (what ``compare(..., only_different=True)`` keeps).

    A group present in only some of the columns counts as different.
    """
    groups: dict[tuple[Any, ...], dict[tuple[Any, ...], set[str | None]]] = {}
    index_keys = list(zip(*(res[c].tolist() for c in index), strict=True))
    column_keys = list(zip(*(res[c].tolist() for c in columns), strict=True)) if columns else [()] * len(res)
    prints = [fingerprint(v) for v in res[values].tolist()]
    for row_key, col_key, value in zip(index_keys, column_keys, prints, strict=False):
        groups.setdefault(row_key, {}).setdefault(col_key, set()).add(value)
    all_columns = set(column_keys)
    different = {}
    for row_key, cells in groups.items():
        seen = set().union(*cells.values())
        different[row_key] = len(seen) > 1 or set(cells) != all_columns
    return np.array([different[key] for key in index_keys], dtype=bool)

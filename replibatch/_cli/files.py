"""The files ``replibatch run`` reads and writes: CSV, Parquet, JSONL and JSON tables.

Reading keeps cells as written; writing is atomic (`replibatch._store.atomic`) and turns the
lists and dicts of result columns into what each format can hold. Errors are `CliError` lines.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from replibatch._cli.common import CliError, first_line
from replibatch._store.atomic import atomic_write

__all__ = ["checked_target", "output_format", "read_frame", "write_frame"]

_INPUT_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
_OUTPUT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
                   ".ndjson": "jsonl"}


def output_format(path: str | os.PathLike[str]) -> str:
    """``"parquet"``, ``"csv"`` or ``"jsonl"`` from the file name. Raises CliError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in _OUTPUT_FORMATS:
        raise CliError(
            f"--out {os.fspath(path)!r}: cannot tell the format from {suffix or 'no extension'}; "
            "name it .parquet, .csv or .jsonl"
        )
    return _OUTPUT_FORMATS[suffix]


def read_frame(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV, Parquet, JSONL (one object per line) or JSON (a list of objects) file.

    CSV cells are kept as written ("NA", "None" stay text); only empty cells are missing.
    Raises CliError for a missing or unreadable file, an unknown extension, bad content or a
    file with no rows.
    """
    file = Path(path)
    kind = _INPUT_FORMATS.get(file.suffix.lower())
    if kind is None:
        raise CliError(
            f"cannot read {str(file)!r}: unknown extension {file.suffix or '(none)'}; "
            "use a .csv, .parquet, .jsonl or .json file"
        )
    if not file.exists():
        raise CliError(f"no such file: {str(file)!r} (check the path; it is relative to {Path.cwd()})")
    if file.is_dir():
        raise CliError(f"{str(file)!r} is a directory; give a .csv, .parquet or .jsonl file")
    try:
        if kind == "csv":
            df = pd.read_csv(file, keep_default_na=False, na_values=[""], encoding="utf-8")
        elif kind == "parquet":
            df = pd.read_parquet(file)
        else:
            df = _read_json_records(file, lines=kind == "jsonl")
    except CliError:
        raise
    except pd.errors.EmptyDataError:
        raise CliError(f"{str(file)!r} is empty: it needs a header line and at least one row") from None
    except UnicodeDecodeError:
        raise CliError(f"{str(file)!r} is not UTF-8 text; save it as UTF-8 and try again") from None
    except PermissionError:
        raise CliError(f"cannot read {str(file)!r}: permission denied") from None
    except Exception as exc:  # noqa: BLE001 - pandas/pyarrow raise many types for bad files
        raise CliError(f"could not read {str(file)!r} as {kind.upper()}: {first_line(exc)}") from None
    if len(df) == 0:
        raise CliError(f"{str(file)!r} has no rows to run")
    df.columns = [str(c) for c in df.columns]
    return df


def _read_json_records(file: Path, *, lines: bool) -> pd.DataFrame:
    text = file.read_text(encoding="utf-8")
    if lines:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CliError(f"{str(file)!r} line {number} is not JSON: {exc.msg}") from None
            if not isinstance(record, dict):
                raise CliError(f"{str(file)!r} line {number} is not a JSON object ({{...}})")
            records.append(record)
    else:
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CliError(f"{str(file)!r} is not JSON: {exc.msg} (line {exc.lineno})") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise CliError(f"{str(file)!r} must hold a JSON list of objects, one per row")
    return pd.DataFrame.from_records(records)


def write_frame(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a result frame to ``.parquet``, ``.csv`` or ``.jsonl``, atomically (a temp file in
    the same directory renamed into place, so a crash never leaves half a file).

    JSONL keeps lists and dicts (e.g. image outputs, a list of file paths) as JSON values;
    Parquet and CSV cannot hold a column mixing text, lists and dicts, so there every list or
    dict becomes JSON text (strings stay as they are). File outputs are written as plain paths.
    The index is not written. Raises CliError for an unknown extension, OSError when writing fails.
    """
    kind = output_format(path)

    def write(tmp: Path) -> None:
        if kind == "jsonl":
            with open(tmp, "w", encoding="utf-8") as handle:
                for record in _plain_records(df):
                    handle.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
        elif kind == "csv":
            _flat_frame(df).to_csv(tmp, index=False)
        else:
            _flat_frame(df).to_parquet(tmp, index=False)

    return atomic_write(path, write)


def _plain(value: Any) -> Any:
    """A JSON-ready copy: numpy/pandas scalars as Python ones, missing as None, str subclasses
    (file outputs) as plain str, containers recursively."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


def _plain_records(df: pd.DataFrame) -> Iterator[dict[str, Any]]:
    columns = [str(c) for c in df.columns]
    for values in df.itertuples(index=False, name=None):
        yield {name: _plain(value) for name, value in zip(columns, values, strict=True)}


def _flat_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy whose object columns hold only str/None, or one scalar type, for CSV and Parquet."""
    flat = df.reset_index(drop=True).copy()
    flat.columns = [str(c) for c in flat.columns]
    flat.attrs = {}
    for name in flat.columns:
        if flat[name].dtype != object:
            continue
        values = [_plain(v) for v in flat[name]]
        kinds = {type(v) for v in values if v is not None}
        if kinds <= {str} or (len(kinds) == 1 and not kinds & {list, dict}):
            cells = values
        else:
            # Mixed column: text stays text, everything else is written as its JSON text.
            cells = [
                v if v is None or isinstance(v, str) else json.dumps(v, ensure_ascii=False)
                for v in values
            ]
        flat[name] = pd.Series(cells, dtype=object)
    return flat


def checked_target(text: str, option: str) -> Path:
    """`text` as a path the results can be written to: checked before anything is sent, so a
    paid run never ends unable to save. Raises CliError naming the option."""
    path = Path(text)
    if not path.parent.is_dir():
        raise CliError(f"{option} {text!r}: the directory {str(path.parent)!r} does not exist")
    if path.is_dir():
        raise CliError(f"{option} {text!r} is a directory; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise CliError(f"{option} {text!r}: the file exists and is not writable")
    try:
        # What write_frame does: a temporary file in the same directory, renamed into place.
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".replibatch-check-"):
            pass
    except OSError as exc:
        raise CliError(
            f"{option} {text!r}: cannot write in {str(path.parent)!r} ({exc.strerror or exc})"
        ) from None
    return path

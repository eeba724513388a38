"""The ``replibatch`` command line: run a file of prompts, manage the cache, start the simulator.

    replibatch run data/prompts.csv --model replibatch/tiny-llama --param temperature=0.2,0.9 \\
        --offline --out results.parquet --report report.html
    replibatch cache info
    replibatch cache clear --older-than 7d
    replibatch sim --port 8787

Exit codes: 0 success (at least one row succeeded); 1 the run ended but nothing succeeded, or the
service refused the call; 2 a problem with the command (file, column, parameter, missing token);
130 interrupted. Errors are one line on stderr, never a traceback, never the token.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "OFFLINE_SIM_OPTIONS",
    "build_parser",
    "main",
    "output_format",
    "parse_duration",
    "parse_param",
    "parse_value",
    "read_frame",
    "write_frame",
]

# The simulator behind --offline: Replicate's default create rate, and model time at half speed,
# so the sample run takes seconds while latency and cost still differ by prompt and model.
OFFLINE_SIM_OPTIONS: dict[str, Any] = {"create_rate": 600.0, "time_scale": 0.5, "seed": 0}
OFFLINE_TOKEN = "r8_offline_simulator"
TOKEN_ENV = "REPLICATE_API_TOKEN"

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
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


class CliError(Exception):
    """A problem to report as one line and exit with `code` (2: the command, 1: the run)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


# -- pure helpers ------------------------------------------------------------------------------


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
        raise CliError(f"could not read {str(file)!r} as {kind.upper()}: {_first_line(exc)}") from None
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
    from replibatch._view.report import atomic_write

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


def _plain_records(df: pd.DataFrame) -> Any:
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


# -- the parser --------------------------------------------------------------------------------


def _positive(kind: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not value > 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        return value

    return convert


_EPILOG_RUN = """\
examples:
  replibatch run data/prompts.csv --model replibatch/tiny-llama --param temperature=0.2,0.9 \\
      --offline --out results.parquet
  replibatch run prompts.csv --model meta/meta-llama-3-8b-instruct \\
      --model mistralai/mistral-7b-instruct-v0.2 \\
      --param max_tokens=256 --max-cost 0.50 --out results.jsonl --report report.html

Every --model and every --param is an axis of a grid: each input row runs once per combination.
Values are read as numbers or true/false when they look like one, else as text.
Without --offline, set your token first: export REPLICATE_API_TOKEN=r8_...
(https://replicate.com/account/api-tokens).
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``replibatch`` argument parser with its ``run``, ``cache`` and ``sim`` subcommands."""
    from replibatch import __version__
    from replibatch.sim.cli import build_parser as sim_parser

    parser = argparse.ArgumentParser(
        prog="replibatch",
        description="Run tables of prompts against Replicate models: concurrent, rate-limited, "
        "cached, with output, timing and cost columns.",
    )
    parser.add_argument("--version", action="version", version=f"replibatch {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run every row of a CSV/Parquet/JSONL file against one or more models",
        description="Run every row of INPUT against each --model (and each combination of "
        "--param values), then write the rows with output, status, timing and cost columns.",
        epilog=_EPILOG_RUN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("input", metavar="INPUT", help="a .csv, .parquet, .jsonl or .json file of rows")
    run.add_argument("--model", "-m", action="append", metavar="MODEL",
                     help="owner/name, owner/name:VERSION or deployments/owner/name; repeat to "
                     "compare models (default: the input's 'model' column)")
    run.add_argument("--param", "-p", action="append", default=[], metavar="NAME=V1,V2",
                     help="a model input swept over the given values; repeat for more axes")
    run.add_argument("--inputs", metavar="COL,COL",
                     help="columns sent as model inputs (default: every column); --param names "
                     "are always sent")
    run.add_argument("--files", metavar="COL,COL",
                     help="columns whose cells are local file paths, uploaded as files (inputs "
                     "the model's schema calls files are uploaded without this; any other text "
                     "is sent as text)")
    run.add_argument("--repeat", type=_positive(int, "a whole number"), default=1, metavar="N",
                     help="run each combination N times as distinct samples (adds column 'sample')")
    run.add_argument("--out", "-o", metavar="PATH",
                     help="write the results to PATH (.parquet, .csv or .jsonl)")
    run.add_argument("--report", metavar="PATH.html",
                     help="also write a self-contained HTML report (tables, plots, outputs)")
    run.add_argument("--offline", action="store_true",
                     help="run against the built-in simulator (demo models, no token, no cost)")
    run.add_argument("--concurrency", type=_positive(int, "a whole number"), metavar="N",
                     help="most predictions in flight at once (default 128)")
    run.add_argument("--rate-limit", type=_positive(float, "a number"), metavar="PER_MIN",
                     help="create requests per minute, a hard ceiling (default: start at "
                          "Replicate's 600 and follow the account's rate-limit headers)")
    run.add_argument("--max-cost", type=_positive(float, "a number of dollars"), metavar="USD",
                     help="start no new prediction once this budget would be passed")
    run.add_argument("--timeout", type=_positive(float, "a number of seconds"), metavar="SECONDS",
                     help="cancel a prediction that takes longer than this")
    run.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    run.add_argument("--refresh", action="store_true",
                     help="ignore cached results (and store the new ones)")
    run.add_argument("--quiet", "-q", action="store_true",
                     help="no progress bar; print only the summary line")

    cache = commands.add_parser(
        "cache",
        help="show or clear the result cache",
        description="Show or clear the result cache (REPLIBATCH_CACHE_DIR overrides its place).",
    )
    cache_commands = cache.add_subparsers(dest="cache_command", metavar="ACTION")
    cache_commands.add_parser("info", help="where the cache is, what it holds, how big it is")
    clear = cache_commands.add_parser(
        "clear", help="delete cached results (all of them, or those matching the filters)"
    )
    clear.add_argument("--model", metavar="MODEL", help="only results of this model reference")
    clear.add_argument("--older-than", metavar="AGE",
                       help="only results stored longer ago than AGE: 7d, 12h, 30m or seconds")
    clear.add_argument("--yes", "-y", action="store_true",
                       help="do not ask before deleting every result (asked only on a terminal)")

    from replibatch._cli.spend import add_spend_parser

    add_spend_parser(commands)
    from replibatch._cli import train as train_cli

    train_cli.add_parser(commands)

    # The simulator keeps its own options; they are shown here and handed to it unchanged.
    commands.add_parser(
        "sim",
        parents=[sim_parser(prog="replibatch sim")],
        add_help=False,
        help="run the local Replicate-compatible simulator in the foreground",
        description="Run a local Replicate-compatible API with the demo models until Ctrl-C.",
    )
    return parser


# -- commands ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default ``sys.argv[1:]``); return the exit code.

    Never raises for a user error: it prints one line to stderr and returns 2 (or 1 when the run
    or the service failed, 130 on Ctrl-C).
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help, --version, or argparse's own usage error
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "cache":
            return _cache(args, parser)
        if args.command == "spend":
            from replibatch._cli.spend import spend_command
            from replibatch.errors import ConfigurationError

            try:
                return spend_command(args)
            except ConfigurationError as exc:
                raise CliError(str(exc)) from None
        if args.command == "sim":
            from replibatch.sim.cli import main as sim_main

            try:
                return sim_main(args_list[args_list.index("sim") + 1:], prog="replibatch sim")
            except SystemExit as exc:  # its own usage error (e.g. an option out of range)
                return int(exc.code or 0) if not isinstance(exc.code, str) else 2
        if getattr(args, "handler", None) is not None:  # a subcommand module's own handler
            return int(args.handler(args))
        parser.print_help()
        return 2
    except CliError as exc:
        _error(str(exc))
        return exc.code
    except KeyboardInterrupt:
        _error("interrupted: predictions in flight were canceled; finished ones are in the cache")
        return 130


def _error(message: str) -> None:
    print(f"replibatch: error: {message}", file=sys.stderr)


def _say(message: str, quiet: bool = False) -> None:
    if not quiet:
        print(message, flush=True)


def _cache(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from replibatch._store.cache import open_cache
    from replibatch.errors import ConfigurationError

    if args.cache_command is None:
        raise CliError("say what to do with the cache: 'replibatch cache info' or 'replibatch cache clear'")
    try:
        store = open_cache(True)
        assert store is not None
        if args.cache_command == "info":
            info = store.info()
            print(f"cache: {info.directory}")
            print(f"  {info.entries} result{'s' if info.entries != 1 else ''}, {info.pending} pending, "
                  f"{info.files} output file{'s' if info.files != 1 else ''}, "
                  f"{info.bytes / 1e6:.1f} MB on disk")
            for model, count in sorted(info.entries_by_model.items()):
                print(f"  {model or '(unknown model)'}: {count}")
            return 0
        older = parse_duration(args.older_than) if args.older_than is not None else None
        before = store.info()
        if args.model is None and older is None and not args.yes and _interactive():
            # Everything goes, paid results included: ask first (scripts, off a terminal, don't).
            try:
                answer = input(
                    f"delete all {before.entries} cached results and {before.files} output files "
                    f"in {store.directory}? They were paid for. [y/N] "
                )
            except EOFError:
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return 0
        removed = store.clear(model=args.model, older_than=older)
        freed = max(0, before.files - store.info().files)
    except ConfigurationError as exc:
        raise CliError(f"{exc} (set REPLIBATCH_CACHE_DIR to a writable directory)") from None
    what = []
    if args.model:
        what.append(f"of {args.model}")
    if args.older_than:
        what.append(f"older than {args.older_than}")
    print(f"removed {removed} cached result{'s' if removed != 1 else ''}"
          + (f" {' '.join(what)}" if what else "") + f" and {freed} output file"
          + ("s" if freed != 1 else "") + f" no result uses any more, from {store.directory}")
    return 0


def _interactive() -> bool:
    return bool(getattr(sys.stdin, "isatty", lambda: False)())


def _run(args: argparse.Namespace) -> int:
    from replibatch._table.grid import grid
    from replibatch.errors import AuthenticationError, ConfigurationError, ReplicateAPIError

    # Everything that can be checked locally is checked before any request or cache access.
    params = dict(parse_param(text) for text in args.param)
    if len(params) != len(args.param):
        raise CliError("the same --param name is given twice; list all its values in one --param")
    out_path = _checked_target(args.out, "--out") if args.out else None
    if out_path is not None:
        output_format(out_path)
    report_path = _checked_target(args.report, "--report") if args.report else None
    if report_path is not None and report_path.suffix.lower() not in (".html", ".htm"):
        raise CliError(f"--report {args.report!r}: name the report .html")
    models = list(dict.fromkeys(args.model or []))
    for model in models:
        _check_model_ref(model)

    df = read_frame(args.input)
    _check_columns(df, params, models, args.inputs, args.repeat)
    inputs = None
    if args.inputs:
        inputs = [c.strip() for c in args.inputs.split(",") if c.strip()]
        inputs += [name for name in params if name not in inputs]
    files = [c.strip() for c in args.files.split(",") if c.strip()] if args.files else None
    for name in files or ():
        if name not in df.columns and name not in params:
            raise CliError(f"--files names {name!r}, which is not a column of the input")

    axes: dict[str, Any] = {}
    if models:
        axes["model"] = models
    axes.update(params)
    try:
        frame = grid(df, repeat=args.repeat, **axes)
    except ConfigurationError as exc:
        raise CliError(str(exc)) from None
    wanted_models = models or sorted({str(m) for m in df["model"].dropna()})

    if args.offline:
        _check_offline_models(wanted_models)
    elif not os.environ.get(TOKEN_ENV, "").strip():
        raise CliError(
            f"no Replicate API token: set it with 'export {TOKEN_ENV}=r8_...' (create one at "
            "https://replicate.com/account/api-tokens), or add --offline to try the built-in "
            "simulator with its demo models"
        )

    options: dict[str, Any] = {
        "concurrency": args.concurrency,
        "rate_limit": args.rate_limit,
        "max_cost": args.max_cost,
        "timeout": args.timeout,
        "cache": not args.no_cache,
        "refresh": args.refresh,
        "progress": False if args.quiet else None,
        "files": files,
    }
    options = {k: v for k, v in options.items() if v is not None}
    combos = len(frame) // len(df)
    _say(
        f"running {len(frame)} rows ({len(df)} from {args.input}"
        + (f" × {combos} combinations" if combos > 1 else "")
        + ")" + (" on the offline simulator" if args.offline else ""),
        args.quiet,
    )
    try:
        res = _execute(frame, inputs, options, offline=args.offline)
    except AuthenticationError:
        raise CliError(
            f"Replicate did not accept the token in {TOKEN_ENV}: check it at "
            "https://replicate.com/account/api-tokens (or use --offline)",
            code=1,
        ) from None
    except ConfigurationError as exc:
        raise CliError(_cli_words(str(exc))) from None
    except ReplicateAPIError as exc:
        raise CliError(f"Replicate answered with an error: {exc}", code=1) from None

    if out_path is not None:
        try:
            write_frame(res, out_path)
        except OSError as exc:
            raise CliError(f"could not write {str(out_path)!r}: {exc.strerror or exc}", code=1) from None
        _say(f"wrote {len(res)} rows to {out_path}", args.quiet)
    if report_path is not None:
        from replibatch._view.report import write_report

        try:
            write_report(res, report_path, source=str(args.input), parameters=list(params))
        except OSError as exc:
            raise CliError(f"could not write {str(report_path)!r}: {exc.strerror or exc}", code=1) from None
        _say(f"wrote the report to {report_path}", args.quiet)
    _print_summary(res, args.quiet, saved=out_path is not None)
    succeeded = int((res["status"] == "succeeded").sum())
    invalid = int((res.attrs.get("replibatch") or {}).get("invalid") or 0)
    if invalid == len(res):
        _error("every row was refused by the model's input schema, so nothing was sent: fix the "
               "--param values or the input columns (see the errors above)")
        return 2
    if succeeded == 0:
        _error("no row succeeded (see the errors above)")
        return 1
    return 0


def _checked_target(text: str, option: str) -> Path:
    """`text` as a path the results can be written to: checked before anything is sent, so a
    paid run never ends unable to save. Raises CliError naming the option."""
    import tempfile

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


# Python spellings in library messages, as the command line spells them.
_CLI_SPELLINGS = (
    ("cache=False (--no-cache on the command line)", "--no-cache"),
    ("cache=False", "--no-cache"),
    ("files=", "--files"),
    ("model=", "--model "),
)


def _cli_words(message: str) -> str:
    for python, cli in _CLI_SPELLINGS:
        message = message.replace(python, cli)
    return message


def _check_columns(
    df: pd.DataFrame,
    params: dict[str, list[Any]],
    models: list[str],
    inputs: str | None,
    repeat: int,
) -> None:
    columns = ", ".join(df.columns)
    if models and "model" in df.columns:
        raise CliError(
            "the input already has a 'model' column: drop --model to use it, or rename the column"
        )
    if not models and "model" not in df.columns:
        raise CliError("which model? add --model owner/name (or a 'model' column to the input)")
    for name in params:
        if name in df.columns:
            raise CliError(
                f"--param {name} is also a column of the input: drop the --param or rename the column"
            )
    from replibatch._table.frame import ADDED_COLUMNS, MODEL_COLUMN, is_result_frame

    if not is_result_frame(df):
        for name in df.columns:
            if name in ADDED_COLUMNS and name != MODEL_COLUMN:
                raise CliError(
                    f"the input has a column {name!r}, which is also a result column (the run "
                    f"would overwrite it): rename it in the input file"
                )
    if repeat > 1 and "sample" in df.columns:
        raise CliError("--repeat adds a 'sample' column, but the input already has one")
    if inputs is not None:
        wanted = [c.strip() for c in inputs.split(",") if c.strip()]
        if not wanted:
            raise CliError("--inputs is empty: list column names, e.g. --inputs prompt,seed")
        for name in wanted:
            if name not in df.columns and name not in params:
                raise CliError(
                    f"--inputs names {name!r}, which is not a column of the input (columns: {columns})"
                )


def _check_model_ref(text: str) -> None:
    from replibatch._table.refs import parse_model_ref

    try:
        parse_model_ref(text)
    except ValueError as exc:
        raise CliError(f"--model: {_first_line(exc)}") from None


def _check_offline_models(models: list[str]) -> None:
    from replibatch.sim import default_deployments, default_models

    sim_models = default_models()
    hosted = [m.ref for m in sim_models] + [f"deployments/{d.ref}" for d in default_deployments()]
    versions = {m.version_id for m in sim_models if not m.official}
    unknown = [
        m for m in models
        if m.split(":", 1)[0] not in hosted and m.strip().lower() not in versions
    ]
    if unknown:
        raise CliError(
            f"--offline runs the built-in simulator, which has no model {unknown[0]!r}; "
            f"its models are: {', '.join(hosted)}"
        )


def _execute(
    frame: pd.DataFrame, inputs: list[str] | None, options: dict[str, Any], *, offline: bool
) -> pd.DataFrame:
    from replibatch._engine.runner import run

    if not offline:
        return run(frame, inputs=inputs, **options)
    from replibatch.sim import serve

    with serve(**OFFLINE_SIM_OPTIONS) as server:
        return run(frame, inputs=inputs, base_url=server.url, api_token=OFFLINE_TOKEN, **options)


def _print_summary(res: pd.DataFrame, quiet: bool, *, saved: bool) -> None:
    from replibatch._engine.progress import bar_wanted
    from replibatch._table.summary import format_summary, summarize

    summary = res.attrs.get("replibatch") or summarize(res, 0.0)
    # A progress bar already printed the summary under itself (stderr): say it once.
    if not bar_wanted(False if quiet else None):
        print(format_summary(summary), flush=True)
    nothing_succeeded = not (res["status"] == "succeeded").any()
    if quiet and not nothing_succeeded:
        return
    failed = res[res["status"] != "succeeded"]
    if len(failed):
        errors = failed["error"].fillna(failed["status"]).astype(str).value_counts()
        for message, count in errors.head(3).items():
            print(f"  {count} × {message[:200]}")
        if len(errors) > 3:
            print(f"  … and {len(errors) - 3} other errors (see the 'error' column)")
    if not saved and not quiet:
        print("(results not saved: add --out results.parquet to keep them)")

"""``replibatch run``: run every row of a file against one or more models, write the results.

Everything that can be checked locally (parameters, output paths, model references, columns, the
token) is checked before any request or cache access, so a mistake costs nothing.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from replibatch._cli.common import CliError, error, first_line, positive, say
from replibatch._cli.params import parse_param

if TYPE_CHECKING:  # pandas is imported when the command runs, not to print --help
    import pandas as pd

__all__ = ["OFFLINE_SIM_OPTIONS", "OFFLINE_TOKEN", "TOKEN_ENV", "add_parser", "handle"]

# The simulator behind --offline: Replicate's default create rate, and model time at half speed,
# so the sample run takes seconds while latency and cost still differ by prompt and model.
OFFLINE_SIM_OPTIONS: dict[str, Any] = {"create_rate": 600.0, "time_scale": 0.5, "seed": 0}
OFFLINE_TOKEN = "r8_offline_simulator"
TOKEN_ENV = "REPLICATE_API_TOKEN"

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




def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``run`` to the top-level subcommands."""
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
    run.add_argument("--repeat", type=positive(int, "a whole number"), default=1, metavar="N",
                     help="run each combination N times as distinct samples (adds column 'sample')")
    run.add_argument("--out", "-o", metavar="PATH",
                     help="write the results to PATH (.parquet, .csv or .jsonl)")
    run.add_argument("--report", metavar="PATH.html",
                     help="also write a self-contained HTML report (tables, plots, outputs)")
    run.add_argument("--offline", action="store_true",
                     help="run against the built-in simulator (demo models, no token, no cost)")
    run.add_argument("--concurrency", type=positive(int, "a whole number"), metavar="N",
                     help="most predictions in flight at once (default 128)")
    run.add_argument("--rate-limit", type=positive(float, "a number"), metavar="PER_MIN",
                     help="create requests per minute, a hard ceiling (default: start at "
                          "Replicate's 600 and follow the account's rate-limit headers)")
    run.add_argument("--max-cost", type=positive(float, "a number of dollars"), metavar="USD",
                     help="start no new prediction once this budget would be passed")
    run.add_argument("--timeout", type=positive(float, "a number of seconds"), metavar="SECONDS",
                     help="cancel a prediction that takes longer than this")
    run.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    run.add_argument("--refresh", action="store_true",
                     help="ignore cached results (and store the new ones)")
    run.add_argument("--quiet", "-q", action="store_true",
                     help="no progress bar; print only the summary line")
    run.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run the command; return 0 when a row succeeded, 1 when none did, 2 when every row was
    refused by the input schema. Raises CliError for a problem with the command or the service."""
    from replibatch._cli.files import checked_target, output_format, read_frame, write_frame
    from replibatch._table.grid import grid
    from replibatch.errors import AuthenticationError, ConfigurationError, ReplicateAPIError

    # Everything that can be checked locally is checked before any request or cache access.
    params = dict(parse_param(text) for text in args.param)
    if len(params) != len(args.param):
        raise CliError("the same --param name is given twice; list all its values in one --param")
    out_path = checked_target(args.out, "--out") if args.out else None
    if out_path is not None:
        output_format(out_path)
    report_path = checked_target(args.report, "--report") if args.report else None
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
    say(
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
        say(f"wrote {len(res)} rows to {out_path}", args.quiet)
    if report_path is not None:
        from replibatch._view.report import write_report

        try:
            write_report(res, report_path, source=str(args.input), parameters=list(params))
        except OSError as exc:
            raise CliError(f"could not write {str(report_path)!r}: {exc.strerror or exc}", code=1) from None
        say(f"wrote the report to {report_path}", args.quiet)
    _print_summary(res, args.quiet, saved=out_path is not None)
    succeeded = int((res["status"] == "succeeded").sum())
    invalid = int((res.attrs.get("replibatch") or {}).get("invalid") or 0)
    if invalid == len(res):
        error("every row was refused by the model's input schema, so nothing was sent: fix the "
               "--param values or the input columns (see the errors above)")
        return 2
    if succeeded == 0:
        error("no row succeeded (see the errors above)")
        return 1
    return 0


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
        raise CliError(f"--model: {first_line(exc)}") from None


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

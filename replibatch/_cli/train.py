"""``replibatch train``: a sweep of fine-tunes from a table file, one training per row.

    replibatch train sweep.csv --trainer replibatch/tiny-llama \\
        --destination replibatch-sim/sea-llama --param steps=100,300 --param learning_rate=2e-4,1e-3 \\
        --files train_data --offline --out trained.csv

Each row (times each combination of ``--param`` values) is trained with ``rb.train``; the
result rows (``training_id``, ``status``, ``version``, cost...) are printed or written to
``--out``. ``--offline`` trains on the built-in simulator, creating the destination model there
first; its trained versions live as long as the command, so nothing is cached.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_parser", "train_command"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``train`` on the top-level command parser (its handler in ``handler``)."""
    from replibatch._cli.common import positive as _positive

    train = commands.add_parser(
        "train",
        help="run a sweep of fine-tunes: one Replicate training per row of a table file",
        description="Train once per row of INPUT (times each combination of --param values) "
        "and write the rows with training_id, status, version (the trained model, runnable "
        "with 'replibatch run --model'), timing and cost columns.",
    )
    train.add_argument("input", metavar="INPUT", help="a .csv, .parquet, .jsonl or .json file of rows")
    train.add_argument("--trainer", "-t", required=True, metavar="TRAINER",
                       help="the trainer: owner/name (its latest version) or owner/name:VERSION")
    train.add_argument("--destination", "-d", required=True, metavar="MODEL|COLUMN",
                       help="the model owner/name the trained versions go to, or a column naming "
                       "one per row")
    train.add_argument("--param", "-p", action="append", default=[], metavar="NAME=V1,V2",
                       help="a training input swept over the given values; repeat for more axes")
    train.add_argument("--files", metavar="COL,COL",
                       help="columns whose cells are local files (training data), uploaded once")
    train.add_argument("--out", "-o", metavar="PATH",
                       help="write the results to PATH (.parquet, .csv or .jsonl)")
    train.add_argument("--offline", action="store_true",
                       help="train on the built-in simulator (demo trainers, no token, no cost)")
    train.add_argument("--max-cost", type=_positive(float, "a number of dollars"), metavar="USD",
                       help="start no training whose worst case (timeout x price) would pass this")
    train.add_argument("--timeout", type=_positive(float, "a number of seconds"), metavar="SECONDS",
                       help="cancel a training on Replicate once it runs longer than this")
    train.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    train.add_argument("--refresh", action="store_true", help="ignore cached trainings")
    train.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    train.set_defaults(handler=train_command)


def train_command(args: argparse.Namespace) -> int:
    """Run the sweep; 0 when every training succeeded, 1 otherwise. Raises CliError (from
    `replibatch._cli.main`) for a bad file, parameter or option."""
    from replibatch._cli.common import CliError
    from replibatch._cli.files import read_frame, write_frame
    from replibatch._cli.params import parse_param
    from replibatch._engine.train import train
    from replibatch._table.grid import grid
    from replibatch.errors import ConfigurationError, ReplicateAPIError

    frame = read_frame(args.input)
    axes: dict[str, Any] = dict(parse_param(text) for text in args.param)
    try:
        if axes:
            frame = grid(frame, **axes)
        options: dict[str, Any] = {
            "trainer": args.trainer, "destination": args.destination,
            "files": args.files.split(",") if args.files else None,
            "max_cost": args.max_cost, "timeout": args.timeout,
            "cache": not args.no_cache, "refresh": args.refresh,
            "progress": False if args.quiet else None,
        }
        result = _offline(frame, options) if args.offline else train(frame, **options)
    except ConfigurationError as exc:
        raise CliError(str(exc)) from None
    except ReplicateAPIError as exc:
        raise CliError(f"Replicate refused the sweep: {exc}", code=1) from None
    shown = result[[c for c in result.columns if c not in ("queue_s", "latency_s", "cost_basis")]]
    print(shown.to_string(max_colwidth=70))
    if args.out:
        print(f"wrote {write_frame(result, args.out)}", file=sys.stderr)
    return 0 if (result["status"] == "succeeded").all() else 1


def _offline(frame: Any, options: dict[str, Any]) -> Any:
    """Train on a simulator of this process; the destination models are created there."""
    import httpx

    from replibatch._cli.run import OFFLINE_SIM_OPTIONS, OFFLINE_TOKEN
    from replibatch._engine.train import train
    from replibatch.sim import serve

    destination = options["destination"]
    names = set(frame[destination]) if destination in frame.columns else {destination}
    with serve(**OFFLINE_SIM_OPTIONS) as server:
        for name in sorted(str(n) for n in names):
            owner, _, model = name.partition("/")
            httpx.post(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {OFFLINE_TOKEN}"},
                       json={"owner": owner, "name": model, "visibility": "private",
                             "hardware": "cpu"})
        # The simulator's versions end with it: a cached training would name a gone version.
        return train(frame, **{**options, "cache": False}, base_url=server.url,
                     api_token=OFFLINE_TOKEN)

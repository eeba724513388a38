"""``python -m replibatch.sim`` / ``replibatch sim``: run the simulator in the foreground."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "python -m replibatch.sim") -> argparse.ArgumentParser:
    """The argument parser (the lead's CLI can reuse it for ``replibatch sim``)."""
    p = argparse.ArgumentParser(prog=prog, description="Run a local Replicate-compatible API.")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default: an ephemeral one)")
    p.add_argument("--create-rate", type=float, default=600.0,
                   help="create requests per minute; 0 for unlimited (default 600)")
    p.add_argument("--read-rate", type=float, default=3000.0,
                   help="other requests per minute; 0 for unlimited (default 3000)")
    p.add_argument("--create-burst", type=float, default=None,
                   help="create bucket size (default: a minute's worth)")
    p.add_argument("--account", default=None,
                   help="rate-limit preset: default, low-credit, small-burst, unlimited")
    p.add_argument("--no-ratelimit-headers", action="store_true",
                   help="send no ratelimit-* headers")
    p.add_argument("--cancel-after-minimum", type=float, default=5.0,
                   help="shortest Cancel-After honoured, seconds (default 5, as the spec says)")
    p.add_argument("--time-scale", type=float, default=1.0, help="model time multiplier")
    p.add_argument("--predict-time", type=float, default=None, help="fixed seconds per prediction")
    p.add_argument("--queue-delay", type=float, default=0.0, help="seconds spent starting")
    p.add_argument("--retention", type=float, default=3600.0, help="seconds outputs are kept")
    p.add_argument("--error-rate", type=float, default=0.0, help="probability of a 5xx answer")
    p.add_argument("--drop-rate", type=float, default=0.0, help="probability of a dropped request")
    p.add_argument("--drop-after-create-rate", type=float, default=0.0,
                   help="probability a create is recorded but its reply dropped")
    p.add_argument("--error-after-create-rate", type=float, default=0.0,
                   help="probability a create is recorded but answered with a gateway 5xx")
    p.add_argument("--failure-rate", type=float, default=0.0, help="probability a model fails")
    p.add_argument("--seed", type=int, default=None, help="seed for the fault RNG")
    return p


def main(
    argv: Sequence[str] | None = None,
    *,
    stop: threading.Event | None = None,
    prog: str = "python -m replibatch.sim",
) -> int:
    """Serve until Ctrl-C (or until ``stop`` is set); prints the base URL first. Returns 0.

    `prog` is the command name shown in usage and error messages (``replibatch sim`` when the
    ``replibatch`` command delegates here). A bad argument or option value exits with status 2
    (SystemExit, as argparse does) after printing the usage.
    """
    from replibatch.sim import serve

    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        server = serve(
            host=args.host, port=args.port,
            create_rate=args.create_rate or None, read_rate=args.read_rate or None,
            create_burst=args.create_burst, account=args.account,
            ratelimit_headers=not args.no_ratelimit_headers,
            cancel_after_minimum=args.cancel_after_minimum,
            drop_after_create_rate=args.drop_after_create_rate,
            error_after_create_rate=args.error_after_create_rate,
            time_scale=args.time_scale, predict_time=args.predict_time,
            queue_delay=args.queue_delay, retention=args.retention, error_rate=args.error_rate,
            drop_rate=args.drop_rate, failure_rate=args.failure_rate, seed=args.seed,
        )
    except (ValueError, OSError) as exc:  # an option out of range, or the port is taken
        parser.error(str(exc))
    stop = stop or threading.Event()
    try:
        print(f"Replicate simulator listening on {server.url}", flush=True)
        print(f"  export REPLICATE_BASE_URL={server.url} REPLICATE_API_TOKEN=r8_sim", flush=True)
        print("  models: " + ", ".join(server.models), flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr)
    finally:
        server.close()
    return 0

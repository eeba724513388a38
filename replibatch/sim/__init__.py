"""A local Replicate-compatible HTTP server for tests, benchmarks and offline runs.

    with replibatch.sim.serve(time_scale=0.01, seed=1) as server:
        client = replicate.Client(api_token="r8_test", base_url=server.url)
        client.run("replibatch/tiny-llama", input={"prompt": "hi"})
        server.stats.creates        # -> 1

It speaks the Replicate HTTP API on real loopback sockets (predictions by version, official model
or deployment; get, cancel, list; models, versions, deployments; files; hardware; account; SSE
streams), with auth, rate limits, ``Prefer: wait``, expiring outputs, injectable faults and
counters. Demo models: ``replibatch/tiny-llama``, ``replibatch/pixel-diffusion``,
``replibatch/official-chat`` and deployment ``replibatch/tiny-llama-prod``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from replibatch.sim.cog import BasePredictor, FileInput, Input, OutputFile
from replibatch.sim.faults import SimOptions, credit_pairs
from replibatch.sim.models import (
    HARDWARE,
    SimDeployment,
    SimModel,
    default_deployments,
    default_models,
)
from replibatch.sim.ratelimit import ACCOUNTS, account_options
from replibatch.sim.server import SimServer
from replibatch.sim.state import Stats

__all__ = [
    "ACCOUNTS",
    "HARDWARE",
    "BasePredictor",
    "FileInput",
    "Input",
    "OutputFile",
    "SimDeployment",
    "SimModel",
    "SimOptions",
    "SimServer",
    "Stats",
    "default_deployments",
    "default_models",
    "serve",
]


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    models: Iterable[SimModel] | None = None,
    deployments: Iterable[SimDeployment] | None = None,
    api_tokens: Iterable[str] | None = None,
    credit: Mapping[str, float] | None = None,
    separate_accounts: bool = False,
    create_rate: float | None = 600.0,
    create_burst: float | None = None,
    read_rate: float | None = 3000.0,
    read_burst: float | None = None,
    retry_after_header: bool = True,
    retry_after_body: bool = False,
    ratelimit_headers: bool = True,
    account: str | None = None,
    time_scale: float = 1.0,
    predict_time: float | None = None,
    queue_delay: float = 0.0,
    retention: float = 3600.0,
    error_rate: float = 0.0,
    error_statuses: Iterable[int] = (500, 502, 503),
    drop_rate: float = 0.0,
    drop_after_create_rate: float = 0.0,
    error_after_create_rate: float = 0.0,
    error_after_create_statuses: Iterable[int] = (502, 503, 504),
    slow_rate: float = 0.0,
    slow_delay: float = 1.0,
    failure_rate: float = 0.0,
    failure_message: str = SimOptions.failure_message,
    fault_scope: str = "all",
    cancel_after_minimum: float = 5.0,
    official_internal_names: bool = True,
    output_file_bytes: int | None = None,
    output_url_base: str | None = None,
    download_error_rate: float = 0.0,
    download_drop_rate: float = 0.0,
    download_slow_rate: float = 0.0,
    download_slow_delay: float = 0.05,
    page_size: int = 100,
    seed: int | None = None,
) -> SimServer:
    """Start a simulator on a background thread and return it (already serving).

    Use it as a context manager (``with serve() as server:``) or call ``server.close()``.
    Every option but host, port, models and deployments can be changed later with
    ``server.configure(**changes)`` (``account=`` too: an account changing tier mid-run).

    Server:
      host="127.0.0.1", port=0 (0: an ephemeral port; ``server.url`` tells which).
      models=None: the demo models (:func:`default_models`); pass a list to host others.
      deployments=None: the demo deployment (:func:`default_deployments`).
      api_tokens=None: any non-empty Bearer/Token is accepted; a collection restricts it.
      credit=None: prepaid USD per token, e.g. ``{"r8_a": 0.05}``: each finished prediction is
      charged its price-table cost to the token that created it; once spent, that token's
      creates get 402 "Billing required" (the recorded body). Unnamed tokens are unlimited.
      separate_accounts=False: True makes each token its own account, as on the real service
      (the spec's predictions.list: "all predictions created by the user or organization
      associated with the provided API token"): a token lists only its own predictions, and
      reading or canceling another token's prediction answers 404.
      page_size=100: predictions per page of ``GET /v1/predictions`` (newest first, filters
      ``created_after`` / ``created_before``, cursor ``next``; cheap however deep the paging).
      official_internal_names=True: a prediction of an official model created through
      ``/v1/models/{owner}/{name}/predictions`` reports ``model`` as an internal name
      (``replicate-internal/<name>-int8-triton``), as the real service does; GET and list agree.
    Rate limits (token buckets, per real minute; None = unlimited, and no ratelimit headers):
      create_rate=600.0 for the three create-prediction routes; read_rate=3000.0 for the rest.
      create_burst / read_burst=None: bucket size, default a minute's worth (as the real
      service's ``ratelimit-remaining: 599`` after one create shows).
      account=None: a preset for the four fields above, one of :data:`ACCOUNTS`: "default"
      (600/min, 3000/min), "low-credit" (creates 6/min, burst 1), "small-burst" (creates
      6000/min, burst 20), "unlimited". Giving account and a rate field that is not at its
      default raises ValueError.
      ratelimit_headers=True: send ``ratelimit-remaining`` / ``ratelimit-reset``; False sends
      none, not even with a 429.
      retry_after_header=True: send ``Retry-After`` with a 429.
      retry_after_body=False: add a ``retry_after`` field to the 429 body.
      A 429 body always says "Request was throttled. Your rate limit resets in ~Ns." with N the
      whole seconds until the bucket holds a token again. configure() changing a limit keeps
      the tokens earned (capped to the new burst).
    Time (model time; real seconds = model seconds x time_scale):
      time_scale=1.0: 0.01 runs a 2 s prediction in 20 ms. Metrics report real seconds, the
      model's scheduled time (a late wake-up of a busy simulator is not billed).
      predict_time=None: fixed predict seconds per prediction instead of the model's own.
      queue_delay=0.0: seconds spent ``starting`` (queue / cold boot) before ``processing``.
      retention=3600.0: seconds after completion until input, output and output files are
      deleted (``data_removed: true``; file URLs answer 404).
    Faults (decided by an RNG seeded with ``seed``; rates are probabilities per request):
      error_rate=0.0: answer with one of error_statuses=(500, 502, 503) (502 has an HTML body).
      drop_rate=0.0: close the connection without answering, before doing anything.
      drop_after_create_rate=0.0: record the prediction, then close without answering.
      error_after_create_rate=0.0: record the prediction, then answer a gateway error, one of
      error_after_create_statuses=(502, 503, 504) (HTML from "cloudflare"; 500 is JSON).
      slow_rate=0.0 / slow_delay=1.0: add slow_delay real seconds before answering.
      failure_rate=0.0 / failure_message: the prediction ends ``failed`` with that error.
      fault_scope="all": which requests the HTTP faults hit: "all", "create" or "read".
      seed=None: RNG seed for faults (None: unpredictable).
    Output files (served under ``/delivery/``, no token needed, like replicate.delivery):
      output_file_bytes=None: publish every file output padded with zeros to this many bytes
      (streamed, never held in memory) to test byte caps and deadlines.
      output_url_base=None: ``scheme://host[:port]`` to put in output URLs instead of the
      server's own (e.g. ``http://localhost:<port>``: another origin for the same server).
      download_error_rate=0.0: a download answers 502/503 (HTML).
      download_drop_rate=0.0: a download sends the headers and half the body, then closes.
      download_slow_rate=0.0 / download_slow_delay=0.05: real seconds slept before each
      64 KiB chunk of a download.
    Cancel-After (request header on the three create routes):
      Parsed per the spec: ``30``, ``30s``, ``5m``, ``2h30m``, ``1h30m45s``; fractions and
      ``ms`` accepted (``0.5s``, ``500ms``); anything else is a 400 and nothing is created.
      Measured in REAL seconds from creation, not scaled by time_scale (like ``metrics`` and
      ``Prefer: wait``, it is time the client sees). cancel_after_minimum=5.0: the spec's
      minimum; a shorter value is raised to it rather than refused (the simulator's judgement
      of the real service: the create succeeds and the deadline is the minimum); set 0 for
      short test deadlines. When the
      deadline passes before the prediction started (queue_delay) it ends ``aborted`` with no
      ``started_at`` and no ``predict_time`` (not billed); while processing it ends
      ``canceled`` with ``predict_time`` up to the deadline.
    Stats: ``server.stats`` counts creates, duplicate_creates, throttled (429s),
    throttled_creates, cancels, aborted, in_flight, requests per route, list_pages, downloads,
    errors_after_create and faults by kind; safe to read from any thread.

    Raises ValueError for an out-of-range option (``port`` outside 0–65535 included), TypeError
    for an unsupported model, OSError when the port cannot be bound.
    """
    # Checked here: the socket layer would raise OverflowError, which is not the documented error.
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be 0–65535, got {port!r}")
    rates: dict[str, float | None] = {"create_rate": create_rate, "create_burst": create_burst,
                                      "read_rate": read_rate, "read_burst": read_burst}
    if account is not None:
        preset = account_options(account)
        defaults = account_options("default")
        clashing = sorted(k for k, v in rates.items() if v != defaults[k])
        if clashing:
            raise ValueError(f"account={account!r} sets the rate limits; do not also give "
                             f"{', '.join(clashing)}")
        rates = preset
    options = SimOptions(
        api_tokens=frozenset(api_tokens) if api_tokens is not None else None,
        credit=credit_pairs(credit) if credit is not None else None,
        separate_accounts=separate_accounts,
        create_rate=rates["create_rate"],
        create_burst=rates["create_burst"],
        read_rate=rates["read_rate"],
        read_burst=rates["read_burst"],
        retry_after_header=retry_after_header,
        retry_after_body=retry_after_body,
        ratelimit_headers=ratelimit_headers,
        time_scale=time_scale,
        predict_time=predict_time,
        queue_delay=queue_delay,
        retention=retention,
        error_rate=error_rate,
        error_statuses=tuple(error_statuses),
        drop_rate=drop_rate,
        drop_after_create_rate=drop_after_create_rate,
        error_after_create_rate=error_after_create_rate,
        error_after_create_statuses=tuple(error_after_create_statuses),
        slow_rate=slow_rate,
        slow_delay=slow_delay,
        failure_rate=failure_rate,
        failure_message=failure_message,
        fault_scope=fault_scope,  # type: ignore[arg-type]
        cancel_after_minimum=cancel_after_minimum,
        official_internal_names=official_internal_names,
        output_file_bytes=output_file_bytes,
        output_url_base=output_url_base,
        download_error_rate=download_error_rate,
        download_drop_rate=download_drop_rate,
        download_slow_rate=download_slow_rate,
        download_slow_delay=download_slow_delay,
        page_size=page_size,
        seed=seed,
    ).checked()
    return SimServer(
        options,
        list(models) if models is not None else default_models(),
        list(deployments) if deployments is not None else default_deployments(),
        host=host,
        port=port,
    )

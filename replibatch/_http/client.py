"""Our own httpx clients and the sending of one API request.

Two clients per run (httpx async clients are bound to the event loop that uses them, and a run
owns its loop): one for the API, carrying ``Authorization: Bearer``, the base URL and our user
agent, redirects not followed; one for output files, carrying no token at all. Both verify TLS
against certifi's CA bundle, loaded once per process.
"""

from __future__ import annotations

import functools
import json
import platform
import ssl
from collections.abc import Mapping
from typing import Any

import certifi
import httpx

from replibatch._http.auth import Connection
from replibatch._http.errors import from_exchange, from_response, refused_request, unsendable_body
from replibatch._http.reply import ApiReply
from replibatch.errors import ConfigurationError

__all__ = [
    "CONNECT_TIMEOUT_S",
    "api_client",
    "download_client",
    "encode_json",
    "send",
    "timeout_of",
    "user_agent",
]

CONNECT_TIMEOUT_S = 10.0
DOWNLOAD_READ_TIMEOUT_S = 60.0
# Measured on the simulator (bench/throughput.py): keeping more than ~64 idle connections made
# held requests come back seconds late; 64 keeps full speed.
MAX_KEEPALIVE = 64


def user_agent() -> str:
    """``replibatch/<version> httpx/<version> python/<version>``."""
    from replibatch import __version__  # at call time: the package has finished importing

    return f"replibatch/{__version__} httpx/{httpx.__version__} python/{platform.python_version()}"


@functools.lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """One TLS context per process: loading the CA bundle takes ~0.3 s, too long to pay on the
    first download of every run (outputs expire; the run may be racing that)."""
    return ssl.create_default_context(cafile=certifi.where())


def timeout_of(seconds: float | None) -> httpx.Timeout:
    """A request's timeouts: ``seconds`` for reads and writes (None: unbounded), a bounded
    connect, and no bound on waiting for a pooled connection (the engine bounds concurrency)."""
    return httpx.Timeout(seconds, connect=CONNECT_TIMEOUT_S, pool=None)


def api_client(
    connection: Connection, *, max_connections: int, request_timeout: float
) -> httpx.AsyncClient:
    """The client for API requests (``connection`` resolved: ``base_url`` set).

    The transport makes no retries of its own (the engine retries, paced by its limiters).
    Redirects are not followed, so the token never leaves the API's origin.
    """
    headers = {"User-Agent": user_agent()}
    if connection.api_token:
        headers["Authorization"] = f"Bearer {connection.api_token}"
    transport = connection.transport or httpx.AsyncHTTPTransport(
        verify=tls_context(),
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=min(max_connections, MAX_KEEPALIVE),
        ),
        retries=0,
    )
    return httpx.AsyncClient(
        base_url=connection.base_url or "",
        headers=headers,
        timeout=timeout_of(request_timeout),
        transport=transport,
        follow_redirects=False,
    )


def download_client(transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
    """The client for output files: no token, redirects followed (delivery hosts redirect).

    The read timeout guards a stalled connection; the whole-download deadline is
    ``replibatch._engine.download.stream_to_file``'s.
    """
    extra: dict[str, Any] = {"transport": transport} if transport else {"verify": tls_context()}
    return httpx.AsyncClient(
        timeout=httpx.Timeout(DOWNLOAD_READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
        follow_redirects=True,
        headers={"User-Agent": user_agent()},
        **extra,
    )


def encode_json(body: Any) -> bytes:
    """``body`` as compact UTF-8 JSON.

    Raises ConfigurationError (nothing is sent) for what JSON cannot carry: NaN or infinity,
    an object that is not JSON, a lone surrogate in a string.
    """
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise unsendable_body(exc) from None


def same_origin(url: httpx.URL, base: httpx.URL) -> bool:
    """Whether ``url`` is on the API's origin (scheme, host and port; default ports as None)."""
    return (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)


async def send(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    creates: bool,
    json_body: Any = None,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: httpx.Timeout | None = None,
    files: Mapping[str, Any] | None = None,
) -> ApiReply:
    """Send one request to the API; return the decoded reply or raise our error for it.

    ``path`` is relative to the base URL, or an absolute URL on the API's own origin.
    Raises ConfigurationError when the request cannot be built or ``path`` points elsewhere
    (the token is sent to the API's origin only), and the errors of
    ``replibatch._http.errors`` for what the exchange gave.
    """
    try:
        url = httpx.URL(path)
    except httpx.InvalidURL as exc:
        raise refused_request(exc) from None
    if url.is_absolute_url and not same_origin(url, http.base_url):
        raise ConfigurationError(
            f"refusing to send the API token to {url.scheme}://{url.host}: not the API's origin"
        )
    request_headers = dict(headers or {})
    content = None
    if json_body is not None:
        content = encode_json(json_body)
        request_headers["Content-Type"] = "application/json"
    try:
        request = http.build_request(
            method,
            path,
            content=content,
            params=params,
            headers=request_headers,
            files=files,
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise refused_request(exc) from None
    try:
        response = await http.send(request)
    except httpx.HTTPError as exc:
        raise from_exchange(exc, creates=creates) from None
    return from_response(response, creates=creates)

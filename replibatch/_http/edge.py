"""The one boundary between replibatch and the Replicate HTTP API.

HTTP to Replicate goes through the official ``replicate`` client: its httpx client carries the
auth header, base URL (``REPLICATE_BASE_URL`` honoured) and user agent. We call that httpx client
directly rather than the SDK's model classes because those drop what we need: response headers
(``Retry-After``, ``ratelimit-remaining``), the ``retry_after`` body field, and statuses such as
``aborted`` that its pydantic models reject. Every foreign error (httpx transport errors, HTTP
statuses, bodies that are not JSON) is translated into ``replibatch.errors`` here and nowhere else.

Retrying is the runner's job; this module only says what happened. One distinction matters: a
create whose request may have reached the server (the connection dropped after sending, a 5xx
from a gateway) raises ``OutcomeUnknownError`` because a retry could pay for a duplicate.
"""

from __future__ import annotations

import functools
import io
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import certifi
import httpx
import replicate

from replibatch._engine.download import Downloaded, DownloadLimits, check_output_url, stream_to_file
from replibatch._engine.limiter import retry_after_seconds
from replibatch._engine.shared_limits import account_fingerprint
from replibatch.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidInputError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    ReplicateAPIError,
    TransientError,
)

__all__ = ["ApiReply", "Edge", "resolve_token"]

# Errors raised before a byte of the request left: retrying these can never duplicate anything.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


_MAX_KEEPALIVE = 64


@dataclass
class ApiReply:
    """A decoded JSON reply with the headers the limiter reads."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


def resolve_token(api_token: str | None, client: replicate.Client | None) -> str | None:
    """The token to use: the argument, else the given client's, else ``REPLICATE_API_TOKEN``."""
    if api_token:
        return api_token
    if client is not None and getattr(client, "_api_token", None):
        return client._api_token  # noqa: SLF001 - the SDK has no public accessor
    return os.environ.get("REPLICATE_API_TOKEN") or None


def _problem_detail(body: Any, text: str) -> str:
    if isinstance(body, dict):
        for key in ("detail", "title", "error"):
            if body.get(key):
                return " ".join(str(body[key]).split())
    snippet = " ".join(text.split())[:200]
    return snippet or "no detail"


@functools.lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    """One TLS context per process: loading the CA bundle takes ~0.3 s, too long to pay on the
    first download of every run (outputs expire; the run may be racing that)."""
    return ssl.create_default_context(cafile=certifi.where())


def cancel_after_header(seconds: float) -> str:
    """A ``Cancel-After`` value in the spec's duration form: ``90s``, ``1.5s`` (ms precision)."""
    text = f"{max(0.0, seconds):.3f}".rstrip("0").rstrip(".")
    return f"{text or '0'}s"


class Edge:
    """Async access to the Replicate API for one run (one event loop).

    ``client`` is an official ``replicate.Client`` whose settings (token, base URL, transport) are
    reused; a fresh SDK client is built per run because httpx async clients are bound to the loop
    that created them. Raises ConfigurationError when a request is needed and no token is known.
    """

    def __init__(
        self,
        *,
        api_token: str | None = None,
        base_url: str | None = None,
        client: replicate.Client | None = None,
        max_connections: int = 100,
        request_timeout: float = 30.0,
    ) -> None:
        self._token = resolve_token(api_token, client)
        kwargs: dict[str, Any] = {}
        if client is not None:
            kwargs.update(getattr(client, "_client_kwargs", {}) or {})
            base_url = base_url or getattr(client, "_base_url", None)
        # A transport the caller chose (a proxy, a mock) also carries output downloads.
        self._user_transport = kwargs.get("transport")
        if "transport" not in kwargs:
            # Measured on the simulator (bench/throughput.py): keeping more than ~64 idle
            # connections made held requests come back seconds late; 64 keeps full speed.
            limits = httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=min(max_connections, _MAX_KEEPALIVE),
            )
            kwargs["transport"] = httpx.AsyncHTTPTransport(limits=limits, retries=0)
        self._base_url = base_url or os.environ.get("REPLICATE_BASE_URL") or None
        self._request_timeout = request_timeout
        self._sdk = replicate.Client(
            api_token=self._token,
            base_url=self._base_url,
            timeout=httpx.Timeout(request_timeout, connect=10.0, pool=None),
            **kwargs,
        )
        # The SDK's transport retries GETs on 429/503/504 by itself, up to 10 times over ~50 s,
        # unpaced by our limiters; the runner retries instead, so let each request go once.
        sdk_transport = getattr(self._sdk._async_client, "_transport", None)  # noqa: SLF001
        if hasattr(sdk_transport, "max_attempts"):
            sdk_transport.max_attempts = 1
        self._downloads: httpx.AsyncClient | None = None
        self._download_client()  # built now, not while an expiring output waits for it

    def __repr__(self) -> str:
        return f"Edge(base_url={self._base_url or 'https://api.replicate.com'!r})"

    @property
    def account(self) -> str:
        """A fingerprint of the token and server (never the token): names the account whose
        limits processes share (``shared_limits``)."""
        return account_fingerprint(self._token, self._base_url)

    @property
    def has_token(self) -> bool:
        return bool(self._token)

    def require_token(self) -> None:
        """Raise ConfigurationError unless a token is known."""
        if not self._token:
            raise ConfigurationError(
                "No Replicate API token: set REPLICATE_API_TOKEN, pass api_token=..., "
                "or run offline against the built-in simulator (replibatch.sim)."
            )

    async def aclose(self) -> None:
        http = self._sdk._async_client  # noqa: SLF001
        await http.aclose()
        if self._downloads is not None:
            await self._downloads.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        creates: bool = False,
    ) -> ApiReply:
        """Send one request; return the decoded reply or raise a ``ReplicateAPIError``.

        ``creates`` marks a request that creates something billable: failures after the request
        may have been sent raise OutcomeUnknownError instead of TransientError.
        """
        self.require_token()
        http = self._sdk._async_client  # noqa: SLF001
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = httpx.Timeout(timeout, connect=10.0, pool=None)
        try:
            response = await http.request(
                method, path, json=json, params=params, headers=headers, **extra
            )
        except _NOT_SENT as exc:
            raise TransientError(f"could not connect: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            kind = OutcomeUnknownError if creates else TransientError
            raise kind(f"connection lost: {type(exc).__name__}") from None
        return self._decode(response, creates=creates)

    def _decode(self, response: httpx.Response, *, creates: bool) -> ApiReply:
        status = response.status_code
        try:
            body = response.json() if response.content else None
            parsed = True
        except ValueError:
            body, parsed = None, False
        if status < 400 and parsed:
            return ApiReply(status, body, response.headers)
        detail = _problem_detail(body, response.text if not parsed else "")
        if status < 400:
            raise TransientError(f"reply was not JSON (HTTP {status})", status=status)
        if status == 401:
            raise AuthenticationError(
                "the API token was not accepted (check REPLICATE_API_TOKEN)", status=status
            )
        if status == 404:
            raise NotFoundError(detail, status=status)
        if status == 429:
            raise RateLimitedError(
                detail, status=status, retry_after=retry_after_seconds(response.headers, body)
            )
        if status >= 500 or not parsed:
            kind = OutcomeUnknownError if creates and status >= 500 else TransientError
            raise kind(detail, status=status)
        if status == 422:
            raise InvalidInputError(detail, status=status)
        raise ReplicateAPIError(detail, status=status)

    # -- operations -------------------------------------------------------------------------

    async def get_model(self, owner: str, name: str) -> dict:
        return (await self.request("GET", f"/v1/models/{owner}/{name}")).body

    async def get_deployment(self, owner: str, name: str) -> dict:
        return (await self.request("GET", f"/v1/deployments/{owner}/{name}")).body

    async def create_prediction(
        self,
        target: tuple[str, str],
        input: dict,
        *,
        wait: int | None,
        cancel_after: float | None = None,
    ) -> ApiReply:
        """Create a prediction. ``target`` is ("version", id), ("model", "o/n") or ("deployment", "o/n").

        With ``wait`` (1..60) the server holds the reply until the prediction finishes or the
        time passes (``Prefer: wait=N``). With ``cancel_after`` (seconds) Replicate itself
        cancels the prediction that long after its creation (``Cancel-After``, the spec's
        ``parameters_cancel_after_header``: a duration such as ``90s``; its minimum is 5 s),
        so it stops billing even if this process dies.
        """
        kind, ident = target
        if kind == "version":
            path, body = "/v1/predictions", {"version": ident, "input": input}
        elif kind == "model":
            path, body = f"/v1/models/{ident}/predictions", {"input": input}
        elif kind == "deployment":
            path, body = f"/v1/deployments/{ident}/predictions", {"input": input}
        else:  # pragma: no cover - programming error
            raise ValueError(f"unknown target kind {kind!r}")
        headers: dict[str, str] = {}
        if wait:
            if not 1 <= wait <= 60 or int(wait) != wait:
                raise ValueError(f"wait must be a whole number of seconds in 1..60, got {wait!r}")
            headers["Prefer"] = f"wait={int(wait)}"
        if cancel_after is not None:
            headers["Cancel-After"] = cancel_after_header(cancel_after)
        timeout = (wait + self._request_timeout) if wait else None
        return await self.request(
            "POST", path, json=body, headers=headers or None, timeout=timeout, creates=True
        )

    async def get_prediction(self, prediction_id: str) -> ApiReply:
        return await self.request("GET", f"/v1/predictions/{prediction_id}")

    async def cancel_prediction(self, prediction_id: str) -> ApiReply:
        return await self.request("POST", f"/v1/predictions/{prediction_id}/cancel")

    async def list_predictions(
        self,
        *,
        created_after: str | None = None,
        created_before: str | None = None,
        cursor_url: str | None = None,
    ) -> ApiReply:
        """One page of the account's predictions, newest first (the spec's ``created_after``
        is "at or after", ``created_before`` strictly before). A ``cursor_url`` (a page's
        ``next``) already carries the filters."""
        if cursor_url:
            parts = urlsplit(cursor_url)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            return await self.request("GET", path)
        params = {
            name: value
            for name, value in (("created_after", created_after), ("created_before", created_before))
            if value
        }
        return await self.request("GET", "/v1/predictions", params=params or None)

    async def upload_file(self, data: bytes, *, filename: str, content_type: str) -> str:
        """Upload bytes through the files API; return the URL to pass as input."""
        self.require_token()
        try:
            created = await self._sdk.files.async_create(
                io.BytesIO(data), filename=filename, content_type=content_type
            )
        except replicate.exceptions.ReplicateError as exc:
            status = exc.status or 0
            kind = TransientError if status >= 500 else ReplicateAPIError
            raise kind(exc.detail or exc.title or "file upload failed", status=status) from None
        except httpx.TransportError as exc:
            raise TransientError(f"file upload failed: {type(exc).__name__}") from None
        return created.urls["get"]

    @property
    def api_base_url(self) -> str:
        return str(self._sdk._async_client.base_url)

    def _download_client(self) -> httpx.AsyncClient:
        if self._downloads is None:
            extra: dict[str, Any] = (
                {"transport": self._user_transport} if self._user_transport else {"verify": _tls()}
            )
            # No auth: the token is never sent with a file (see replibatch._engine.download). The read
            # timeout guards a stalled connection; the total deadline is stream_to_file's.
            self._downloads = httpx.AsyncClient(
                timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True, **extra
            )
        return self._downloads

    async def download(
        self, url: str, directory: Path, limits: DownloadLimits | None = None
    ) -> Downloaded:
        """Fetch an output file into a temporary file in `directory` (see `replibatch._engine.download`).

        Never sends the API token; refuses URLs that point at the API. Raises DownloadError for
        a refused URL, a file over the byte cap, a download past its deadline or a 4xx, and
        TransientError for a 5xx or a dropped connection.
        """
        check_output_url(url, self.api_base_url)
        return await stream_to_file(self._download_client(), url, directory, limits or DownloadLimits())

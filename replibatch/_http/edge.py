"""The one boundary between replibatch and the Replicate HTTP API: its operations.

HTTP goes through our own httpx clients (``replibatch._http.client``): the token and base URL
come from ``replibatch._http.auth``, every foreign failure becomes one of ``replibatch.errors``
in ``replibatch._http.errors``. We read raw JSON and headers because the engine needs what an
SDK's models drop: ``Retry-After``, ``ratelimit-remaining``, the ``retry_after`` body field,
statuses such as ``aborted``.

Retrying is the runner's job; this module only says what happened. One distinction matters: a
create whose request may have reached the server (the connection dropped after sending, a 5xx
from a gateway, a reply that cannot be read) raises ``OutcomeUnknownError`` because a retry
could pay for a duplicate.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from replibatch._engine.download import Downloaded, DownloadLimits, check_output_url, stream_to_file
from replibatch._engine.shared_limits import account_fingerprint
from replibatch._http.auth import Connection, resolve_connection, resolve_token
from replibatch._http.client import api_client, download_client, send, timeout_of
from replibatch._http.reply import ApiReply
from replibatch.errors import ConfigurationError, OutcomeUnknownError, ReplicateAPIError

__all__ = ["ApiReply", "Connection", "Edge", "Endpoint", "cancel_after_header", "resolve_token"]

MAX_WAIT_S = 60  # the spec's parameters_prefer_header: "wait=n where n is ... between 1 and 60"


def cancel_after_header(seconds: float) -> str:
    """A ``Cancel-After`` value in the spec's duration form: ``90s``, ``1.5s`` (ms precision)."""
    text = f"{max(0.0, seconds):.3f}".rstrip("0").rstrip(".")
    return f"{text or '0'}s"


class Endpoint(Protocol):
    """Where predictions are created: what the engine's `Target` is to this boundary."""

    @property
    def kind(self) -> str:
        """``"version"``, ``"model"`` or ``"deployment"``."""
        ...

    @property
    def ident(self) -> str:
        """The version id, or ``owner/name`` of the model or deployment."""
        ...


def _prediction_path(
    target: Endpoint | tuple[str, str], input: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The create endpoint and body for a target of kind "version" (id), "model" ("o/n") or
    "deployment" ("o/n"), given whole or as a ``(kind, ident)`` pair.

    Raises ValueError for another kind (a programming error).
    """
    kind, ident = target if isinstance(target, tuple) else (target.kind, target.ident)
    if kind == "version":
        return "/v1/predictions", {"version": ident, "input": input}
    if kind == "model":
        return f"/v1/models/{ident}/predictions", {"input": input}
    if kind == "deployment":
        return f"/v1/deployments/{ident}/predictions", {"input": input}
    raise ValueError(f"unknown target kind {kind!r}")


class Edge:
    """Async access to the Replicate API for one run (one event loop).

    ``api_token`` / ``base_url`` / ``client`` say which account and server (see
    ``replibatch._http.auth``: ``client`` is an official client or a `Connection`);
    ``transport`` (tests) replaces the network for API requests and downloads alike. Raises
    ConfigurationError at once for an unusable client, base URL or token, and when a request
    is needed and no token is known.
    """

    def __init__(
        self,
        *,
        api_token: str | None = None,
        base_url: str | None = None,
        client: Any = None,
        max_connections: int = 100,
        request_timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        connection = resolve_connection(api_token, base_url, client, transport)
        self._token = connection.api_token
        self._base_url: str = connection.base_url or ""
        self._request_timeout = request_timeout
        self._http = api_client(
            connection, max_connections=max_connections, request_timeout=request_timeout
        )
        # A transport the caller chose (a mock, a recorder) also carries output downloads.
        # Built now, not while an expiring output waits for it.
        self._downloads = download_client(connection.transport)

    def __repr__(self) -> str:
        return f"Edge(base_url={self._base_url!r})"

    @property
    def account(self) -> str:
        """A fingerprint of the token and server (never the token): names the account whose
        limits processes share (``shared_limits``)."""
        return account_fingerprint(self._token, self._base_url)

    @property
    def has_token(self) -> bool:
        return bool(self._token)

    @property
    def api_base_url(self) -> str:
        return self._base_url

    def require_token(self) -> None:
        """Raise ConfigurationError unless a token is known."""
        if not self._token:
            raise ConfigurationError(
                "No Replicate API token: set REPLICATE_API_TOKEN, pass api_token=..., "
                "or run offline against the built-in simulator (replibatch.sim)."
            )

    async def aclose(self) -> None:
        await self._http.aclose()
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

        ``path`` is relative to the base URL (``/v1/...``) or an absolute URL on the API's own
        origin (a record's ``urls.get``). ``creates`` marks a request that creates something
        billable: failures after the request may have been sent raise OutcomeUnknownError
        instead of TransientError. Raises ConfigurationError without sending when no token is
        known, the body is not JSON, or ``path`` points at another origin.
        """
        self.require_token()
        return await send(
            self._http,
            method,
            path,
            creates=creates,
            json_body=json,
            params=params,
            headers=headers,
            timeout=None if timeout is None else timeout_of(timeout),
        )

    # -- operations -------------------------------------------------------------------------

    async def get_model(self, owner: str, name: str) -> Any:
        return (await self.request("GET", f"/v1/models/{owner}/{name}")).body

    async def get_deployment(self, owner: str, name: str) -> Any:
        return (await self.request("GET", f"/v1/deployments/{owner}/{name}")).body

    async def create_prediction(
        self,
        target: Endpoint | tuple[str, str],
        input: dict[str, Any],
        *,
        wait: int | None,
        cancel_after: float | None = None,
    ) -> ApiReply:
        """Create a prediction at `target`: the engine's resolved `Target` passed whole (an
        `Endpoint`), or a ``("version", id)`` / ``("model", "o/n")`` / ``("deployment", "o/n")``
        pair.

        With ``wait`` (1..60) the server holds the reply until the prediction finishes or the
        time passes (``Prefer: wait=N``). With ``cancel_after`` (seconds) Replicate itself
        cancels the prediction that long after its creation (``Cancel-After``, the spec's
        ``parameters_cancel_after_header``: a duration such as ``90s``; its minimum is 5 s),
        so it stops billing even if this process dies. Raises ValueError for a bad ``wait``;
        OutcomeUnknownError when a reply came but holds no prediction id (it may exist).
        """
        path, body = _prediction_path(target, input)
        headers: dict[str, str] = {}
        if wait:
            if not 1 <= wait <= MAX_WAIT_S or int(wait) != wait:
                raise ValueError(f"wait must be a whole number of seconds in 1..60, got {wait!r}")
            headers["Prefer"] = f"wait={int(wait)}"
        if cancel_after is not None:
            headers["Cancel-After"] = cancel_after_header(cancel_after)
        timeout = (wait + self._request_timeout) if wait else None
        reply = await self.request(
            "POST", path, json=body, headers=headers or None, timeout=timeout, creates=True
        )
        if not isinstance(reply.body, dict) or not isinstance(reply.body.get("id"), str):
            # A success status without a prediction: it may have been created all the same.
            raise OutcomeUnknownError(
                f"the create's reply (HTTP {reply.status}) holds no prediction id", status=reply.status
            )
        return reply

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
        ``next``) already carries the filters; only its path and query are used, so the token
        goes to the API's origin whatever host the page names."""
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
        """Upload bytes through the files API (``POST /v1/files``, multipart field ``content``,
        as recorded in cassettes/file-operations.yaml); return the URL to pass as input.

        Raises the errors of ``replibatch._http.errors`` (an upload is not billable: a dropped
        connection is a TransientError) and ReplicateAPIError when the reply names no URL.
        """
        self.require_token()
        reply = await send(
            self._http,
            "POST",
            "/v1/files",
            creates=False,
            files={"content": (filename, data, content_type)},
            # The body may be large: no bound on writing it or on the server's reply to it.
            timeout=timeout_of(None),
        )
        urls = reply.body.get("urls") if isinstance(reply.body, dict) else None
        url = urls.get("get") if isinstance(urls, dict) else None
        if not isinstance(url, str):
            raise ReplicateAPIError("file upload reply named no urls.get", status=reply.status)
        return url

    async def download(
        self, url: str, directory: Path, limits: DownloadLimits | None = None
    ) -> Downloaded:
        """Fetch an output file into a temporary file in `directory` (see
        `replibatch._engine.download`).

        Never sends the API token; refuses URLs that point at the API. Raises DownloadError for
        a refused URL, a file over the byte cap, a download past its deadline or a 4xx, and
        TransientError for a 5xx or a dropped connection.
        """
        check_output_url(url, self.api_base_url)
        return await stream_to_file(self._downloads, url, directory, limits or DownloadLimits())

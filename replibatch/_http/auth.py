"""Which server to talk to, as whom: the token and base URL a run uses, and where they come from.

Resolution, first given wins (the official client's own order, `REPLICATE_API_TOKEN` and
`REPLICATE_BASE_URL` honoured as it does):

- token: ``api_token=``, else the ``client=``'s token, else ``REPLICATE_API_TOKEN``;
- base URL: ``base_url=``, else the ``client=``'s, else ``REPLICATE_BASE_URL``, else
  https://api.replicate.com.

``client=`` may be an official client or a `Connection`. An official client is recognised by the
module its class comes from, so ``replicate`` is never imported here (``import replibatch``
stays free of it). Only its token and base URL are taken; its transport, timeouts, headers and
retries are not (replibatch does its own retries, paced by its limiters):

- 2.x ``replicate.Replicate`` / ``AsyncReplicate``: the public ``bearer_token`` and ``base_url``.
- 1.x ``replicate.Client`` has no public accessor for either: the two values given to its
  constructor are read back (``_api_token``, ``_base_url``), read-only, here and nowhere else.

A base URL ending in ``/v1`` is cut there: our paths carry ``/v1`` themselves, and the 2.x client's
base URLs (its default, and what its users put in ``REPLICATE_BASE_URL``) end in it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from replibatch.errors import ConfigurationError

__all__ = ["DEFAULT_BASE_URL", "Connection", "resolve_connection", "resolve_token"]

DEFAULT_BASE_URL = "https://api.replicate.com"


@dataclass(frozen=True)
class Connection:
    """What ``client=`` resolves to: a token, a base URL and optionally an httpx transport.

    Pass one as ``client=`` to route a run through a transport of your own (an
    ``httpx.MockTransport`` in tests, a recording or proxying transport); it then also carries
    output downloads. ``None`` fields fall back as the module docstring says. The token never
    appears in the repr.
    """

    api_token: str | None = field(default=None, repr=False)
    base_url: str | None = None
    transport: httpx.AsyncBaseTransport | None = None


def _from_official(client: object) -> Connection | None:
    """The token and base URL of an official ``replicate`` client, or None if it is not one."""
    if not any(
        klass.__module__ == "replicate" or klass.__module__.startswith("replicate.")
        for klass in type(client).__mro__
    ):
        return None
    if hasattr(client, "bearer_token"):  # 2.x: Replicate / AsyncReplicate (public attributes)
        base = getattr(client, "base_url", None)
        return Connection(api_token=client.bearer_token or None, base_url=str(base) if base else None)
    if hasattr(client, "predictions"):  # 1.x replicate.Client: no public accessor (see above)
        return Connection(
            api_token=getattr(client, "_api_token", None) or None,
            base_url=getattr(client, "_base_url", None) or None,
        )
    return None


def connection_of(client: Any) -> Connection:
    """What ``client=`` says (all None for no client).

    Raises ConfigurationError for an object that is neither an official client nor a Connection.
    """
    if client is None:
        return Connection()
    if isinstance(client, Connection):
        return client
    official = _from_official(client)
    if official is None:
        raise ConfigurationError(
            "client= must be an official replicate client (1.x replicate.Client, 2.x "
            f"replicate.Replicate / AsyncReplicate) or a replibatch Connection, not {type(client).__name__}"
        )
    return official


def resolve_token(api_token: str | None, client: Any) -> str | None:
    """The token to use: the argument, else the given client's, else ``REPLICATE_API_TOKEN``.

    Raises ConfigurationError when ``client`` is not a client `connection_of` accepts.
    """
    if api_token:
        return api_token
    return connection_of(client).api_token or os.environ.get("REPLICATE_API_TOKEN") or None


def normalize_base_url(url: str) -> str:
    """``url`` without trailing slashes and without a final ``/v1``.

    Raises ConfigurationError unless it is an http(s) URL with a host (checked here, before
    anything is sent, rather than failing each request).
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"base_url must be an http(s) URL with a host, got {url!r}")
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return parts._replace(path=path, query="", fragment="").geturl()


def check_token(token: str) -> None:
    """Raise ConfigurationError (without echoing it) unless ``token`` can go in a header.

    A token with whitespace or non-ASCII characters (a pasted newline, a smart quote) would
    fail deep in the HTTP stack on the first request; this says what is wrong up front.
    """
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise ConfigurationError(
            "the API token holds whitespace or characters that cannot be sent in a header "
            "(check REPLICATE_API_TOKEN / api_token= for a stray newline or quote)"
        )


def resolve_connection(
    api_token: str | None,
    base_url: str | None,
    client: Any,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Connection:
    """The connection a run uses, every field resolved (``base_url`` always set).

    An explicit ``transport`` wins over a Connection's. Raises ConfigurationError for an
    unusable ``client``, base URL or token.
    """
    given = connection_of(client)
    token = api_token or given.api_token or os.environ.get("REPLICATE_API_TOKEN") or None
    if token is not None:
        check_token(token)
    url = base_url or given.base_url or os.environ.get("REPLICATE_BASE_URL") or DEFAULT_BASE_URL
    return Connection(
        api_token=token,
        base_url=normalize_base_url(url),
        transport=transport or given.transport,
    )

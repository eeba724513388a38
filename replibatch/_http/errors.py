"""The one translation of foreign failures into ``replibatch.errors``.

Everything that can go wrong between us and the API ends here as one of our exceptions (the
tree is drawn in ``replibatch.errors``), the way httpx maps httpcore's errors in its own
``_exceptions.py``:

    building the request (a body that is not JSON, cannot be encoded; a bad URL)
        -> ConfigurationError: nothing was sent
    httpx.ConnectError / ConnectTimeout / PoolTimeout
        -> TransientError: no byte of the request left, a retry cannot duplicate anything
    any other httpx.TransportError, httpx.DecodingError (the reply could not be read)
        -> OutcomeUnknownError for a create (it may have reached the server), else TransientError
    HTTP 401 / 404 / 422 / 429 -> AuthenticationError / NotFoundError / InvalidInputError /
        RateLimitedError (with the server's retry hint)
    HTTP 5xx -> OutcomeUnknownError for a create (a gateway may have passed it on), else
        TransientError
    other 4xx -> ReplicateAPIError (TransientError when the body is not JSON: a proxy's page)
    a 2xx whose body is not JSON (or not UTF-8)
        -> OutcomeUnknownError for a create, else TransientError
    a 3xx (redirects are not followed, so the token stays on the API's origin)
        -> OutcomeUnknownError for a create, else ReplicateAPIError (a retry gets the same)

Retrying is the runner's job; this module only says what happened. No message carries the
token (messages hold the status, the server's problem detail and exception class names).
"""

from __future__ import annotations

from typing import Any

import httpx

from replibatch._engine.limiter import retry_after_seconds
from replibatch._http.reply import ApiReply
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

__all__ = ["from_exchange", "from_response", "problem_detail", "refused_request", "unsendable_body"]

# Raised before a byte of the request left: retrying these can never duplicate anything.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

_DETAIL_CHARS = 200

# What a foreign exception becomes: an API error, or a call that could not be made as given.
Translated = ReplicateAPIError | ConfigurationError


def problem_detail(body: Any, text: str) -> str:
    """One line saying what the server said: the RFC 7807 ``detail`` (or ``title``/``error``),
    else the start of the raw body."""
    if isinstance(body, dict):
        for key in ("detail", "title", "error"):
            if body.get(key):
                return " ".join(str(body[key]).split())
    snippet = " ".join(text.split())[:_DETAIL_CHARS]
    return snippet or "no detail"


def unsendable_body(exc: Exception) -> ConfigurationError:
    """Our error for a JSON body that cannot be encoded (NaN, an object, a lone surrogate)."""
    return ConfigurationError(f"the request body cannot be sent as JSON: {exc}")


def refused_request(exc: Exception) -> ConfigurationError:
    """Our error for a request that could not be built (a bad URL, a header or query value
    that cannot be encoded): nothing was sent."""
    return ConfigurationError(f"the request cannot be sent as given: {type(exc).__name__}: {exc}")


def from_exchange(exc: httpx.HTTPError, *, creates: bool) -> Translated:
    """Our exception for an httpx failure while sending a request or reading its reply.

    ``creates`` marks a request that creates something billable: once any of it may have been
    sent, only OutcomeUnknownError says so truthfully.
    """
    if isinstance(exc, _NOT_SENT):
        return TransientError(f"could not connect: {type(exc).__name__}")
    if isinstance(exc, httpx.UnsupportedProtocol):
        return ConfigurationError(f"the request URL cannot be used: {type(exc).__name__}")
    kind = OutcomeUnknownError if creates else TransientError
    if isinstance(exc, httpx.DecodingError):
        return kind(f"reply could not be read: {type(exc).__name__}")
    return kind(f"connection lost: {type(exc).__name__}")


def _decoded(response: httpx.Response) -> tuple[Any, bool]:
    """The JSON body (None when empty) and whether it parsed; invalid UTF-8 counts as not."""
    if not response.content:
        return None, True
    try:
        return response.json(), True
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
        return None, False


def from_response(response: httpx.Response, *, creates: bool) -> ApiReply:
    """The reply as an ApiReply when it is a JSON success, else raise our error for it.

    Raises the errors of the module docstring's table.
    """
    status = response.status_code
    body, parsed = _decoded(response)
    if status < 300 and parsed:
        return ApiReply(status, body, response.headers)
    detail = problem_detail(body, "" if parsed else response.text)
    if status < 300:
        kind = OutcomeUnknownError if creates else TransientError
        raise kind(f"reply was not JSON (HTTP {status})", status=status)
    if status < 400:
        where = response.headers.get("location", "nowhere")
        message = f"the API answered with a redirect to {where}; not followed (check base_url)"
        raise (OutcomeUnknownError if creates else ReplicateAPIError)(message, status=status)
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
    if status >= 500:
        raise (OutcomeUnknownError if creates else TransientError)(detail, status=status)
    if not parsed:
        raise TransientError(detail, status=status)
    if status == 422:
        raise InvalidInputError(detail, status=status)
    raise ReplicateAPIError(detail, status=status)

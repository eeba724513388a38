"""Exceptions raised by replibatch.

    ReplibatchError
    ├── ConfigurationError (also a ValueError)   bad call: unknown column, empty frame,
    │                                            unparseable model reference, input that is not JSON,
    │                                            unusable cache directory, missing token
    └── ReplicateAPIError                         the service answered with an error
        ├── AuthenticationError                   401: token missing or wrong
        ├── NotFoundError                         404: no such model, version or deployment
        ├── InvalidInputError                     422: input rejected by the model's schema
        ├── RateLimitedError                      429: throttled (carries ``retry_after``)
        └── TransientError                        5xx, a body that is not JSON, a dropped connection:
            └── OutcomeUnknownError               a create whose reply was lost: it may or may not exist

A failing row never raises: it becomes a row with ``status``/``error``. These exceptions reach the
caller only for problems with the call itself. No message or repr ever contains the API token.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "InvalidInputError",
    "NotFoundError",
    "OutcomeUnknownError",
    "RateLimitedError",
    "ReplibatchError",
    "ReplicateAPIError",
    "TransientError",
]


class ReplibatchError(Exception):
    """Base class of every replibatch exception."""


class ConfigurationError(ReplibatchError, ValueError):
    """The call cannot be carried out as given; raised before anything is sent or spent."""


class ReplicateAPIError(ReplibatchError):
    """An error answer from the Replicate API (or a failure to get one)."""

    def __init__(
        self, detail: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.detail}" if self.status else self.detail

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, detail={self.detail!r})"


class AuthenticationError(ReplicateAPIError):
    """401: the API token is missing or not accepted."""


class NotFoundError(ReplicateAPIError):
    """404: the model, version, deployment or prediction does not exist (or is not visible)."""


class InvalidInputError(ReplicateAPIError):
    """422: the model rejected the input."""


class RateLimitedError(ReplicateAPIError):
    """429: the request was throttled; ``retry_after`` holds the server's hint in seconds, if any."""


class TransientError(ReplicateAPIError):
    """A failure worth retrying for reads: 5xx, a body that is not JSON, a dropped connection."""


class OutcomeUnknownError(TransientError):
    """A create request whose reply was lost: the prediction may exist and be billed."""

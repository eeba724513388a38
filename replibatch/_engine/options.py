"""The options of one run (`run` / `arun`), typed, and checked before anything is sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from replibatch._engine.download import DEFAULT_DOWNLOAD_TIMEOUT, DEFAULT_MAX_FILE_BYTES, DownloadLimits
from replibatch.errors import ConfigurationError

__all__ = ["DEFAULT_CONCURRENCY", "DEFAULT_RETRIES", "RunOptions"]

DEFAULT_CONCURRENCY = 128
DEFAULT_RETRIES = 5


@dataclass(frozen=True)
class RunOptions:
    """Every keyword option of `run` / `arun` (documented there), as the caller gave it."""

    concurrency: int | None = None
    rate_limit: float | None = None
    cache: Any = True
    refresh: bool = False
    max_cost: float | None = None
    timeout: float | None = None
    retries: int = DEFAULT_RETRIES
    progress: bool | None = None
    live: bool | None = None
    api_token: str | list[str] | None = None
    base_url: str | None = None
    client: Any = None
    hardware: dict[str, str] | None = None
    prices: Any = None
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT
    files: list[str] | str | None = None

    def checked(self) -> tuple[int, DownloadLimits]:
        """The concurrency to use and the download limits. Raises ConfigurationError for a
        concurrency or retries that is not a whole number in range, a rate_limit, timeout or
        max_cost that is not a positive number, or invalid download limits (`api_token` is
        checked by `replibatch._engine.tokens.resolve_tokens`)."""
        concurrency = DEFAULT_CONCURRENCY if self.concurrency is None else self.concurrency
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be a whole number >= 1, got {concurrency!r}")
        for name in ("rate_limit", "timeout", "max_cost"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ConfigurationError(f"{name} must be a positive number or None, got {value!r}")
        retries = self.retries
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ConfigurationError(f"retries must be a whole number >= 0, got {retries!r}")
        return concurrency, DownloadLimits(self.max_file_bytes, self.download_timeout)

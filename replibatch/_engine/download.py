"""Fetching output files: never with the token, never from the API itself, bounded, to disk.

- The API token is never sent with a file download: downloads use their own httpx client with
  no ``Authorization`` header (Replicate's outputs live on ``replicate.delivery``, which needs
  none). The token goes only to the API's own origin, through the SDK's client.
- A model output that points at the API itself (the API's host and a ``/v1/`` path, whatever
  the scheme or port: ``http://api.replicate.com/v1/account``) is refused, not fetched: an
  output must not be able to make us read account data into the file store.
- A file streams to a temporary file beside the store (hashed as it arrives), never whole into
  memory; it fails once it passes `DownloadLimits.max_file_bytes`, and the whole download must
  finish within `DownloadLimits.timeout` seconds (httpx's read timeout alone restarts at every
  chunk, so an endless trickle would never end). ``data:`` outputs obey the same byte cap.

Failures raise `DownloadError` (a `ReplicateAPIError`: the runner ends the row ``error`` and keeps
its marker, so the next run re-attaches and downloads again) or `TransientError` (worth a retry).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import httpx

from replibatch._store.outputs import is_http_url
from replibatch.errors import ConfigurationError, ReplicateAPIError, TransientError

__all__ = [
    "DEFAULT_DOWNLOAD_TIMEOUT",
    "DEFAULT_MAX_FILE_BYTES",
    "DownloadError",
    "DownloadLimits",
    "Downloaded",
    "check_output_url",
    "stream_to_file",
]

DEFAULT_MAX_FILE_BYTES = 4 * 2**30  # 4 GiB: long 4K videos fit
DEFAULT_DOWNLOAD_TIMEOUT = 1800.0  # 30 min for one file, start to end
_CHUNK = 1 << 20


class DownloadError(ReplicateAPIError):
    """An output file that was refused or could not be fetched within the limits."""


@dataclass(frozen=True)
class DownloadLimits:
    """Per-file byte cap and total deadline (seconds). Raises ConfigurationError when invalid."""

    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    timeout: float = DEFAULT_DOWNLOAD_TIMEOUT

    def __post_init__(self) -> None:
        size = self.max_file_bytes
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigurationError(
                f"max_file_bytes must be a whole number of bytes >= 1, got {self.max_file_bytes!r}"
            )
        seconds = self.timeout
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise ConfigurationError(
                f"download_timeout must be a positive number of seconds, got {self.timeout!r}"
            )


@dataclass(frozen=True)
class Downloaded:
    """A file fetched to `path` (a temporary file the file store moves into place)."""

    path: Path
    sha256: str
    size: int
    content_type: str | None
    head: bytes  # the first bytes, for sniffing the type


def check_output_url(url: str, api_base_url: str) -> None:
    """Raise DownloadError when `url` may not be fetched: not http(s), or an API endpoint."""
    parts = urlsplit(url)
    if not is_http_url(url) or not parts.hostname:
        raise DownloadError(f"output URL {url!r} is not an http(s) URL; not fetched")
    api = urlsplit(api_base_url)
    if parts.hostname == api.hostname and (parts.path.startswith("/v1/") or parts.path == "/v1"):
        raise DownloadError(f"output URL {url} points at the Replicate API itself; not fetched")


async def stream_to_file(
    client: httpx.AsyncClient, url: str, directory: Path, limits: DownloadLimits
) -> Downloaded:
    """GET `url` with `client` into a new temporary file in `directory`, within `limits`.

    Raises DownloadError (over the cap, past the deadline, a 4xx), TransientError (5xx, a
    dropped connection). The temporary file is removed on any failure.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-dl-")
    path = Path(name)
    digest = hashlib.sha256()
    size = 0
    head = b""
    try:
        with os.fdopen(fd, "wb") as handle, anyio.fail_after(limits.timeout):
            async with client.stream("GET", url) as response:
                if response.status_code >= 400:
                    kind = TransientError if response.status_code >= 500 else DownloadError
                    raise kind(f"download of {url} failed", status=response.status_code)
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > limits.max_file_bytes:
                    raise _too_large(url, limits)
                content_type = response.headers.get("content-type")
                async for chunk in response.aiter_bytes(_CHUNK):
                    size += len(chunk)
                    if size > limits.max_file_bytes:
                        raise _too_large(url, limits)
                    if len(head) < 64:
                        head += chunk[: 64 - len(head)]
                    digest.update(chunk)
                    # Written in a thread: big chunks would stall every other row's polling.
                    await anyio.to_thread.run_sync(handle.write, chunk)
            await anyio.to_thread.run_sync(handle.flush)
    except TimeoutError:
        _remove(path)
        raise DownloadError(
            f"download of {url} did not finish within download_timeout={limits.timeout} s"
        ) from None
    except httpx.TransportError as exc:
        _remove(path)
        raise TransientError(f"download failed: {type(exc).__name__}") from None
    except BaseException:
        _remove(path)
        raise
    return Downloaded(path, digest.hexdigest(), size, content_type, head)


def _too_large(url: str, limits: DownloadLimits) -> DownloadError:
    return DownloadError(
        f"output file {url} is larger than max_file_bytes={limits.max_file_bytes}; not kept"
    )


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()

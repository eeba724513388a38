"""Content-addressed store for output files (images, audio, video, any URL output).

Files live under ``<cache dir>/files/<first 2 hex>/<sha256 hex><.ext>``: identical bytes are stored
once. Each file is written to a temporary file in the same directory and renamed into place, so a
reader (another thread, notebook or process) sees either the whole file or none.

`FileStore.localize_output` walks a model output (str / list / dict) and replaces http(s) URLs and
``data:`` URIs with `OutputFile` references: a ``str`` holding the absolute local path (so pandas,
CSV and Parquet see plain strings) that also knows its original URL and renders inline in Jupyter.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import mimetypes
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import anyio
import anyio.to_thread

from replibatch._store.atomic import TEMP_PREFIX, atomic_write_bytes

# OutputFile and the URL tests live in `outputs` (what an output value is); importable from here.
from replibatch._store.outputs import (
    DATA_URI,
    INLINE_LIMIT_BYTES,
    OutputFile,
    OutputKind,
    is_data_uri,
    is_http_url,
    output_kind,
)
from replibatch._table.filetypes import EXT_BY_TYPE, sniff

__all__ = [
    "INLINE_LIMIT_BYTES",
    "Fetch",
    "FileStore",
    "OutputFile",
    "choose_extension",
    "decode_data_uri",
    "is_data_uri",
    "is_http_url",
    "localize_output",
]

Fetch = Callable[[str], Awaitable[Any]]
"""``async fetch(url) -> bytes`` or ``-> (bytes, content_type)``; supplied by the runner."""

#: Files at least this large are hashed and written in a worker thread, off the event loop.
_THREAD_WRITE_BYTES = 2**20
_FILES_DIR = "files"

# Fixed tables rather than `mimetypes` alone: its answers depend on the platform's mime.types
# (".jpe" vs ".jpg"), and the extension is part of a file's stored name.
_SAFE_EXT = re.compile(r"\.[a-z0-9]{1,8}\Z")
_STORED_NAME = re.compile(r"files/[0-9a-f]{2}/[0-9a-f]{64}(?:\.[a-z0-9]{1,8})?\Z")
# Strict so that text which merely starts with "data:" ("data: 3 rows ...") is not taken for a URI.
def decode_data_uri(text: str) -> tuple[bytes, str | None]:
    """Return ``(bytes, media type or None)`` of a ``data:`` URI.

    Raises ValueError when `text` is not a data URI or its base64 payload is invalid.
    """
    match = DATA_URI.match(text)
    if match is None:
        raise ValueError("not a data: URI")
    payload = text[match.end() :]
    if match["base64"]:
        try:
            data = base64.b64decode(unquote_to_bytes(payload), validate=True)
        except binascii.Error as exc:
            raise ValueError(f"invalid base64 in data: URI ({exc})") from None
    else:
        data = unquote_to_bytes(payload)
    media_type = match["type"].lower() if match["type"] else None
    return data, media_type


def _sniff_extension(data: bytes) -> str | None:
    sniffed = sniff(data)
    return sniffed[1] if sniffed else None


def choose_extension(data: bytes, url: str | None = None, content_type: str | None = None) -> str:
    """Pick a file extension from the URL's path, else the content type, else magic bytes.

    Returns ``".bin"`` when nothing is known. Never raises.
    """
    if url and not url.startswith("data:"):
        try:
            suffix = Path(urlsplit(url).path).suffix.lower()
        except ValueError:
            suffix = ""
        if suffix == ".jpeg":
            suffix = ".jpg"
        if _SAFE_EXT.match(suffix):
            return suffix
    if content_type:
        media_type = content_type.split(";", 1)[0].strip().lower()
        ext = EXT_BY_TYPE.get(media_type) or mimetypes.guess_extension(media_type)
        if ext and _SAFE_EXT.match(ext):
            return ext
    return _sniff_extension(data) or ".bin"


class FileStore:
    """Content-addressed files under ``<base>/files``; references are relative to `base`."""

    def __init__(self, base: str | os.PathLike[str]) -> None:
        self.base = Path(base).absolute()
        self.root = self.base / _FILES_DIR

    def path_for(self, digest: str, ext: str) -> Path:
        """The absolute path where content with sha256 `digest` and extension `ext` lives."""
        return self.root / digest[:2] / f"{digest}{ext}"

    def put_bytes(
        self, data: bytes, *, url: str | None = None, content_type: str | None = None
    ) -> OutputFile:
        """Store `data` (once per content) and return its `OutputFile`.

        Raises OSError when the file cannot be written.
        """
        data = bytes(data)
        target = self.path_for(
            hashlib.sha256(data).hexdigest(), choose_extension(data, url, content_type)
        )
        if target.exists():
            # Same content already stored: refresh its mtime so a concurrent prune, which spares
            # recently touched files, does not remove it before our entry references it.
            with contextlib.suppress(OSError):
                os.utime(target)
        else:
            atomic_write_bytes(target, data, private=True)
        return OutputFile(target, url)

    def put_downloaded(self, downloaded: Any, *, url: str | None = None) -> OutputFile:
        """Move a file streamed to disk (`replibatch._engine.download.Downloaded`) into the store.

        Raises OSError when it cannot be moved."""
        ext = choose_extension(downloaded.head, url, downloaded.content_type)
        target = self.path_for(downloaded.sha256, ext)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            with contextlib.suppress(OSError):
                os.utime(target)
                Path(downloaded.path).unlink()
        else:
            Path(downloaded.path).replace(target)
        return OutputFile(target, url)

    def relative(self, file: str | os.PathLike[str]) -> str:
        """The reference stored in cache entries: the path relative to `base`, ``/``-separated.

        Raises ValueError when `file` is not inside this store.
        """
        relative = Path(file).absolute().relative_to(self.base).as_posix()
        if not _STORED_NAME.match(relative):
            raise ValueError(f"{file} is not a file of this store")
        return relative

    def resolve(self, reference: str, url: str | None = None) -> OutputFile:
        """The `OutputFile` for a stored reference (as returned by `relative`).

        Raises ValueError for a reference that is not a store path (for instance ``../x``), so a
        tampered entry can never point outside the store.
        """
        if not isinstance(reference, str) or not _STORED_NAME.match(reference):
            raise ValueError(f"not a file store reference: {reference!r}")
        return OutputFile(self.base / reference, url)

    def usage(self) -> tuple[int, int]:
        """``(file count, bytes)`` of the stored files."""
        count = size = 0
        for path in self._stored_files():
            with contextlib.suppress(OSError):
                size += path.stat().st_size
                count += 1
        return count, size

    def prune(self, referenced: set[str], *, grace_seconds: float = 3600.0) -> int:
        """Delete stored files not in `referenced` (relative references) and older than the grace.

        The grace period protects files that a concurrent run has just written but not yet
        referenced from an entry. Returns the number of files deleted.
        """
        cutoff = time.time() - grace_seconds
        removed = 0
        for path in self._stored_files():
            if path.relative_to(self.base).as_posix() in referenced:
                continue
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    def _stored_files(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.glob("??/*") if not p.name.startswith(TEMP_PREFIX)]

    async def localize_output(
        self, output: Any, fetch: Fetch, *, max_bytes: int | None = None
    ) -> Any:
        """Return `output` with every http(s) URL and ``data:`` URI replaced by an `OutputFile`.

        Walks strings, lists, tuples and dicts (other values are returned as they are). Distinct
        URLs are fetched concurrently with `fetch`, once each; `fetch` may also return a
        `replibatch._engine.download.Downloaded` (a file already streamed to disk), which is moved into
        the store. Raises whatever `fetch` raises (the first failure, after the other fetches of
        this output finished), and ValueError for a malformed ``data:`` URI or one whose payload
        is larger than `max_bytes`.
        """
        found: list[str] = []
        _collect_files(output, found)
        if not found:
            return output
        files: dict[str, OutputFile] = {}
        errors: list[Exception] = []

        async def localize_one(text: str) -> None:
            try:
                if text.startswith("data:"):
                    # base64 holds 3 bytes per 4 characters: a far longer text is refused
                    # before it is decoded into a second copy.
                    too_long = max_bytes is not None and len(text) > max_bytes * 4 // 3 + 1024
                    data, content_type = (b"", None) if too_long else decode_data_uri(text)
                    if too_long or (max_bytes is not None and len(data) > max_bytes):
                        raise ValueError(
                            f"a data: output is larger than max_file_bytes={max_bytes}; not kept"
                        )
                    files[text] = await self._store(data, None, content_type)
                else:
                    result = await fetch(text)
                    if hasattr(result, "sha256") and hasattr(result, "path"):
                        files[text] = await anyio.to_thread.run_sync(
                            lambda: self.put_downloaded(result, url=text)
                        )
                    else:
                        data, content_type = _split_fetch_result(result)
                        files[text] = await self._store(data, text, content_type)
            except Exception as exc:  # collected so the caller gets it, not an ExceptionGroup
                errors.append(exc)

        unique = list(dict.fromkeys(found))
        if len(unique) == 1:
            await localize_one(unique[0])
        else:
            async with anyio.create_task_group() as group:
                for text in unique:
                    group.start_soon(localize_one, text)
        if errors:
            raise errors[0]
        return _replace_files(output, files)

    async def _store(self, data: bytes, url: str | None, content_type: str | None) -> OutputFile:
        if len(data) >= _THREAD_WRITE_BYTES:
            return await anyio.to_thread.run_sync(
                lambda: self.put_bytes(data, url=url, content_type=content_type)
            )
        return self.put_bytes(data, url=url, content_type=content_type)


def _split_fetch_result(result: Any) -> tuple[bytes, str | None]:
    if isinstance(result, tuple):
        data, content_type = result
        return bytes(data), content_type
    if isinstance(result, (bytes, bytearray, memoryview)):
        return bytes(result), None
    raise TypeError(
        f"fetch must return bytes or (bytes, content_type), got {type(result).__name__}"
    )


def _collect_files(value: Any, found: list[str]) -> None:
    if isinstance(value, str):
        if output_kind(value) in (OutputKind.URL, OutputKind.DATA_URI):
            found.append(value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _collect_files(item, found)
    elif isinstance(value, dict):
        for item in value.values():
            _collect_files(item, found)


def _replace_files(value: Any, files: dict[str, OutputFile]) -> Any:
    if isinstance(value, str):
        return files.get(value, value) if not isinstance(value, OutputFile) else value
    if isinstance(value, (list, tuple)):
        return type(value)(_replace_files(item, files) for item in value)
    if isinstance(value, dict):
        return {key: _replace_files(item, files) for key, item in value.items()}
    return value


async def localize_output(output: Any, fetch: Fetch, store: FileStore) -> Any:
    """Module-level form of `FileStore.localize_output`."""
    return await store.localize_output(output, fetch)

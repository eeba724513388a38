"""File inputs made sendable: a small file inline as a data URI, a large one uploaded once."""

from __future__ import annotations

from typing import Any

import anyio

from replibatch._engine.reads import Reads
from replibatch._http.edge import Edge
from replibatch._table.inputs import SMALL_FILE_BYTES, FileInput, data_uri, map_files

__all__ = ["Uploads"]


class Uploads:
    """One run's uploads, by content hash: identical files in many rows are uploaded once."""

    def __init__(self, edge: Edge, read: Reads) -> None:
        self._edge = edge
        self._read = read
        self._urls: dict[str, str] = {}
        self._locks: dict[str, anyio.Lock] = {}

    async def prepare(self, raw: dict[str, Any]) -> dict[str, Any]:
        """`raw` with each FileInput replaced by a data URI (small) or an uploaded file's URL
        (large). Raises ReplicateAPIError when an upload fails."""
        files: list[FileInput] = []
        map_files(raw, files.append)
        if not files:
            return raw
        sent: dict[str, str] = {}
        for file in files:
            if file.sha256 not in sent:
                small = file.size <= SMALL_FILE_BYTES
                sent[file.sha256] = data_uri(file) if small else await self._upload(file)
        prepared: dict[str, Any] = map_files(raw, lambda file: sent[file.sha256])
        return prepared

    async def _upload(self, file: FileInput) -> str:
        lock = self._locks.setdefault(file.sha256, anyio.Lock())
        async with lock:
            if file.sha256 not in self._urls:
                self._urls[file.sha256] = await self._read(
                    lambda: self._edge.upload_file(
                        file.data, filename=file.filename, content_type=file.content_type
                    )
                )
        return self._urls[file.sha256]

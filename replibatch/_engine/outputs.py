"""A succeeded row's output files, downloaded into the cache's file store within the limits."""

from __future__ import annotations

from typing import Any

from replibatch._engine.download import Downloaded, DownloadError, DownloadLimits
from replibatch._engine.reads import Reads
from replibatch._http.edge import Edge
from replibatch._store.cache import ResultCache

__all__ = ["Outputs", "is_streamed_text"]


def is_streamed_text(record: dict[str, Any], output: Any) -> bool:
    """True when tokens were joined into text: a token that happens to be a URL is not a file."""
    return isinstance(record.get("output"), list) and isinstance(output, str)


class Outputs:
    """Localizes outputs into `cache`'s file store (without a cache the URLs are kept)."""

    def __init__(self, edge: Edge, read: Reads, cache: ResultCache | None, limits: DownloadLimits) -> None:
        self._edge = edge
        self._read = read
        self._cache = cache
        self.limits = limits

    async def localize(self, output: Any) -> Any:
        """`output` with its files in the file store. Raises ReplicateAPIError (DownloadError
        among them) when a file is refused or cannot be fetched within the limits."""
        if self._cache is None or output is None or isinstance(output, (int, float, bool)):
            return output
        try:
            return await self._cache.files.localize_output(
                output, self._download, max_bytes=self.limits.max_file_bytes
            )
        except ValueError as exc:  # a data: output over the cap, or a malformed one
            raise DownloadError(str(exc)) from None

    async def _download(self, url: str) -> Downloaded:
        assert self._cache is not None
        incoming = self._cache.files.root / ".incoming"
        return await self._read(lambda: self._edge.download(url, incoming, self.limits))

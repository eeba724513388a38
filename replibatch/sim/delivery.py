"""Output-file delivery (``/delivery/{prediction_id}/{name}``), with the faults a CDN has.

Replicate serves output files from ``replicate.delivery`` (spec, predictions.get: "Output files
are served by `replicate.delivery` and its subdomains"), another origin than the API; they answer
404 once the prediction's data is removed. Clients must cope with a CDN that fails (5xx), cuts a
body short, or trickles it; and with files far larger than the demo models make
(``output_file_bytes``), to test byte caps and deadlines without holding the bytes in memory.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

from replibatch.sim.cog import OutputFile
from replibatch.sim.faults import FaultDice, SimOptions
from replibatch.sim.state import Stats

__all__ = ["Blob", "serve_blob"]

_CHUNK = 64 * 1024
_ZEROS = bytes(_CHUNK)
_CDN_ERROR = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    "</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class Blob:
    """A published output file: the model's bytes, padded with zeros to ``size`` bytes."""

    file: OutputFile
    size: int

    @property
    def data(self) -> bytes:
        """The model's own bytes (what a file input pointing here reads)."""
        return self.file.data

    def chunks(self) -> list[tuple[int, int]]:
        """(start, end) offsets of the body in chunks, so a huge padded file is never built."""
        return [(start, min(start + _CHUNK, self.size)) for start in range(0, self.size, _CHUNK)]

    def slice(self, start: int, end: int) -> bytes:
        data = self.file.data
        head = data[start:end]
        return head + _ZEROS[: (end - start) - len(head)]


def publish_size(file: OutputFile, options: SimOptions) -> int:
    """How many bytes a published file has: the model's, or ``output_file_bytes`` if set."""
    return len(file.data) if options.output_file_bytes is None else options.output_file_bytes


async def serve_blob(
    request: web.Request, blob: Blob | None, options: SimOptions, dice: FaultDice, stats: Stats
) -> web.StreamResponse:
    """Answer one download: 404, an injected CDN fault, or the bytes (streamed in chunks).

    ``download_drop_rate`` sends the headers (with the full Content-Length) and half the body,
    then closes the connection; ``download_slow_rate`` sleeps ``download_slow_delay`` real
    seconds before every chunk, so a per-chunk read timeout never fires but the whole body takes
    ``chunks x delay``.
    """
    if blob is None:  # never existed, or deleted after the retention period
        return web.Response(status=404, text="Not Found")
    if dice.roll(options.download_error_rate):
        status = dice.choice((502, 503))
        stats.count_fault(f"download_error_{status}")
        reason = "Bad Gateway" if status == 502 else "Service Temporarily Unavailable"
        return web.Response(status=status, text=_CDN_ERROR.format(status=status, reason=reason),
                            content_type="text/html")
    drop = dice.roll(options.download_drop_rate)
    slow = dice.roll(options.download_slow_rate)
    stats.count_download()
    response = web.StreamResponse(headers={"Content-Type": blob.file.content_type,
                                           "Content-Length": str(blob.size)})
    await response.prepare(request)
    chunks = blob.chunks()
    if drop:
        stats.count_fault("download_drop")
        chunks = chunks[: len(chunks) // 2] if len(chunks) > 1 else []
        if len(blob.chunks()) == 1:  # one chunk: send half of it
            await response.write(blob.slice(0, blob.size // 2))
    if slow:
        stats.count_fault("download_slow")
    for start, end in chunks:
        if slow:
            await asyncio.sleep(options.download_slow_delay)
        await response.write(blob.slice(start, end))
    if drop:
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response

"""Server-sent events of a streaming prediction (``/v1/streams/{id}``) on the simulator.

Event shape as recorded (predictions-stream.yaml): ``output`` events with the new text,
then ``done`` (``{}``, or ``{"reason": ...}`` when canceled) or ``error``.
"""

from __future__ import annotations

import json

from aiohttp import web

from replibatch.sim.context import PredictionBook
from replibatch.sim.responses import problem
from replibatch.sim.state import Prediction

__all__ = ["StreamRoutes"]


class StreamRoutes:
    """The SSE route over the predictions of `book`."""

    def __init__(self, book: PredictionBook) -> None:
        self.book = book

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/streams/{prediction_id}", self.stream_prediction)

    async def stream_prediction(self, request: web.Request) -> web.StreamResponse:
        p = self.book.get(request.match_info["prediction_id"])
        if p is None or not p.stream:
            return problem(404, "Not found", "Stream not found")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-store"})
        await response.prepare(request)
        try:
            await self._stream_events(p, response)
        except ConnectionError:
            # The client hung up mid-stream (it had what it wanted, or was interrupted). Real
            # servers drop such streams quietly; aiohttp would log a traceback for it.
            pass
        return response

    async def _stream_events(self, p: Prediction, response: web.StreamResponse) -> None:
        sent = 0
        while True:
            updated = p.updated
            items = p.output if isinstance(p.output, list) else []
            for item in items[sent:]:
                data = "".join(f"data: {line}\n" for line in str(item).split("\n"))
                await response.write(f"event: output\nid: {sent}\n{data}\n".encode())
                sent += 1
            if p.terminal:
                break
            await updated.wait()
        if p.status == "failed":
            payload = json.dumps({"detail": p.error})
            await response.write(f"event: error\nid: {sent}\ndata: {payload}\n\n".encode())
        else:
            done = "{}" if p.status == "succeeded" else json.dumps({"reason": p.status})
            await response.write(f"event: done\nid: {sent}\ndata: {done}\n\n".encode())
        await response.write_eof()

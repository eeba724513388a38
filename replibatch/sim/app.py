"""One simulator's pieces put together: the shared context, the gate, the lifecycle, the routes and
the trainings, as one aiohttp application bound to a loopback socket.

`SimApp` is what the trainings (sim/trainings.py) know as their `SimHost`: the few attributes
and helpers they share with the prediction side are forwarded to the piece that owns them.
Everything here runs on the server's event loop (`replibatch.sim.server.SimServer` runs it on
its own thread).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from replibatch.sim.catalog import CatalogRoutes
from replibatch.sim.cog import InvalidField
from replibatch.sim.context import SimContext
from replibatch.sim.credit import CreditAccounts
from replibatch.sim.delivery import Blob
from replibatch.sim.faults import FaultDice, SimOptions
from replibatch.sim.files import MAX_UPLOAD, FileRoutes
from replibatch.sim.gate import Gate
from replibatch.sim.lifecycle import Lifecycle
from replibatch.sim.models import ModelRegistry
from replibatch.sim.predictions import PredictionRoutes, invalid, json_body
from replibatch.sim.state import Clock, Stats
from replibatch.sim.streams import StreamRoutes
from replibatch.sim.trainings import TrainingService

__all__ = ["SimApp"]


class SimApp:
    """The simulator's application: build it, :meth:`start` it on a host and port, :meth:`stop`."""

    def __init__(self, options: SimOptions, registry: ModelRegistry, stats: Stats) -> None:
        self.ctx = SimContext(options, registry, stats)
        self.gate = Gate(self.ctx)
        self.lifecycle = Lifecycle(self.ctx)
        self.predictions = PredictionRoutes(self.ctx, self.gate, self.lifecycle)
        self.files = FileRoutes(self.ctx)
        self.streams = StreamRoutes(self.lifecycle.book)
        self.trainings = TrainingService(self)
        self.catalog = CatalogRoutes(self.ctx, self.lifecycle.book, self.trainings)
        self.runner: web.AppRunner | None = None

    def application(self) -> web.Application:
        """The aiohttp application with every route behind the gate."""
        app = web.Application(middlewares=[self.gate.middleware], client_max_size=MAX_UPLOAD + 65536)
        for routes in (self.predictions, self.catalog, self.files, self.streams, self.trainings):
            routes.add_routes(app.router)
        return app

    async def start(self, host: str, port: int) -> str:
        """Bind and serve; returns the base URL (``http://host:port``). Raises OSError when the
        port cannot be bound."""
        self.runner = web.AppRunner(self.application(), access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        # aiohttp's default listen backlog (128) drops connection bursts from a client that opens
        # more at once: the SYNs are retried a second later, which looks like a slow server.
        site = web.TCPSite(self.runner, host, port, backlog=4096)
        await site.start()
        bound_host, bound_port = self.runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.ctx.base_url = f"http://{shown}:{bound_port}"
        return self.ctx.base_url

    async def stop(self) -> None:
        """Cancel running predictions and trainings, then close every connection."""
        await self.lifecycle.stop()
        await self.trainings.stop()
        if self.runner is not None:
            await self.runner.cleanup()

    def reconfigure(self, options: SimOptions) -> None:
        """Put new options in force (already checked)."""
        self.ctx.reconfigure(options)
        self.gate.reconfigure(options)

    # -- what the trainings share (sim/trainings.py's SimHost) --------------------------------
    # Settable, as the protocol declares them; each reads and writes the one copy in the context.
    @property
    def options(self) -> SimOptions:
        return self.ctx.options

    @options.setter
    def options(self, value: SimOptions) -> None:
        self.ctx.options = value

    @property
    def registry(self) -> ModelRegistry:
        return self.ctx.registry

    @registry.setter
    def registry(self, value: ModelRegistry) -> None:
        self.ctx.registry = value

    @property
    def clock(self) -> Clock:
        return self.ctx.clock

    @clock.setter
    def clock(self, value: Clock) -> None:
        self.ctx.clock = value

    @property
    def dice(self) -> FaultDice:
        return self.ctx.dice

    @dice.setter
    def dice(self, value: FaultDice) -> None:
        self.ctx.dice = value

    @property
    def base_url(self) -> str:
        return self.ctx.base_url

    @base_url.setter
    def base_url(self, value: str) -> None:
        self.ctx.base_url = value

    @property
    def blobs(self) -> dict[str, Blob]:
        return self.ctx.blobs

    @blobs.setter
    def blobs(self, value: dict[str, Blob]) -> None:
        self.ctx.blobs = value

    @property
    def credit(self) -> CreditAccounts:
        """The account's credit by token (``SimServer.credit``)."""
        return self.ctx.credit

    def _fetch(self, uri: str) -> bytes:
        return self.lifecycle.fetch(uri)

    def _drop(self, request: web.Request, kind: str) -> web.StreamResponse:
        return self.gate.drop(request, kind)

    def _invalid(self, fields: list[InvalidField]) -> web.Response:
        return invalid(fields)

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        return await json_body(request)

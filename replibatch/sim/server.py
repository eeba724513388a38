"""The simulator's HTTP side: an aiohttp app speaking the Replicate API, on its own thread."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import threading
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from replibatch.sim.catalog import CatalogRoutes
from replibatch.sim.cog import InvalidField
from replibatch.sim.credit import CreditAccounts, request_token
from replibatch.sim.delivery import Blob
from replibatch.sim.faults import FaultDice, SimOptions
from replibatch.sim.files import MAX_UPLOAD, FileRoutes
from replibatch.sim.habits import (
    CancelAfterError,
    internal_model_name,
    parse_cancel_after,
)
from replibatch.sim.lifecycle import Lifecycle
from replibatch.sim.listing import page_of
from replibatch.sim.models import ModelRegistry, SimDeployment, SimModel
from replibatch.sim.ratelimit import Limits, account_options
from replibatch.sim.responses import DROPPED as _DROPPED
from replibatch.sim.responses import GATEWAY_REASONS as _GATEWAY_REASONS
from replibatch.sim.responses import gateway_error as _gateway_error
from replibatch.sim.responses import json_response as _json
from replibatch.sim.responses import parse_query_time as _parse_query_time
from replibatch.sim.responses import problem
from replibatch.sim.state import (
    Clock,
    FileRecord,
    Prediction,
    Stats,
    canonical_json,
    iso,
    new_prediction_id,
)
from replibatch.sim.streams import StreamRoutes
from replibatch.sim.trainings import TrainingService

__all__ = ["SimServer", "problem"]

# The exact body the real service sent for a bad token (cassette run__invalid-token).
_UNAUTHENTICATED = (
    b'{"title":"Unauthenticated","detail":"You did not pass a valid authentication token",'
    b'"status":401}\n'
)
_CREATE_ROUTES = frozenset({
    "/v1/predictions",
    "/v1/models/{owner}/{name}/predictions",
    "/v1/deployments/{owner}/{name}/predictions",
})
_PREFER_WAIT = re.compile(r"^\s*wait(?:\s*=\s*(\d+))?\s*$")
_VERSION_REF = re.compile(r"^(?:(?P<owner>[^/:\s]+)/(?P<name>[^/:\s]+))?:?(?P<version>[0-9a-f]{64})?$")


def _parse_wait(value: str | None) -> tuple[float, str] | None:
    """(seconds, header value) for a valid ``Prefer: wait[=N]`` (N in 1..60), else None."""
    if not value:
        return None
    match = _PREFER_WAIT.match(value)
    if not match:
        return None
    seconds = int(match.group(1)) if match.group(1) else 60
    return (float(seconds), value.strip()) if 1 <= seconds <= 60 else None


class _SimApp(Lifecycle, CatalogRoutes, FileRoutes, StreamRoutes):
    """State, the request gate and the prediction routes; everything here runs on the server's
    event loop. The other routes and the prediction lifecycle come from the mixins."""

    def __init__(self, options: SimOptions, registry: ModelRegistry, stats: Stats) -> None:
        self.options = options
        self.registry = registry
        self.stats = stats
        self.clock = Clock()
        self.dice = FaultDice(options.seed)
        self.base_url = ""
        self.predictions: dict[str, Prediction] = {}
        self.order: list[Prediction] = []
        self.created_wall: list[float] = []  # wall creation time of order[i], for list filters
        # The same per token, for ``separate_accounts`` (each token its own account).
        self.order_by_token: dict[str | None, list[Prediction]] = {}
        self.created_wall_by_token: dict[str | None, list[float]] = {}
        self.files: dict[str, FileRecord] = {}
        self.blobs: dict[str, Blob] = {}
        self.runs: dict[str, int] = {}
        self.limits = Limits(options)
        self.credit = CreditAccounts(dict(options.credit or ()))
        self.runner: web.AppRunner | None = None
        self.trainings = TrainingService(self)

    # -- lifecycle ---------------------------------------------------------------------------
    def application(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware], client_max_size=MAX_UPLOAD + 65536)
        r = app.router
        r.add_post("/v1/predictions", self.create_by_version)
        r.add_get("/v1/predictions", self.list_predictions)
        r.add_get("/v1/predictions/{prediction_id}", self.get_prediction)
        r.add_post("/v1/predictions/{prediction_id}/cancel", self.cancel_prediction)
        r.add_get("/v1/models", self.list_models)
        r.add_get("/v1/models/{owner}/{name}", self.get_model)
        r.add_post("/v1/models/{owner}/{name}/predictions", self.create_by_model)
        r.add_get("/v1/models/{owner}/{name}/versions", self.list_versions)
        r.add_get("/v1/models/{owner}/{name}/versions/{version_id}", self.get_version)
        r.add_get("/v1/deployments/{owner}/{name}", self.get_deployment)
        r.add_post("/v1/deployments/{owner}/{name}/predictions", self.create_by_deployment)
        r.add_post("/v1/files", self.create_file)
        r.add_get("/v1/files", self.list_files)
        r.add_get("/v1/files/{file_id}", self.get_file)
        r.add_delete("/v1/files/{file_id}", self.delete_file)
        r.add_get("/v1/files/{file_id}/download", self.download_file)
        r.add_get("/v1/hardware", self.list_hardware)
        r.add_get("/v1/account", self.get_account)
        r.add_get("/v1/streams/{prediction_id}", self.stream_prediction)
        r.add_get("/delivery/{prediction_id}/{filename}", self.delivery)
        self.trainings.add_routes(r)
        return app

    async def start(self, host: str, port: int) -> str:
        self.runner = web.AppRunner(self.application(), access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        # aiohttp's default listen backlog (128) drops connection bursts from a client that opens
        # more at once: the SYNs are retried a second later, which looks like a slow server.
        site = web.TCPSite(self.runner, host, port, backlog=4096)
        await site.start()
        bound_host, bound_port = self.runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.base_url = f"http://{shown}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        tasks = [p.task for p in self.order if p.task is not None and not p.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.trainings.stop()
        if self.runner is not None:
            await self.runner.cleanup()

    def reconfigure(self, options: SimOptions) -> None:
        old, self.options = self.options, options
        self.limits.reconfigure(options)
        self.credit.reconfigure(dict(options.credit or ()))
        if old.seed != options.seed:
            self.dice.reseed(options.seed)

    # -- the gate every request passes -------------------------------------------------------
    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        resource = request.match_info.route.resource
        template = resource.canonical if resource is not None else "<unmatched>"
        self.stats.count_request(f"{request.method} {template}", request_token(request))
        if not request.path.startswith("/v1/") or template.startswith("/v1/streams/"):
            response = await self._guarded(handler, request)
            self.stats.count_status(response.status)
            return response
        response = await self._api(request, handler, template)
        if response is not _DROPPED:
            is_create = request.method == "POST" and template in _CREATE_ROUTES
            self.stats.count_status(response.status, is_create)
        return response

    async def _api(self, request: web.Request, handler: Any, template: str) -> web.StreamResponse:
        o = self.options
        is_create = request.method == "POST" and template in _CREATE_ROUTES
        faulty = self.dice.applies(o.fault_scope, is_create)
        if faulty and self.dice.roll(o.drop_rate):
            return self._drop(request, "drop")
        if faulty and self.dice.roll(o.slow_rate):
            self.stats.count_fault("slow")
            await asyncio.sleep(o.slow_delay)
        if not self._authorized(request):
            return web.Response(status=401, body=_UNAUTHENTICATED,
                                content_type="application/problem+json")
        if is_create and (unpaid := self.credit.refused(request_token(request))) is not None:
            return unpaid
        admission = self.limits.admit(is_create)
        if admission.refused is not None:
            return admission.refused
        headers = admission.headers
        if faulty and self.dice.roll(o.error_rate):
            status = self.dice.choice(o.error_statuses)
            self.stats.count_fault(f"error_{status}")
            if status == 502:  # what a proxy in front of the API sends: HTML, not JSON
                return _gateway_error(502)
            return problem(status, "Internal server error" if status == 500 else "Unavailable",
                           "Simulated server error; please retry.")
        response = await self._guarded(handler, request)
        if response is not _DROPPED:
            response.headers.update(headers)
        return response

    async def _guarded(self, handler: Any, request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:  # aiohttp's own 404/405/413: answer as problem+json
            if exc.status == 413:
                return problem(413, "Content Too Large", "Files must be less than 100MB in size")
            return problem(exc.status, exc.reason, f"{exc.reason}: {request.method} {request.path}")

    def _authorized(self, request: web.Request) -> bool:
        token = request_token(request)
        if token is None:
            return False
        allowed = self.options.api_tokens
        return allowed is None or token in allowed

    def _drop(self, request: web.Request, kind: str) -> web.StreamResponse:
        self.stats.count_fault(kind)
        if request.transport is not None:
            request.transport.close()
        return _DROPPED

    # -- predictions -------------------------------------------------------------------------
    async def create_by_version(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        ref = body.get("version")
        if not isinstance(ref, str) or not ref:
            return self._invalid([InvalidField("required", "version", "version is required")])
        match = _VERSION_REF.match(ref)
        model: SimModel | None = None
        if match and match.group("version"):
            model = self.registry.by_version.get(match.group("version"))
            if model is not None and match.group("owner") and model.ref != (
                f"{match.group('owner')}/{match.group('name')}"
            ):
                model = None
        elif match and match.group("owner"):
            model = self.registry.models.get(f"{match.group('owner')}/{match.group('name')}")
            model = None if model is not None and model.official else model
        if model is None:
            return problem(404, "Not found", f"Version not found: {ref}")
        return await self._create(request, body, model, model.version_id, None)

    async def create_by_model(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        ref = f"{request.match_info['owner']}/{request.match_info['name']}"
        model = self.registry.models.get(ref)
        if model is None:
            return problem(404, "Not found", f"Model not found: {ref}")
        # Official models hide their version; others run their latest version.
        version = "hidden" if model.official else model.version_id
        return await self._create(request, body, model, version, None, official=model.official)

    async def create_by_deployment(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        ref = f"{request.match_info['owner']}/{request.match_info['name']}"
        deployment = self.registry.deployments.get(ref)
        if deployment is None:
            return problem(404, "Not found", f"Deployment not found: {ref}")
        model = self.registry.models[deployment.model]
        return await self._create(request, body, model, deployment.id, deployment)

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return problem(400, "Bad request", "The request body is not valid JSON")
        if not isinstance(body, dict):
            return problem(400, "Bad request", "The request body must be a JSON object")
        return body

    def _invalid(self, fields: list[InvalidField]) -> web.Response:
        detail = "".join(f"- {f.field}: {f.description}\n" for f in fields)
        return problem(422, "Input validation failed", detail,
                       invalid_fields=[vars(f) for f in fields])

    async def _create(
        self, request: web.Request, body: dict[str, Any], model: SimModel, version: str,
        deployment: SimDeployment | None, official: bool = False,
    ) -> web.StreamResponse:
        inputs = body.get("input")
        if not isinstance(inputs, dict):
            return self._invalid([InvalidField("required", "input", "input is required")])
        errors = model.validator.errors(inputs)
        if errors:
            return self._invalid(errors)
        o = self.options
        cancel_after: float | None = None
        if "Cancel-After" in request.headers:
            try:
                cancel_after = parse_cancel_after(request.headers["Cancel-After"])
            except CancelAfterError as exc:  # refused before anything is created or billed
                return problem(400, "Bad request", str(exc))
            # The spec's "minimum allowed duration is 5 seconds": a shorter one is raised to the
            # minimum (the prediction still runs, at most that long), not refused.
            cancel_after = max(cancel_after, o.cancel_after_minimum)
        loop = asyncio.get_running_loop()
        now = self.clock.now()
        prediction = Prediction(
            id=new_prediction_id(), seq=len(self.order), model=model, version=version,
            input=inputs, created=now, deployment=deployment.ref if deployment else None,
            stream=model.streams,
            reported_model=(internal_model_name(model.owner, model.name)
                            if official and o.official_internal_names else None),
            token=request_token(request),
        )
        self.predictions[prediction.id] = prediction
        self.order.append(prediction)
        # The time as the API writes it (whole microseconds), so a client's created_after of a
        # prediction's own created_at excludes exactly that prediction.
        created_wall = _parse_query_time(iso(self.clock.wall(now)))
        self.created_wall.append(created_wall)
        self.order_by_token.setdefault(prediction.token, []).append(prediction)
        self.created_wall_by_token.setdefault(prediction.token, []).append(created_wall)
        self.runs[model.ref] = self.runs.get(model.ref, 0) + 1
        target = {"model": model.ref, "version": version,
                  "deployment": deployment.ref if deployment else None}
        self.stats.count_create(canonical_json({**target, "input": inputs}), prediction.token)
        prediction.task = loop.create_task(self._run(prediction))
        if cancel_after is not None:
            # Real seconds from creation ("The lifetime is measured from when the prediction is
            # created", parameters_cancel_after_header), like every time the client sees.
            prediction.deadline = now + cancel_after
            loop.call_later(cancel_after, self._deadline_reached, prediction)
        faulty = self.dice.applies(o.fault_scope, True)
        if faulty and self.dice.roll(o.drop_after_create_rate):
            return self._drop(request, "drop_after_create")
        if faulty and self.dice.roll(o.error_after_create_rate):
            # The prediction exists, but the gateway in front of the API answers 5xx: for the
            # client the outcome is unknown (issue 10, point 1).
            status = self.dice.choice(o.error_after_create_statuses)
            self.stats.count_fault(f"error_after_create_{status}")
            if status in _GATEWAY_REASONS:
                return _gateway_error(status)
            return problem(status, "Internal server error", "Simulated server error; please retry.")
        headers: dict[str, str] = {}
        wait = _parse_wait(request.headers.get("Prefer"))
        if wait is not None:
            seconds, applied = wait
            headers["Preference-Applied"] = applied
            try:
                await asyncio.wait_for(prediction.done.wait(), seconds)
            except asyncio.TimeoutError:
                pass  # answer with the prediction as it is now
        return _json(self._prediction_json(prediction), 201, headers)

    def _prediction_json(self, prediction: Prediction) -> dict[str, Any]:
        return prediction.to_json(self.base_url, self.clock)

    def _visible(self, request: web.Request) -> Prediction | None:
        """The prediction the path names, if the request's account may see it (with
        ``separate_accounts`` only the token that created it may)."""
        p = self.predictions.get(request.match_info["prediction_id"])
        if p is not None and self.options.separate_accounts and p.token != request_token(request):
            return None
        return p

    async def get_prediction(self, request: web.Request) -> web.StreamResponse:
        p = self._visible(request)
        if p is None:
            return problem(404, "Not found", "Prediction not found")
        return _json(self._prediction_json(p))

    async def cancel_prediction(self, request: web.Request) -> web.StreamResponse:
        p = self._visible(request)
        if p is None:
            return problem(404, "Not found", "Prediction not found")
        self._cancel(p)
        return _json(self._prediction_json(p))

    async def list_predictions(self, request: web.Request) -> web.StreamResponse:
        # Newest first; the cursor is the position to continue below (see listing.page_of).
        start: int | None = None
        cursor = request.query.get("cursor")
        if cursor:
            try:
                start = int(base64.urlsafe_b64decode(cursor.encode() + b"==").decode())
            except (ValueError, binascii.Error):
                return problem(400, "Bad request", "Invalid cursor")
        after = before = None
        try:
            if request.query.get("created_after"):
                after = _parse_query_time(request.query["created_after"])
            if request.query.get("created_before"):
                before = _parse_query_time(request.query["created_before"])
        except ValueError:
            return problem(400, "Bad request", "created_after / created_before must be ISO 8601")
        order, created_wall = self.order, self.created_wall
        if self.options.separate_accounts:
            token = request_token(request)
            order = self.order_by_token.get(token, [])
            created_wall = self.created_wall_by_token.get(token, [])
        page = page_of(created_wall, start, self.options.page_size, after, before)
        self.stats.count_list_page()
        query = "".join(
            f"&{name}={urllib.parse.quote(request.query[name])}"
            for name in ("created_after", "created_before") if request.query.get(name)
        )
        return _json({
            "next": (self._page_url("/v1/predictions", page.next_start) + query
                     if page.next_start is not None else None),
            "previous": (self._page_url("/v1/predictions", page.previous_start) + query
                         if page.previous_start is not None else None),
            "results": [self._prediction_json(order[i]) for i in page.positions],
        })

    def _page_url(self, path: str, position: int) -> str:
        token = base64.urlsafe_b64encode(str(position).encode()).decode().rstrip("=")
        return f"{self.base_url}{path}?cursor={token}"


class SimServer:
    """A running simulator: ``url``, ``stats``, ``options``, ``models``; ``configure()``, ``close()``.

    Use :func:`replibatch.sim.serve` to make one. Usable as a context manager.
    """

    def __init__(
        self,
        options: SimOptions,
        models: list[SimModel],
        deployments: list[SimDeployment],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.registry = ModelRegistry(models, deployments)
        self.registry.setup()
        self.stats = Stats()
        self._app = _SimApp(options.checked(), self.registry, self.stats)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="replibatch-sim",
                                        daemon=True)
        self._closed = False
        self._thread.start()
        try:
            self.url: str = self._call(self._app.start(host, port))
        except BaseException:
            self._shutdown_loop()
            raise

    @property
    def models(self) -> dict[str, SimModel]:
        """Hosted models by ``owner/name`` (``hardware``, ``pricing``, ``version_id`` ...)."""
        return dict(self.registry.models)

    @property
    def credit(self) -> CreditAccounts:
        """Prepaid credit by token (``credit=``): ``remaining(token)``, ``charged()``."""
        return self._app.credit

    @property
    def trainings(self) -> TrainingService:
        """Trainings, created models and their counters (``trainings.stats``)."""
        return self._app.trainings

    @property
    def deployments(self) -> dict[str, SimDeployment]:
        return dict(self.registry.deployments)

    @property
    def options(self) -> SimOptions:
        """The options in force (immutable; change them with :meth:`configure`)."""
        return self._app.options

    def configure(self, **changes: Any) -> SimOptions:
        """Change options while the server runs (e.g. ``error_rate=0.3``); returns the new options.

        ``account="low-credit"`` (a name from :data:`~replibatch.sim.ACCOUNTS`) stands for its
        four rate fields. Raises TypeError for an unknown option and ValueError for a bad value
        or unknown account (nothing changes).
        """
        if "account" in changes:
            changes = {**account_options(changes.pop("account")), **changes}
        new = self._app.options.replace(**changes)
        if threading.current_thread() is self._thread:
            self._app.reconfigure(new)
        else:
            async def apply() -> None:
                self._app.reconfigure(new)
            self._call(apply())
        return new

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def close(self) -> None:
        """Stop serving: cancels running predictions and closes every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._call(self._app.stop())
        finally:
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        # The cleanup runs on the server's own loop thread, never on the caller's: the caller
        # may be inside a running event loop (a Jupyter cell), where run_until_complete fails.
        loop = self._loop

        async def finish() -> None:
            await loop.shutdown_asyncgens()
            await loop.shutdown_default_executor()

        try:
            if self._thread.is_alive() and not loop.is_closed():
                asyncio.run_coroutine_threadsafe(finish(), loop).result(timeout=30)
        finally:
            if not loop.is_closed():
                loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=30)
            if not self._thread.is_alive() and not loop.is_closed():
                loop.close()

    def __enter__(self) -> SimServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.url
        return f"<SimServer {state}>"

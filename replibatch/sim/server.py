"""The simulator's HTTP side: an aiohttp app speaking the Replicate API, on its own thread."""

from __future__ import annotations

import asyncio
import base64
import bisect
import binascii
import hashlib
import json
import math
import re
import threading
import urllib.parse
from typing import Any, Awaitable, Callable

from aiohttp import web

from replibatch.filestore import decode_data_uri
from replibatch.limiter import TokenBucket
from replibatch.sim.cog import FileInput, InvalidField, OutputFile, call_kwargs, materialize
from replibatch.sim.faults import FaultDice, SimOptions
from replibatch.sim.models import HARDWARE, ModelRegistry, SimDeployment, SimModel
from replibatch.sim.state import (
    Clock,
    FileRecord,
    Prediction,
    Stats,
    canonical_json,
    new_file_id,
    new_prediction_id,
)

__all__ = ["SimServer"]

# The exact body the real service sent for a bad token (cassette run__invalid-token).
_UNAUTHENTICATED = (
    b'{"title":"Unauthenticated","detail":"You did not pass a valid authentication token",'
    b'"status":401}\n'
)
_BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_CREATE_ROUTES = frozenset({
    "/v1/predictions",
    "/v1/models/{owner}/{name}/predictions",
    "/v1/deployments/{owner}/{name}/predictions",
})
_PREFER_WAIT = re.compile(r"^\s*wait(?:\s*=\s*(\d+))?\s*$")
_CANCEL_AFTER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_VERSION_REF = re.compile(r"^(?:(?P<owner>[^/:\s]+)/(?P<name>[^/:\s]+))?:?(?P<version>[0-9a-f]{64})?$")
_FILE_PATH = re.compile(r"/v1/files/(?P<id>[^/]+)(?:/download)?$")
_DELIVERY_PATH = re.compile(r"/delivery/(?P<key>[^/]+/[^/]+)$")
_MAX_UPLOAD = 100 * 1024 * 1024
_STREAM_TICK = 0.01  # streamed items due within this many seconds are released together
_DROPPED = web.Response(status=499)  # marker: the connection was closed without an answer


def problem(status: int, title: str, detail: str, **extra: Any) -> web.Response:
    """An RFC 7807 problem+json response."""
    slug = title.lower().replace(" ", "-")
    body = {"type": f"urn:replibatch:sim:{slug}", "title": title, "status": status,
            "detail": detail, **extra}
    return web.Response(status=status, text=json.dumps(body),
                        content_type="application/problem+json")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                        headers=headers)


def _parse_wait(value: str | None) -> tuple[float, str] | None:
    """(seconds, header value) for a valid ``Prefer: wait[=N]`` (N in 1..60), else None."""
    if not value:
        return None
    match = _PREFER_WAIT.match(value)
    if not match:
        return None
    seconds = int(match.group(1)) if match.group(1) else 60
    return (float(seconds), value.strip()) if 1 <= seconds <= 60 else None


def _parse_cancel_after(value: str | None) -> float | None:
    if not value:
        return None
    match = _CANCEL_AFTER.match(value)
    if not match:
        return None
    unit = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
    return float(match.group(1)) * unit


class _SimApp:
    """State and handlers; everything here runs on the server's event loop."""

    def __init__(self, options: SimOptions, registry: ModelRegistry, stats: Stats) -> None:
        self.options = options
        self.registry = registry
        self.stats = stats
        self.clock = Clock()
        self.dice = FaultDice(options.seed)
        self.base_url = ""
        self.predictions: dict[str, Prediction] = {}
        self.order: list[Prediction] = []
        self.files: dict[str, FileRecord] = {}
        self.blobs: dict[str, OutputFile] = {}
        self.runs: dict[str, int] = {}
        self.create_bucket: TokenBucket | None = None
        self.read_bucket: TokenBucket | None = None
        self._build_buckets()
        self.runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def application(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware], client_max_size=_MAX_UPLOAD + 65536)
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
        if self.runner is not None:
            await self.runner.cleanup()

    def reconfigure(self, options: SimOptions) -> None:
        old, self.options = self.options, options
        rate_fields = ("create_rate", "create_burst", "read_rate", "read_burst")
        if any(getattr(old, f) != getattr(options, f) for f in rate_fields):
            self._build_buckets()
        if old.seed != options.seed:
            self.dice.reseed(options.seed)

    def _build_buckets(self) -> None:
        o = self.options
        # Burst defaults to a minute's worth: the real service reports 599 left after one create.
        self.create_bucket = (
            TokenBucket(o.create_rate, o.create_burst or o.create_rate) if o.create_rate else None
        )
        self.read_bucket = (
            TokenBucket(o.read_rate, o.read_burst or o.read_rate) if o.read_rate else None
        )

    # -- the gate every request passes -------------------------------------------------------
    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        resource = request.match_info.route.resource
        template = resource.canonical if resource is not None else "<unmatched>"
        self.stats.count_request(f"{request.method} {template}")
        if not request.path.startswith("/v1/") or template.startswith("/v1/streams/"):
            response = await self._guarded(handler, request)
            self.stats.count_status(response.status)
            return response
        response = await self._api(request, handler, template)
        if response is not _DROPPED:
            self.stats.count_status(response.status)
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
        bucket = self.create_bucket if is_create else self.read_bucket
        headers: dict[str, str] = {}
        if bucket is not None:
            if not bucket.try_take():
                return self._throttled(bucket)
            full_in = bucket.seconds_until(bucket.burst) if bucket.burst >= 1 else 0.0
            headers = {
                "ratelimit-remaining": str(max(0, math.floor(bucket.available()))),
                "ratelimit-reset": str(max(1, math.ceil(full_in))),
            }
        if faulty and self.dice.roll(o.error_rate):
            status = self.dice.choice(o.error_statuses)
            self.stats.count_fault(f"error_{status}")
            if status == 502:  # what a proxy in front of the API sends: HTML, not JSON
                return web.Response(status=502, text=_BAD_GATEWAY_HTML, content_type="text/html")
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
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() not in ("bearer", "token") or not token:
            return False
        allowed = self.options.api_tokens
        return allowed is None or token in allowed

    def _throttled(self, bucket: TokenBucket) -> web.Response:
        o = self.options
        seconds = max(1, math.ceil(bucket.seconds_until(1.0)))
        body: dict[str, Any] = {
            "detail": f"Request was throttled. Your rate limit resets in ~{seconds}s.",
            "status": 429,
        }
        if o.retry_after_body:
            body["retry_after"] = seconds
        headers = {"ratelimit-remaining": "0", "ratelimit-reset": str(seconds)}
        if o.retry_after_header:
            headers["Retry-After"] = str(seconds)
        return web.Response(status=429, text=json.dumps(body),
                            content_type="application/problem+json", headers=headers)

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
        return await self._create(request, body, model, version, None)

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
        deployment: SimDeployment | None,
    ) -> web.StreamResponse:
        inputs = body.get("input")
        if not isinstance(inputs, dict):
            return self._invalid([InvalidField("required", "input", "input is required")])
        errors = model.validator.errors(inputs)
        if errors:
            return self._invalid(errors)
        loop = asyncio.get_running_loop()
        now = self.clock.now()
        prediction = Prediction(
            id=new_prediction_id(), seq=len(self.order), model=model, version=version,
            input=inputs, created=now, deployment=deployment.ref if deployment else None,
            stream=model.streams,
        )
        self.predictions[prediction.id] = prediction
        self.order.append(prediction)
        self.runs[model.ref] = self.runs.get(model.ref, 0) + 1
        target = {"model": model.ref, "version": version,
                  "deployment": deployment.ref if deployment else None}
        self.stats.count_create(canonical_json({**target, "input": inputs}))
        prediction.task = loop.create_task(self._run(prediction))
        cancel_after = _parse_cancel_after(request.headers.get("Cancel-After"))
        if cancel_after is not None:
            prediction.deadline = now + cancel_after
            loop.call_later(cancel_after, self._cancel, prediction)
        o = self.options
        if self.dice.applies(o.fault_scope, True) and self.dice.roll(o.drop_after_create_rate):
            return self._drop(request, "drop_after_create")
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

    async def _run(self, p: Prediction) -> None:
        o = self.options
        scale = o.time_scale
        try:
            if o.queue_delay:
                await asyncio.sleep(o.queue_delay * scale)
            p.status, p.started = "processing", self.clock.now()
            fail = self.dice.roll(o.failure_rate)
            loop = asyncio.get_running_loop()
            output, streams, nominal, tokens = await loop.run_in_executor(
                None, self._predict, p.model, p.input
            )
            p.token_counts = tokens
            duration = (o.predict_time if o.predict_time is not None else nominal) * scale
            if fail:
                await self._sleep_until(p.started + duration / 2)
                self.stats.count_fault("model_failure")
                self._finish(p, "failed", o.failure_message)
                return
            if streams and isinstance(output, list) and output:
                await self._play(p, output, duration)
            else:
                await self._sleep_until(p.started + duration)
                p.output = self._publish(p, output)
            self._finish(p, "succeeded")
        except asyncio.CancelledError:
            self._finish(p, "canceled")
            raise
        except Exception as exc:  # the model raised: the prediction fails, as on Replicate
            p.logs += f"Traceback (most recent call last):\n{type(exc).__name__}: {exc}\n"
            self._finish(p, "failed", str(exc) or type(exc).__name__)

    def _predict(self, model: SimModel, inputs: dict[str, Any]) -> tuple[Any, bool, float, Any]:
        """Runs on a worker thread: the model's CPU work, off the event loop."""
        kwargs = call_kwargs(model.predictor, inputs)
        for name in model.validator.uri_fields:
            if isinstance(kwargs.get(name), str):
                kwargs[name] = FileInput(self._fetch(kwargs[name]), name)
        output, streams = materialize(model.predictor.predict(**kwargs))
        nominal = model.predictor.nominal_seconds(kwargs, output)
        return output, streams, nominal, model.predictor.token_counts(kwargs, output)

    def _fetch(self, uri: str) -> bytes:
        """Bytes of a file input: a data: URI or a URL of this simulator's file stores.

        Raises ValueError when the URI cannot be read (the prediction then fails).
        """
        if uri.startswith("data:"):
            try:
                return decode_data_uri(uri)[0]
            except ValueError as exc:
                raise ValueError(f"could not decode data URI: {exc}") from None
        path = urllib.parse.urlsplit(uri).path
        if match := _FILE_PATH.search(path):
            record = self.files.get(match.group("id"))
            if record is not None:
                return record.data
        elif match := _DELIVERY_PATH.search(path):
            blob = self.blobs.get(match.group("key"))
            if blob is not None:
                return blob.data
        raise ValueError(f"could not download {uri}: not found (the simulator has no network)")

    async def _play(self, p: Prediction, items: list[Any], duration: float) -> None:
        """Release streamed items over the predict time, as a model yielding them would."""
        assert p.started is not None
        prefill = min(p.model.predictor.prefill_seconds * self.options.time_scale, duration)
        due = [p.started + prefill + (duration - prefill) * (i + 1) / len(items)
               for i in range(len(items))]
        p.output = []
        released = 0
        while released < len(items):
            now = self.clock.now()
            while released < len(items) and due[released] <= now + _STREAM_TICK / 2:
                p.output.append(items[released])
                released += 1
            if released and p.first_output is None:
                p.first_output = now
            p.notify()
            if released < len(items):
                await asyncio.sleep(max(_STREAM_TICK, due[released] - now))
        await self._sleep_until(p.started + duration)

    async def _sleep_until(self, deadline: float) -> None:
        delay = deadline - self.clock.now()
        if delay > 0:
            await asyncio.sleep(delay)

    def _publish(self, p: Prediction, output: Any) -> Any:
        """Store file outputs and replace them by their (expiring) URLs."""
        if isinstance(output, OutputFile):
            key = f"{p.id}/{output.name}"
            self.blobs[key] = output
            p.file_keys.append(key)
            return f"{self.base_url}/delivery/{key}"
        if isinstance(output, list):
            return [self._publish(p, item) for item in output]
        return output

    def _finish(self, p: Prediction, status: str, error: str | None = None) -> None:
        if p.terminal:
            return
        now = self.clock.now()
        p.status, p.error, p.completed = status, error, now
        metrics: dict[str, Any] = {"total_time": round(now - p.created, 6)}
        if p.started is not None:
            predict_time = now - p.started
            metrics["predict_time"] = round(predict_time, 6)
            tokens = p.token_counts
            if tokens is not None and status == "succeeded":
                metrics["input_token_count"], metrics["output_token_count"] = tokens
                if predict_time > 0:
                    metrics["tokens_per_second"] = round(tokens[1] / predict_time, 3)
                if p.first_output is not None:
                    metrics["time_to_first_token"] = round(p.first_output - p.started, 6)
        p.metrics = metrics
        p.done.set()
        p.notify()
        self.stats.count_finished()
        retention = self.options.retention * self.options.time_scale
        asyncio.get_running_loop().call_later(retention, self._expire, p)

    def _expire(self, p: Prediction) -> None:
        """Delete inputs, outputs, logs and files, as Replicate does an hour after completion."""
        p.data_removed, p.output, p.input, p.logs = True, None, {}, ""
        for key in p.file_keys:
            self.blobs.pop(key, None)
        p.file_keys.clear()

    def _cancel(self, p: Prediction) -> bool:
        if p.terminal:
            return False
        self._finish(p, "canceled")
        if p.task is not None:
            p.task.cancel()
        self.stats.count_cancel()
        return True

    async def get_prediction(self, request: web.Request) -> web.StreamResponse:
        p = self.predictions.get(request.match_info["prediction_id"])
        if p is None:
            return problem(404, "Not found", "Prediction not found")
        return _json(self._prediction_json(p))

    async def cancel_prediction(self, request: web.Request) -> web.StreamResponse:
        p = self.predictions.get(request.match_info["prediction_id"])
        if p is None:
            return problem(404, "Not found", "Prediction not found")
        self._cancel(p)
        return _json(self._prediction_json(p))

    async def list_predictions(self, request: web.Request) -> web.StreamResponse:
        # Newest first; the cursor is the sequence number to continue below (O(page) per call).
        start = len(self.order)
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
        if before is not None and not cursor:
            # The service filters before paging (its first page is the newest prediction
            # created before `created_before`), so pages of newer predictions cost nothing.
            start = bisect.bisect_left(self.order, before, key=lambda p: self.clock.wall(p.created))
        start = max(0, min(start, len(self.order)))
        stop = max(0, start - self.options.page_size)
        chosen = [self.order[i] for i in range(start - 1, stop - 1, -1)]
        if after is not None:
            chosen = [p for p in chosen if self.clock.wall(p.created) > after]
            # Creation order is time order: once a page reaches past `after`, nothing older is due.
            if stop > 0 and self.clock.wall(self.order[stop].created) <= after:
                stop = 0
        if before is not None:
            chosen = [p for p in chosen if self.clock.wall(p.created) < before]
        page = [self._prediction_json(p) for p in chosen]
        query = "".join(
            f"&{name}={request.query[name]}" for name in ("created_after", "created_before")
            if request.query.get(name)
        )
        return _json({
            "next": self._page_url("/v1/predictions", stop) + query if stop > 0 else None,
            "previous": (
                self._page_url("/v1/predictions", min(len(self.order), start + self.options.page_size))
                if start < len(self.order) else None
            ),
            "results": page,
        })

    def _page_url(self, path: str, position: int) -> str:
        token = base64.urlsafe_b64encode(str(position).encode()).decode().rstrip("=")
        return f"{self.base_url}{path}?cursor={token}"

    # -- models, versions, deployments, hardware, account -------------------------------------
    def _version_json(self, model: SimModel) -> dict[str, Any]:
        return {"id": model.version_id, "created_at": model.created_at,
                "cog_version": model.cog_version, "openapi_schema": model.openapi_schema}

    def _model_json(self, model: SimModel) -> dict[str, Any]:
        return {
            "url": f"{self.base_url}/{model.ref}",
            "owner": model.owner,
            "name": model.name,
            "description": model.description or None,
            "visibility": "public",
            "is_official": model.official,
            "github_url": None,
            "paper_url": None,
            "license_url": None,
            "run_count": self.runs.get(model.ref, 0),
            "cover_image_url": None,
            "default_example": None,
            "latest_version": None if model.official else self._version_json(model),
        }

    def _model(self, request: web.Request) -> SimModel | None:
        return self.registry.models.get(f"{request.match_info['owner']}/{request.match_info['name']}")

    async def list_models(self, request: web.Request) -> web.StreamResponse:
        results = [self._model_json(m) for m in self.registry.models.values()]
        return _json({"next": None, "previous": None, "results": results})

    async def get_model(self, request: web.Request) -> web.StreamResponse:
        model = self._model(request)
        if model is None:
            return problem(404, "Not found", f"Model not found: {request.match_info['owner']}/"
                           f"{request.match_info['name']}")
        return _json(self._model_json(model))

    async def list_versions(self, request: web.Request) -> web.StreamResponse:
        model = self._model(request)
        if model is None:
            return problem(404, "Not found", "Model not found")
        results = [] if model.official else [self._version_json(model)]
        return _json({"next": None, "previous": None, "results": results})

    async def get_version(self, request: web.Request) -> web.StreamResponse:
        model = self._model(request)
        if model is None or model.official or request.match_info["version_id"] != model.version_id:
            return problem(404, "Not found", "Version not found")
        return _json(self._version_json(model))

    async def get_deployment(self, request: web.Request) -> web.StreamResponse:
        ref = f"{request.match_info['owner']}/{request.match_info['name']}"
        deployment = self.registry.deployments.get(ref)
        if deployment is None:
            return problem(404, "Not found", f"Deployment not found: {ref}")
        model = self.registry.models[deployment.model]
        return _json({
            "owner": deployment.owner,
            "name": deployment.name,
            "current_release": {
                "number": 1,
                "model": model.ref,
                "version": model.version_id,
                "created_at": model.created_at,
                "created_by": {"type": "organization", "username": deployment.owner,
                               "name": deployment.owner},
                "configuration": {
                    "hardware": deployment.hardware,
                    "min_instances": deployment.min_instances,
                    "max_instances": deployment.max_instances,
                },
            },
        })

    async def list_hardware(self, request: web.Request) -> web.StreamResponse:
        return _json([{"sku": sku, "name": name} for sku, name in HARDWARE.items()])

    async def get_account(self, request: web.Request) -> web.StreamResponse:
        return _json({"type": "user", "username": "replibatch-sim", "name": "Replibatch Simulator"})

    # -- files -------------------------------------------------------------------------------
    async def create_file(self, request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > _MAX_UPLOAD + 65536:
            return problem(413, "Content Too Large", "Files must be less than 100MB in size")
        form = await request.post()
        content = form.get("content")
        if content is None or not hasattr(content, "file"):
            return problem(422, "Invalid request", "content is required (multipart file field)")
        data = content.file.read()
        if len(data) > _MAX_UPLOAD:
            return problem(413, "Content Too Large", "Files must be less than 100MB in size")
        metadata: Any = {}
        if isinstance(form.get("metadata"), str):
            try:
                metadata = json.loads(str(form["metadata"]))
            except ValueError:
                return problem(422, "Invalid request", "metadata must be a JSON object")
        if not isinstance(metadata, dict):
            return problem(422, "Invalid request", "metadata must be a JSON object")
        name = str(form.get("filename") or content.filename or "file")
        content_type = str(form.get("type") or content.content_type or "application/octet-stream")
        record = FileRecord(
            id=new_file_id(), name=name, content_type=content_type, data=data, metadata=metadata,
            created=self.clock.now(), sha256=hashlib.sha256(data).hexdigest(),
            md5=hashlib.md5(data).hexdigest(),  # noqa: S324 - an etag, as the real API sends
        )
        self.files[record.id] = record
        return _json(record.to_json(self.base_url, self.clock), 201)

    async def list_files(self, request: web.Request) -> web.StreamResponse:
        results = [f.to_json(self.base_url, self.clock) for f in reversed(self.files.values())]
        return _json({"next": None, "previous": None, "results": results})

    def _file(self, request: web.Request) -> FileRecord | None:
        return self.files.get(request.match_info["file_id"])

    async def get_file(self, request: web.Request) -> web.StreamResponse:
        record = self._file(request)
        if record is None:
            return problem(404, "Not found", "File not found")
        return _json(record.to_json(self.base_url, self.clock))

    async def delete_file(self, request: web.Request) -> web.StreamResponse:
        if self.files.pop(request.match_info["file_id"], None) is None:
            return problem(404, "Not found", "File not found")
        return web.Response(status=204)

    async def download_file(self, request: web.Request) -> web.StreamResponse:
        record = self._file(request)
        if record is None:
            return problem(404, "Not found", "File not found")
        return web.Response(body=record.data, content_type=record.content_type)

    async def delivery(self, request: web.Request) -> web.StreamResponse:
        key = f"{request.match_info['prediction_id']}/{request.match_info['filename']}"
        blob = self.blobs.get(key)
        if blob is None:  # never existed, or deleted after the retention period
            return web.Response(status=404, text="Not Found")
        return web.Response(body=blob.data, content_type=blob.content_type)

    # -- server-sent events ------------------------------------------------------------------
    async def stream_prediction(self, request: web.Request) -> web.StreamResponse:
        p = self.predictions.get(request.match_info["prediction_id"])
        if p is None or not p.stream:
            return problem(404, "Not found", "Stream not found")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-store"})
        await response.prepare(request)
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
        return response


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
    def deployments(self) -> dict[str, SimDeployment]:
        return dict(self.registry.deployments)

    @property
    def options(self) -> SimOptions:
        """The options in force (immutable; change them with :meth:`configure`)."""
        return self._app.options

    def configure(self, **changes: Any) -> SimOptions:
        """Change options while the server runs (e.g. ``error_rate=0.3``); returns the new options.

        Raises TypeError for an unknown option and ValueError for a bad value (nothing changes).
        """
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


def _parse_query_time(text: str) -> float:
    """Epoch seconds of an ISO 8601 query value (``Z`` or an offset; naive means UTC)."""
    from datetime import datetime, timezone

    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "+"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()

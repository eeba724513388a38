"""The simulator's prediction routes: create (by version, official model, deployment), get,
cancel and list. They parse and answer requests; running a prediction is `Lifecycle`'s.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import urllib.parse
from typing import Any

from aiohttp import web

from replibatch.sim.cog import InvalidField
from replibatch.sim.context import SimContext
from replibatch.sim.credit import request_token
from replibatch.sim.gate import Gate
from replibatch.sim.habits import CancelAfterError, internal_model_name, parse_cancel_after
from replibatch.sim.lifecycle import Lifecycle
from replibatch.sim.listing import page_of
from replibatch.sim.models import SimDeployment, SimModel
from replibatch.sim.responses import GATEWAY_REASONS, gateway_error, parse_query_time, problem
from replibatch.sim.responses import json_response as _json
from replibatch.sim.state import Prediction, canonical_json, new_prediction_id

__all__ = ["PredictionRoutes", "invalid", "json_body"]

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


async def json_body(request: web.Request) -> dict[str, Any] | web.Response:
    """The request's JSON object, or the 400 to answer when it is not one."""
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return problem(400, "Bad request", "The request body is not valid JSON")
    if not isinstance(body, dict):
        return problem(400, "Bad request", "The request body must be a JSON object")
    return body


def invalid(fields: list[InvalidField]) -> web.Response:
    """The 422 "Input validation failed" naming each bad field."""
    detail = "".join(f"- {f.field}: {f.description}\n" for f in fields)
    return problem(422, "Input validation failed", detail, invalid_fields=[vars(f) for f in fields])


class PredictionRoutes:
    """Create, get, cancel and list predictions of one simulator."""

    def __init__(self, ctx: SimContext, gate: Gate, lifecycle: Lifecycle) -> None:
        self.ctx = ctx
        self.gate = gate
        self.lifecycle = lifecycle

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/predictions", self.create_by_version)
        router.add_get("/v1/predictions", self.list_predictions)
        router.add_get("/v1/predictions/{prediction_id}", self.get_prediction)
        router.add_post("/v1/predictions/{prediction_id}/cancel", self.cancel_prediction)
        router.add_post("/v1/models/{owner}/{name}/predictions", self.create_by_model)
        router.add_post("/v1/deployments/{owner}/{name}/predictions", self.create_by_deployment)

    # -- create ------------------------------------------------------------------------------
    async def create_by_version(self, request: web.Request) -> web.StreamResponse:
        body = await json_body(request)
        if isinstance(body, web.Response):
            return body
        ref = body.get("version")
        if not isinstance(ref, str) or not ref:
            return invalid([InvalidField("required", "version", "version is required")])
        registry = self.ctx.registry
        match = _VERSION_REF.match(ref)
        model: SimModel | None = None
        if match and match.group("version"):
            model = registry.by_version.get(match.group("version"))
            if model is not None and match.group("owner") and model.ref != (
                f"{match.group('owner')}/{match.group('name')}"
            ):
                model = None
        elif match and match.group("owner"):
            model = registry.models.get(f"{match.group('owner')}/{match.group('name')}")
            model = None if model is not None and model.official else model
        if model is None:
            return problem(404, "Not found", f"Version not found: {ref}")
        return await self._create(request, body, model, model.version_id, None)

    async def create_by_model(self, request: web.Request) -> web.StreamResponse:
        body = await json_body(request)
        if isinstance(body, web.Response):
            return body
        ref = f"{request.match_info['owner']}/{request.match_info['name']}"
        model = self.ctx.registry.models.get(ref)
        if model is None:
            return problem(404, "Not found", f"Model not found: {ref}")
        # Official models hide their version; others run their latest version.
        version = "hidden" if model.official else model.version_id
        return await self._create(request, body, model, version, None, official=model.official)

    async def create_by_deployment(self, request: web.Request) -> web.StreamResponse:
        body = await json_body(request)
        if isinstance(body, web.Response):
            return body
        ref = f"{request.match_info['owner']}/{request.match_info['name']}"
        deployment = self.ctx.registry.deployments.get(ref)
        if deployment is None:
            return problem(404, "Not found", f"Deployment not found: {ref}")
        model = self.ctx.registry.models[deployment.model]
        return await self._create(request, body, model, deployment.id, deployment)

    async def _create(
        self, request: web.Request, body: dict[str, Any], model: SimModel, version: str,
        deployment: SimDeployment | None, official: bool = False,
    ) -> web.StreamResponse:
        inputs = body.get("input")
        if not isinstance(inputs, dict):
            return invalid([InvalidField("required", "input", "input is required")])
        errors = model.validator.errors(inputs)
        if errors:
            return invalid(errors)
        o, ctx = self.ctx.options, self.ctx
        cancel_after: float | None = None
        if "Cancel-After" in request.headers:
            try:
                cancel_after = parse_cancel_after(request.headers["Cancel-After"])
            except CancelAfterError as exc:  # refused before anything is created or billed
                return problem(400, "Bad request", str(exc))
            # The spec's "minimum allowed duration is 5 seconds": a shorter one is raised to the
            # minimum (the prediction still runs, at most that long), not refused.
            cancel_after = max(cancel_after, o.cancel_after_minimum)
        prediction = Prediction(
            id=new_prediction_id(), seq=len(self.lifecycle.book), model=model, version=version,
            input=inputs, created=ctx.clock.now(), deployment=deployment.ref if deployment else None,
            stream=model.streams,
            reported_model=(internal_model_name(model.owner, model.name)
                            if official and o.official_internal_names else None),
            token=request_token(request),
        )
        target = {"model": model.ref, "version": version,
                  "deployment": deployment.ref if deployment else None}
        ctx.stats.count_create(canonical_json({**target, "input": inputs}), prediction.token)
        self.lifecycle.start(prediction, cancel_after)
        faulty = ctx.dice.applies(o.fault_scope, True)
        if faulty and ctx.dice.roll(o.drop_after_create_rate):
            return self.gate.drop(request, "drop_after_create")
        if faulty and ctx.dice.roll(o.error_after_create_rate):
            # The prediction exists, but the gateway in front of the API answers 5xx: for the
            # client the outcome is unknown (issue 10, point 1).
            status = ctx.dice.choice(o.error_after_create_statuses)
            ctx.stats.count_fault(f"error_after_create_{status}")
            if status in GATEWAY_REASONS:
                return gateway_error(status)
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
        return _json(self._json(prediction), 201, headers)

    # -- read and cancel ---------------------------------------------------------------------
    def _json(self, prediction: Prediction) -> dict[str, Any]:
        return prediction.to_json(self.ctx.base_url, self.ctx.clock)

    def _visible(self, request: web.Request) -> Prediction | None:
        """The prediction the path names, if the request's account may see it (with
        ``separate_accounts`` only the token that created it may: the spec's predictions.list
        lists "all predictions created by the user or organization associated with the
        provided API token")."""
        p = self.lifecycle.book.get(request.match_info["prediction_id"])
        if p is not None and self.ctx.options.separate_accounts and p.token != request_token(request):
            return None
        return p

    async def get_prediction(self, request: web.Request) -> web.StreamResponse:
        p = self._visible(request)
        if p is None:
            return problem(404, "Not found", "Prediction not found")
        return _json(self._json(p))

    async def cancel_prediction(self, request: web.Request) -> web.StreamResponse:
        p = self._visible(request)
        if p is None:
            return problem(404, "Not found", "Prediction not found")
        self.lifecycle.cancel(p)
        return _json(self._json(p))

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
                after = parse_query_time(request.query["created_after"])
            if request.query.get("created_before"):
                before = parse_query_time(request.query["created_before"])
        except ValueError:
            return problem(400, "Bad request", "created_after / created_before must be ISO 8601")
        book = self.lifecycle.book
        order, created_wall = book.order, book.created_wall
        if self.ctx.options.separate_accounts:
            order, created_wall = book.account(request_token(request))
        page = page_of(created_wall, start, self.ctx.options.page_size, after, before)
        self.ctx.stats.count_list_page()
        query = "".join(
            f"&{name}={urllib.parse.quote(request.query[name])}"
            for name in ("created_after", "created_before") if request.query.get(name)
        )
        return _json({
            "next": (self._page_url(page.next_start) + query
                     if page.next_start is not None else None),
            "previous": (self._page_url(page.previous_start) + query
                         if page.previous_start is not None else None),
            "results": [self._json(order[i]) for i in page.positions],
        })

    def _page_url(self, position: int) -> str:
        token = base64.urlsafe_b64encode(str(position).encode()).decode().rstrip("=")
        return f"{self.ctx.base_url}/v1/predictions?cursor={token}"

"""The gate every simulator request passes: counting, faults before the handler, auth, credit and
rate limits, then the handler itself with aiohttp's own errors answered as problem+json.

Order: a dropped or slow connection happens before anything else; then the token (401 with the
body recorded in cassette run__invalid-token), a spent account's creates (402, sim/credit.py),
the buckets (429, sim/ratelimit.py), and an injected 5xx. Streams (``/v1/streams/``) and output
files (``/delivery/``, served by ``replicate.delivery`` on the real service per the spec's
predictions.get) pass no gate: no token, no limits, no faults here (delivery plays its own CDN
faults, sim/delivery.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from replibatch.sim.context import SimContext
from replibatch.sim.credit import request_token
from replibatch.sim.faults import SimOptions
from replibatch.sim.ratelimit import Limits
from replibatch.sim.responses import DROPPED, gateway_error, problem

__all__ = ["CREATE_ROUTES", "Gate"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The exact body the real service sent for a bad token (cassette run__invalid-token).
_UNAUTHENTICATED = (
    b'{"title":"Unauthenticated","detail":"You did not pass a valid authentication token",'
    b'"status":401}\n'
)
# The create-prediction routes: the 600/min bucket, and the "create" fault scope.
CREATE_ROUTES = frozenset({
    "/v1/predictions",
    "/v1/models/{owner}/{name}/predictions",
    "/v1/deployments/{owner}/{name}/predictions",
})


class Gate:
    """Auth, credit, rate limits and the faults decided before a handler; owns the buckets."""

    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx
        self.limits = Limits(ctx.options)

    def reconfigure(self, options: SimOptions) -> None:
        """Follow changed rate limits (the tokens already earned are kept)."""
        self.limits.reconfigure(options)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The aiohttp middleware: counts every request and its status, gates the API's."""
        stats = self.ctx.stats
        resource = request.match_info.route.resource
        template = resource.canonical if resource is not None else "<unmatched>"
        stats.count_request(f"{request.method} {template}", request_token(request))
        if not request.path.startswith("/v1/") or template.startswith("/v1/streams/"):
            response = await self.guarded(handler, request)
            stats.count_status(response.status)
            return response
        response = await self._api(request, handler, template)
        if response is not DROPPED:
            is_create = request.method == "POST" and template in CREATE_ROUTES
            stats.count_status(response.status, is_create)
        return response

    async def _api(self, request: web.Request, handler: Handler, template: str) -> web.StreamResponse:
        o, dice, stats = self.ctx.options, self.ctx.dice, self.ctx.stats
        is_create = request.method == "POST" and template in CREATE_ROUTES
        faulty = dice.applies(o.fault_scope, is_create)
        if faulty and dice.roll(o.drop_rate):
            return self.drop(request, "drop")
        if faulty and dice.roll(o.slow_rate):
            stats.count_fault("slow")
            await asyncio.sleep(o.slow_delay)
        if not self.authorized(request):
            return web.Response(status=401, body=_UNAUTHENTICATED,
                                content_type="application/problem+json")
        if is_create and (unpaid := self.ctx.credit.refused(request_token(request))) is not None:
            return unpaid
        admission = self.limits.admit(is_create)
        if admission.refused is not None:
            return admission.refused
        headers = admission.headers
        if faulty and dice.roll(o.error_rate):
            status = dice.choice(o.error_statuses)
            stats.count_fault(f"error_{status}")
            if status == 502:  # what a proxy in front of the API sends: HTML, not JSON
                return gateway_error(502)
            return problem(status, "Internal server error" if status == 500 else "Unavailable",
                           "Simulated server error; please retry.")
        response = await self.guarded(handler, request)
        if response is not DROPPED:
            response.headers.update(headers)
        return response

    @staticmethod
    async def guarded(handler: Handler, request: web.Request) -> web.StreamResponse:
        """The handler's response; aiohttp's own 404/405/413 answered as problem+json."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status == 413:
                return problem(413, "Content Too Large", "Files must be less than 100MB in size")
            return problem(exc.status, exc.reason, f"{exc.reason}: {request.method} {request.path}")

    def authorized(self, request: web.Request) -> bool:
        """A Bearer/Token header is present and, when ``api_tokens`` is set, one of them."""
        token = request_token(request)
        if token is None:
            return False
        allowed = self.ctx.options.api_tokens
        return allowed is None or token in allowed

    def drop(self, request: web.Request, kind: str) -> web.StreamResponse:
        """Close the connection without an answer (counted as fault `kind`); returns the marker
        the middleware recognises, so no status is counted for it."""
        self.ctx.stats.count_fault(kind)
        if request.transport is not None:
            request.transport.close()
        return DROPPED

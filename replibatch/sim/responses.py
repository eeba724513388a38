"""Response builders shared by the simulator's routes (problem+json, JSON, gateway HTML)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

__all__ = ["DROPPED", "GATEWAY_REASONS", "gateway_error", "json_response", "parse_query_time",
           "problem"]

# What a proxy in front of the API (cloudflare, as the recorded Server headers say) sends for
# 502/503/504: HTML, not JSON.
_GATEWAY_HTML = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    "</body>\r\n</html>\r\n"
)
GATEWAY_REASONS = {502: "Bad Gateway", 503: "Service Temporarily Unavailable",
                   504: "Gateway Time-out"}
DROPPED = web.Response(status=499)  # marker: the connection was closed without an answer


def problem(status: int, title: str, detail: str, **extra: Any) -> web.Response:
    """An RFC 7807 problem+json response."""
    slug = title.lower().replace(" ", "-")
    body = {"type": f"urn:replibatch:sim:{slug}", "title": title, "status": status,
            "detail": detail, **extra}
    return web.Response(status=status, text=json.dumps(body),
                        content_type="application/problem+json")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                        headers=headers)



def gateway_error(status: int) -> web.Response:
    """The proxy's HTML error page for ``status`` (502, 503 or 504)."""
    reason = GATEWAY_REASONS.get(status, "Server Error")
    return web.Response(status=status, text=_GATEWAY_HTML.format(status=status, reason=reason),
                        content_type="text/html")


def parse_query_time(text: str) -> float:
    """Epoch seconds of an ISO 8601 query value (``Z`` or an offset; naive means UTC).

    Raises ValueError when ``text`` is not ISO 8601.
    """
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "+"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()

"""What a server's answer says about its rate limit: retry hints and ``ratelimit-*`` headers.

Pure parsing; never raises for malformed input. Replicate's 429 carries ``Retry-After`` and a
``detail`` of "Request was throttled. Expected available in 1 second." (recorded in
``shared/replicate-api/cassettes``); other servers send only a ``retry_after`` body field or
"resets in ~30s".
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = ["header", "number", "retry_after_seconds"]

_DURATION_RE = re.compile(
    r"(?:~|\bin\s+~?)\s*(\d+(?:\.\d+)?)\s*"
    r"(ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?)\b",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def retry_after_seconds(
    headers: Mapping[str, Any] | None, body: object, *, now: datetime | None = None
) -> float | None:
    """The server's "retry after" hint in seconds, or None when it gave nothing usable.

    Looks, in order, at the ``Retry-After`` header (seconds or an HTTP date, compared with `now`,
    default the current UTC time), a ``retry_after`` field of the JSON body, and a duration in
    the body's ``detail`` ("resets in ~30s", "~1m", "available in 2 seconds"). `body` may be a
    decoded dict, JSON text/bytes or plain text. Never raises for malformed input.
    """
    given = header(headers, "retry-after")
    if given is not None:
        seconds = number(given)
        if seconds is None:
            try:
                moment = parsedate_to_datetime(given.strip())
            except (TypeError, ValueError, IndexError):
                moment = None
            if moment is not None:
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=timezone.utc)
                seconds = max(0.0, (moment - (now or datetime.now(timezone.utc))).total_seconds())
        if seconds is not None:
            return seconds

    if isinstance(body, (bytes, bytearray)):
        body = bytes(body).decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            body = {"detail": body}
    if not isinstance(body, Mapping):
        return None
    seconds = number(body.get("retry_after"))
    if seconds is not None:
        return seconds
    detail = body.get("detail")
    if isinstance(detail, str):
        match = _DURATION_RE.search(detail)
        if match:
            unit = match.group(2).lower()
            scale = _UNIT_SECONDS["ms" if unit.startswith(("ms", "milli")) else unit[0]]
            return float(match.group(1)) * scale
    return None


def header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    """The header `name` (lower case) from a mapping of any case, as text, or None."""
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        # Plain dicts are case-sensitive; httpx.Headers is not.
        for key, item in headers.items():
            if isinstance(key, str) and key.lower() == name:
                value = item
                break
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return None if value is None else str(value)


def number(value: Any) -> float | None:
    """A non-negative finite number from a header or body value, or None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        seconds = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None

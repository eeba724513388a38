"""The simulator's rate limits: one token bucket for creates, one for everything else.

What the real service does, and where it is written down:

- 600 create-prediction requests a minute, 3,000 a minute for every other endpoint, "short
  bursts allowed, much lower when account credit is low" (shared/replicate-api/README.md).
- After one create the recordings show ``ratelimit-remaining: 599`` and ``ratelimit-reset: 1``
  (cassettes ``predictions-create.yaml``), so the default bucket holds a minute's worth.
- A 429 body is ``{"detail": "Request was throttled. Your rate limit resets in ~30s.",
  "status": 429}``, sometimes with ``retry_after``; a ``Retry-After`` header is not guaranteed
  (same README). The simulator computes the ``~Ns`` from its bucket.

:data:`ACCOUNTS` are presets for the kinds of account the client must cope with.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from replibatch._engine.limiter import TokenBucket
from replibatch.sim.faults import SimOptions

__all__ = ["ACCOUNTS", "Limits", "account_options"]

_RATE_FIELDS = ("create_rate", "create_burst", "read_rate", "read_burst")

ACCOUNTS: dict[str, dict[str, float | None]] = {
    # Replicate's documented defaults; the burst is a minute's worth (599 left after one create).
    "default": {"create_rate": 600.0, "create_burst": None, "read_rate": 3000.0, "read_burst": None},
    # "much lower when account credit is low": 6 creates a minute, one at a time.
    "low-credit": {"create_rate": 6.0, "create_burst": 1.0, "read_rate": 3000.0, "read_burst": None},
    # A fast account whose bucket is small: 6,000/min but only 20 at once (issue 11's server).
    "small-burst": {"create_rate": 6000.0, "create_burst": 20.0, "read_rate": 3000.0,
                    "read_burst": None},
    # No limits at all (and so no ratelimit-* headers).
    "unlimited": {"create_rate": None, "create_burst": None, "read_rate": None, "read_burst": None},
}


def account_options(account: str) -> dict[str, float | None]:
    """The four rate fields of an account preset; raises ValueError for an unknown name."""
    try:
        return dict(ACCOUNTS[account])
    except KeyError:
        raise ValueError(
            f"unknown account {account!r}; known: {', '.join(sorted(ACCOUNTS))}"
        ) from None


@dataclass(frozen=True)
class Admission:
    """The gate's answer for one request: refused (a ready 429) or the headers to add."""

    refused: web.Response | None
    headers: dict[str, str]


class Limits:
    """The create and read buckets of one simulator, following its options as they change."""

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self.create: TokenBucket | None = None
        self.read: TokenBucket | None = None
        self.create, self.read = self._bucket(None, "create"), self._bucket(None, "read")

    def _bucket(self, current: TokenBucket | None, kind: str) -> TokenBucket | None:
        rate: float | None = getattr(self.options, f"{kind}_rate")
        burst: float | None = getattr(self.options, f"{kind}_burst")
        if rate is None:
            return None
        size = burst or rate  # default: a minute's worth, as the recorded 599-after-one shows
        if current is None:
            return TokenBucket(rate, size)
        # A limit changed mid-run (an account changing tier) keeps the tokens already earned,
        # capped to the new size, rather than handing out a fresh full bucket.
        current.set_rate(rate, size)
        return current

    def reconfigure(self, options: SimOptions) -> None:
        old, self.options = self.options, options
        if any(getattr(old, f) != getattr(options, f) for f in _RATE_FIELDS):
            self.create = self._bucket(self.create, "create")
            self.read = self._bucket(self.read, "read")

    def admit(self, is_create: bool) -> Admission:
        """Take a token for a request, or build the 429 the real service would send."""
        bucket = self.create if is_create else self.read
        if bucket is None:
            return Admission(None, {})
        if not bucket.try_take():
            return Admission(self._throttled(bucket), {})
        if not self.options.ratelimit_headers:
            return Admission(None, {})
        full_in = bucket.seconds_until(bucket.burst) if bucket.burst >= 1 else 0.0
        return Admission(None, {
            "ratelimit-remaining": str(max(0, math.floor(bucket.available()))),
            "ratelimit-reset": str(max(1, math.ceil(full_in))),
        })

    def _throttled(self, bucket: TokenBucket) -> web.Response:
        o = self.options
        # "~Ns": when the next request would be accepted, rounded up to whole seconds.
        seconds = max(1, math.ceil(bucket.seconds_until(1.0)))
        body: dict[str, Any] = {
            "detail": f"Request was throttled. Your rate limit resets in ~{seconds}s.",
            "status": 429,
        }
        if o.retry_after_body:
            body["retry_after"] = seconds
        headers: dict[str, str] = {}
        if o.ratelimit_headers:
            headers = {"ratelimit-remaining": "0", "ratelimit-reset": str(seconds)}
        if o.retry_after_header:
            headers["Retry-After"] = str(seconds)
        return web.Response(status=429, text=json.dumps(body),
                            content_type="application/problem+json", headers=headers)

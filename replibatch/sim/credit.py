"""Account credit per token: a token whose credit is spent gets 402 on every create.

Replicate answers a create from an account that cannot pay with 402 and a problem body; the one
recorded publicly (replicate/replicate-javascript#342) is::

    {"title":"Billing required","detail":"You need to set up billing to run this model. Go to
     https://replicate.com/account/billing#billing to set it up. ...","status":402}

The simulator plays a prepaid account: ``serve(credit={"r8_a": 0.05})`` gives token ``r8_a``
five cents. Each finished prediction is charged what replibatch's own price table says it cost
(the same figure the client's ``cost_usd`` shows), to the token that created it; once a token's
balance is at or below zero its creates are refused. Tokens not named have unlimited credit.
Reads (get, list, cancel) stay allowed, as billing does not stop an account from looking.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from typing import Any

from aiohttp import web

__all__ = ["CreditAccounts", "payment_required", "request_token"]

_BILLING_DETAIL = (
    "You need to set up billing to run this model. Go to "
    "https://replicate.com/account/billing#billing to set it up. If you have recently set up "
    "billing, please wait a few minutes before trying again."
)


def request_token(request: web.Request) -> str | None:
    """The token of a ``Bearer``/``Token`` Authorization header, or None."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() not in ("bearer", "token") or not token:
        return None
    return token


def payment_required() -> web.Response:
    """The 402 problem body as recorded (see the module docstring)."""
    body = {"title": "Billing required", "detail": _BILLING_DETAIL, "status": 402}
    return web.Response(status=402, text=json.dumps(body), content_type="application/problem+json")


class CreditAccounts:
    """Balances in USD by token (None: nobody is limited). Thread-safe for reads from tests."""

    def __init__(self, credit: Mapping[str, float] | None) -> None:
        self._lock = threading.Lock()
        self._balances: dict[str, float] = {}
        self._charged: dict[str, float] = {}
        self.reconfigure(credit)

    def reconfigure(self, credit: Mapping[str, float] | None) -> None:
        """Set the starting credit of each named token; what was charged so far still counts."""
        with self._lock:
            self._balances = {token: float(usd) for token, usd in (credit or {}).items()}

    def refused(self, token: str | None) -> web.Response | None:
        """The 402 for a create by `token` when its credit is spent, else None."""
        with self._lock:
            if token is None or token not in self._balances:
                return None
            left = self._balances[token] - self._charged.get(token, 0.0)
        return payment_required() if left <= 0 else None

    def charge(self, token: str | None, usd: float) -> None:
        """Charge a finished prediction's cost to `token` (NaN or unknown tokens: nothing)."""
        if token is None or math.isnan(usd) or usd <= 0:
            return
        with self._lock:
            self._charged[token] = self._charged.get(token, 0.0) + usd

    def remaining(self, token: str) -> float | None:
        """USD left for `token`; None when it has unlimited credit."""
        with self._lock:
            if token not in self._balances:
                return None
            return self._balances[token] - self._charged.get(token, 0.0)

    def charged(self) -> dict[str, float]:
        """USD charged so far, by token (for tests: the server's view of what was billed)."""
        with self._lock:
            return dict(self._charged)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"tokens_limited": len(self._balances), "charged_usd": sum(self._charged.values())}

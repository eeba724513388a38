"""A decoded API reply: what every successful request returns to the engine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ApiReply"]


@dataclass
class ApiReply:
    """A decoded JSON reply (``body`` None when it was empty) with the headers the limiter
    reads (``Retry-After``, ``ratelimit-remaining``)."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)

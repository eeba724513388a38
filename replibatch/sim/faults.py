"""Simulator options (rates, timing, faults) and the seeded dice that decide each fault."""

from __future__ import annotations

import dataclasses
import math
import random
import re
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["FaultDice", "SimOptions"]

FaultScope = Literal["all", "create", "read"]


@dataclass(frozen=True)
class SimOptions:
    """Everything about a simulator that can be set at start and changed while it runs.

    See :func:`replibatch.sim.serve` for the meaning and default of each field.
    Raises ValueError (from :meth:`checked`) for out-of-range values.
    """

    api_tokens: frozenset[str] | None = None
    credit: tuple[tuple[str, float], ...] | None = None  # (token, USD) pairs; see sim/credit.py
    separate_accounts: bool = False
    create_rate: float | None = 600.0
    create_burst: float | None = None
    read_rate: float | None = 3000.0
    read_burst: float | None = None
    retry_after_header: bool = True
    retry_after_body: bool = False
    ratelimit_headers: bool = True
    time_scale: float = 1.0
    predict_time: float | None = None
    queue_delay: float = 0.0
    retention: float = 3600.0
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503)
    drop_rate: float = 0.0
    drop_after_create_rate: float = 0.0
    error_after_create_rate: float = 0.0
    error_after_create_statuses: tuple[int, ...] = (502, 503, 504)
    slow_rate: float = 0.0
    slow_delay: float = 1.0
    failure_rate: float = 0.0
    failure_message: str = "Prediction failed: simulated model error (CUDA out of memory)"
    fault_scope: FaultScope = "all"
    cancel_after_minimum: float = 5.0
    official_internal_names: bool = True
    output_file_bytes: int | None = None
    output_url_base: str | None = None
    download_error_rate: float = 0.0
    download_drop_rate: float = 0.0
    download_slow_rate: float = 0.0
    download_slow_delay: float = 0.05
    page_size: int = 100
    seed: int | None = None

    def checked(self) -> SimOptions:
        """Return self after validating every field; raises ValueError naming the bad one."""
        for token, usd in self.credit or ():
            if not token or not isinstance(usd, (int, float)) or math.isnan(usd) or usd < 0:
                raise ValueError("credit must map non-empty tokens to USD amounts >= 0")
        for name in ("error_rate", "drop_rate", "drop_after_create_rate", "slow_rate",
                     "failure_rate", "error_after_create_rate", "download_error_rate",
                     "download_drop_rate", "download_slow_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        for name in ("create_rate", "create_burst", "read_rate", "read_burst"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 or None (unlimited), got {value!r}")
        if self.time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {self.time_scale!r}")
        for name in ("queue_delay", "retention", "slow_delay", "cancel_after_minimum",
                     "download_slow_delay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.predict_time is not None and self.predict_time < 0:
            raise ValueError(f"predict_time must be >= 0 or None, got {self.predict_time!r}")
        for name in ("error_statuses", "error_after_create_statuses"):
            statuses = getattr(self, name)
            if not statuses or any(not 500 <= status <= 599 for status in statuses):
                raise ValueError(f"{name} must be 5xx codes, got {statuses!r}")
        if self.output_file_bytes is not None and self.output_file_bytes < 0:
            raise ValueError(f"output_file_bytes must be >= 0 or None, got {self.output_file_bytes!r}")
        if self.output_url_base is not None and not re.match(r"^https?://[^/\s]+$",
                                                             self.output_url_base):
            raise ValueError("output_url_base must be scheme://host[:port] without a path, got "
                             f"{self.output_url_base!r}")
        if self.fault_scope not in ("all", "create", "read"):
            raise ValueError(f"fault_scope must be 'all', 'create' or 'read', got {self.fault_scope!r}")
        if self.page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {self.page_size!r}")
        if self.api_tokens is not None and not all(self.api_tokens):
            raise ValueError("api_tokens must not contain empty tokens")
        return self

    def replace(self, **changes: Any) -> SimOptions:
        """A validated copy with ``changes``; raises TypeError for an unknown option name."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown simulator option(s): {', '.join(unknown)}")
        if "api_tokens" in changes and changes["api_tokens"] is not None:
            changes["api_tokens"] = frozenset(changes["api_tokens"])
        if "credit" in changes and changes["credit"] is not None:
            changes["credit"] = credit_pairs(changes["credit"])
        for name in ("error_statuses", "error_after_create_statuses"):
            if name in changes:
                changes[name] = tuple(changes[name])
        return dataclasses.replace(self, **changes).checked()

    def __repr__(self) -> str:
        # Never show tokens, not even the allowed ones.
        def shown(name: str) -> str:
            value = getattr(self, name)
            return repr("<hidden>" if name in ("api_tokens", "credit") and value else value)

        fields = ", ".join(f"{f.name}={shown(f.name)}" for f in dataclasses.fields(self))
        return f"SimOptions({fields})"



def credit_pairs(credit: Any) -> tuple[tuple[str, float], ...]:
    """``credit=`` as sorted (token, USD) pairs: a mapping or pairs. Raises ValueError."""
    try:
        items = dict(credit).items()
    except (TypeError, ValueError):
        raise ValueError("credit must be a mapping of token -> USD") from None
    return tuple(sorted((str(token), float(usd)) for token, usd in items))


class FaultDice:
    """Seeded random decisions: one RNG per server so a seed replays the same fault pattern."""

    def __init__(self, seed: int | None) -> None:
        self._rng = random.Random(seed)

    def reseed(self, seed: int | None) -> None:
        self._rng.seed(seed)

    def roll(self, rate: float) -> bool:
        """True with probability ``rate`` (no draw at all when the rate is 0 or 1)."""
        if rate <= 0.0:
            return False
        if rate >= 1.0:
            return True
        return self._rng.random() < rate

    def choice(self, options: tuple[int, ...]) -> int:
        return options[0] if len(options) == 1 else self._rng.choice(options)

    def applies(self, scope: str, is_create: bool) -> bool:
        return scope == "all" or (scope == "create") == is_create

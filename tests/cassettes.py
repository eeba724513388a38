"""Recorded Replicate traffic for tests: load the cassettes in ``tests/fixtures/cassettes`` and
replay them through ``httpx.MockTransport``.

    from cassettes import load, replay_transport  # tests/ is on sys.path under pytest
    for interaction in load("run.yaml"):
        interaction.method, interaction.path, interaction.status, interaction.json()

    client = httpx.Client(transport=replay_transport("predictions-get.yaml"),
                          base_url="https://api.replicate.com")

The cassettes come in the two vcrpy layouts the official client's suite used: ``response.content``
with ``status_code`` (httpx) and ``response.body.string`` with ``status.code`` (requests).
"""

from __future__ import annotations

import functools
import gzip
import json
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml  # type: ignore[import-untyped]

__all__ = [
    "CASSETTES",
    "Interaction",
    "ReplayExhausted",
    "cassette_names",
    "load",
    "prediction_bodies",
    "replay_handler",
    "replay_transport",
]

CASSETTES = Path(__file__).parent / "fixtures" / "cassettes"


@dataclass(frozen=True)
class Interaction:
    """One recorded request and the answer the real service gave."""

    cassette: str
    index: int
    method: str
    uri: str
    request_headers: dict[str, list[str]]
    request_body: str | None
    status: int
    headers: dict[str, list[str]]
    body: str

    @property
    def path(self) -> str:
        """The URL's path (``/v1/predictions/abc``), without scheme, host or query."""
        return httpx.URL(self.uri).path

    @property
    def query(self) -> str:
        return httpx.URL(self.uri).query.decode()

    def header(self, name: str) -> str | None:
        """The first value of a response header (case-insensitive), or None."""
        for key, values in self.headers.items():
            if key.lower() == name.lower() and values:
                return values[0]
        return None

    def json(self) -> Any:
        """The response body parsed as JSON; raises ValueError when it is not JSON."""
        return json.loads(self.body)

    def request_json(self) -> Any:
        """The request body parsed as JSON, or None when there was none."""
        return json.loads(self.request_body) if self.request_body else None

    def response(self, request: httpx.Request | None = None) -> httpx.Response:
        """An httpx response with the recorded status, headers and body."""
        skip = {"content-length", "content-encoding", "transfer-encoding"}
        headers = [(k, v) for k, values in self.headers.items() if k.lower() not in skip
                   for v in values]
        return httpx.Response(self.status, headers=headers, content=self.body.encode(),
                              request=request)


def cassette_names() -> list[str]:
    """File names of every stored cassette, sorted."""
    return sorted(p.name for p in CASSETTES.glob("*.yaml"))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        # Some recordings kept the gzip-encoded body the server sent.
        return (gzip.decompress(value) if value[:2] == b"\x1f\x8b" else value).decode("utf-8")
    if isinstance(value, dict):  # requests layout: {"string": ...}
        return _text(value.get("string"))
    return str(value)


def load(name: str) -> list[Interaction]:
    """The interactions of one cassette, in recorded order (a fresh list each call).

    Raises FileNotFoundError for an unknown cassette name.
    """
    return list(_load(name))


@functools.cache
def _load(name: str) -> tuple[Interaction, ...]:
    # Parsed once per test session: YAML parsing is the slow part, interactions are immutable.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    raw = yaml.load((CASSETTES / name).read_text(), Loader=loader)  # noqa: S506 - a safe loader
    out: list[Interaction] = []
    for index, item in enumerate(raw["interactions"]):
        request, response = item["request"], item["response"]
        body = response["content"] if "content" in response else response.get("body")
        status = response.get("status_code") or response["status"]["code"]
        request_body = _text(request.get("body")) or None
        out.append(Interaction(
            cassette=name, index=index, method=request["method"].upper(), uri=request["uri"],
            request_headers=dict(request.get("headers") or {}), request_body=request_body,
            status=int(status), headers=dict(response.get("headers") or {}), body=_text(body),
        ))
    return tuple(out)


def _predictions_in(body: Any) -> list[dict[str, Any]]:
    items = body.get("results", [body]) if isinstance(body, dict) else []
    return [i for i in items if isinstance(i, dict) and "status" in i and "urls" in i]


def prediction_bodies(names: Iterable[str] | None = None) -> Iterator[tuple[Interaction, dict[str, Any]]]:
    """Every prediction object recorded in a JSON response (create, get, cancel, list pages),
    with the interaction it came from. Trainings (``/v1/trainings``) are left out."""
    for name in cassette_names() if names is None else names:
        for interaction in load(name):
            if "/trainings" in interaction.path:
                continue
            try:
                body = interaction.json()
            except ValueError:
                continue
            for prediction in _predictions_in(body):
                yield interaction, prediction


class ReplayExhausted(LookupError):
    """A request that the cassette has no recorded answer for (method + path)."""


def replay_handler(
    interactions: str | Iterable[Interaction], *, repeat_last: bool = True
) -> Callable[[httpx.Request], httpx.Response]:
    """A handler for ``httpx.MockTransport`` answering each request with the next recorded
    response for the same method and path (query ignored), in recorded order.

    With ``repeat_last`` the last answer for a method+path is served again once its answers are
    used up (polling past the end of a recording). The handler raises ReplayExhausted for a
    request with no recorded answer; ``handler.requests`` lists the requests it saw.
    """
    recorded = load(interactions) if isinstance(interactions, str) else list(interactions)
    queues: dict[tuple[str, str], deque[Interaction]] = defaultdict(deque)
    for interaction in recorded:
        queues[(interaction.method, interaction.path)].append(interaction)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        queue = queues.get((request.method, request.url.path))
        if not queue:
            raise ReplayExhausted(f"no recorded answer for {request.method} {request.url.path}")
        interaction = queue[0] if repeat_last and len(queue) == 1 else queue.popleft()
        return interaction.response(request)

    handler.requests = seen  # type: ignore[attr-defined]
    return handler


def replay_transport(interactions: str | Iterable[Interaction], *,
                     repeat_last: bool = True) -> httpx.MockTransport:
    """``httpx.MockTransport(replay_handler(...))``; works for sync and async clients."""
    return httpx.MockTransport(replay_handler(interactions, repeat_last=repeat_last))

"""The client edge: foreign errors become ours at one place; the token never leaks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import pytest

from replibatch._engine.download import DownloadError, DownloadLimits
from replibatch._http.edge import Edge
from replibatch.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidInputError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    ReplicateAPIError,
    TransientError,
)

TOKEN = "r8_edge_test_token_value_0000000000000000"
BASE = "https://api.replicate.test"


T = TypeVar("T")
Handler = Callable[[httpx.Request], httpx.Response]


def edge_with(handler: Handler) -> Edge:
    return Edge(api_token=TOKEN, base_url=BASE, transport=httpx.MockTransport(handler))


def call(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def problem(status: int, detail: str, **extra: Any) -> httpx.Response:
    body = {"type": "about:blank", "title": "x", "status": status, "detail": detail, **extra}
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


@pytest.mark.parametrize(
    ("response", "error", "status"),
    [
        (problem(401, "Unauthenticated"), AuthenticationError, 401),
        (problem(404, "Not found"), NotFoundError, 404),
        (problem(422, "- input.width: Must be a multiple of 8"), InvalidInputError, 422),
        (problem(500, "boom"), TransientError, 500),
        (httpx.Response(502, text="<html><body>Bad Gateway</body></html>"), TransientError, 502),
        (httpx.Response(200, text="not json at all"), TransientError, 200),
    ],
)
def test_statuses_map_to_our_errors(
    response: httpx.Response, error: type[Exception], status: int
) -> None:
    edge = edge_with(lambda request: response)
    with pytest.raises(error) as info:
        call(edge.get_prediction("abc"))
    assert getattr(info.value, "status", None) == status
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)


def test_422_detail_names_the_field() -> None:
    edge = edge_with(lambda request: problem(422, "- input.width: Must be a multiple of 8"))
    with pytest.raises(InvalidInputError, match=r"input\.width"):
        call(edge.create_prediction(("version", "a" * 64), {"width": 3}, wait=None))


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"Retry-After": "7"}, {"detail": "Request was throttled.", "status": 429}, 7.0),
        ({}, {"detail": "Request was throttled.", "status": 429, "retry_after": 3}, 3.0),
        ({}, {"detail": "Request was throttled. Your rate limit resets in ~30s.", "status": 429}, 30.0),
    ],
)
def test_429_carries_the_servers_hint(
    headers: dict[str, str], body: dict[str, Any], expected: float
) -> None:
    edge = edge_with(lambda request: httpx.Response(429, json=body, headers=headers))
    with pytest.raises(RateLimitedError) as info:
        call(edge.create_prediction(("model", "o/m"), {"prompt": "x"}, wait=5))
    assert info.value.retry_after == pytest.approx(expected)


def test_a_dropped_create_is_outcome_unknown_but_a_dropped_read_is_transient() -> None:
    def drop(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    edge = edge_with(drop)
    with pytest.raises(OutcomeUnknownError):
        call(edge.create_prediction(("version", "a" * 64), {"prompt": "x"}, wait=None))
    with pytest.raises(TransientError) as info:
        call(edge.get_prediction("abc"))
    assert not isinstance(info.value, OutcomeUnknownError)


def test_a_connection_never_made_is_safe_to_retry_even_for_a_create() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused")

    with pytest.raises(TransientError) as info:
        call(edge_with(refuse).create_prediction(("model", "o/m"), {}, wait=None))
    assert not isinstance(info.value, OutcomeUnknownError)


def test_a_gateway_error_on_create_is_outcome_unknown() -> None:
    edge = edge_with(lambda request: httpx.Response(502, text="<html>Bad Gateway</html>"))
    with pytest.raises(OutcomeUnknownError):
        call(edge.create_prediction(("model", "o/m"), {}, wait=None))


def test_create_requests_have_the_documented_shape() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": "p1", "status": "starting"},
                              headers={"ratelimit-remaining": "599"})

    edge = edge_with(record)
    reply = call(edge.create_prediction(("version", "b" * 64), {"prompt": "hi"}, wait=60))
    call(edge.create_prediction(("model", "meta/llama"), {"prompt": "hi"}, wait=None))
    call(edge.create_prediction(("deployment", "acme/prod"), {"prompt": "hi"}, wait=3))
    assert reply.body["id"] == "p1" and reply.headers["ratelimit-remaining"] == "599"
    assert [r.url.path for r in seen] == [
        "/v1/predictions", "/v1/models/meta/llama/predictions", "/v1/deployments/acme/prod/predictions"
    ]
    assert seen[0].headers["Prefer"] == "wait=60" and "Prefer" not in seen[1].headers
    assert seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert b'"version"' in seen[0].content and b'"version"' not in seen[1].content


def test_create_takes_the_engines_target_whole() -> None:
    from replibatch._engine.target import Target

    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": "p1", "status": "starting"})

    edge = edge_with(record)
    official = Target(kind="model", ident="meta/llama", identity="meta/llama", model_name="meta/llama")
    pinned = Target(kind="version", ident="c" * 64, identity="c" * 64, model_name="o/m")
    call(edge.create_prediction(official, {"prompt": "hi"}, wait=None))
    call(edge.create_prediction(pinned, {"prompt": "hi"}, wait=None))
    assert [r.url.path for r in seen] == ["/v1/models/meta/llama/predictions", "/v1/predictions"]
    assert b'"version":"' + b"c" * 64 in seen[1].content.replace(b" ", b"")


def test_downloads_never_carry_the_token_and_api_endpoints_are_not_fetched(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"\x89PNG...")

    edge = edge_with(record)
    host = httpx.URL(BASE).host

    async def fetch_all() -> tuple[list[Any], list[str]]:
        got = [
            await edge.download(f"{BASE}/delivery/p1/out.png", tmp_path),
            await edge.download("https://replicate.delivery/xezq/out-0.png", tmp_path),
        ]
        refused = []
        # The API itself, over cleartext or on another port too: never fetched.
        for url in (f"{BASE}/v1/account", f"http://{host}/v1/account",
                    f"https://{host}:8443/v1/predictions", "file:///etc/passwd"):
            with pytest.raises(DownloadError):
                await edge.download(url, tmp_path)
            refused.append(url)
        await edge.aclose()
        return got, refused

    got, refused = call(fetch_all())
    assert [d.path.read_bytes() for d in got] == [b"\x89PNG...", b"\x89PNG..."]
    assert len(refused) == 4
    assert [r.url.host for r in seen] == [host, "replicate.delivery"]
    assert all("Authorization" not in r.headers for r in seen)


def test_a_download_over_the_byte_cap_or_the_deadline_fails_and_leaves_no_file(tmp_path: Path) -> None:
    big = b"x" * 5000

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("big.bin"):
            return httpx.Response(200, content=big)

        # A stream that never ends: each chunk arrives, so no read timeout would fire.
        async def endless() -> AsyncIterator[bytes]:
            while True:
                yield b"y" * 10
                await anyio.sleep(0.01)
        return httpx.Response(200, content=endless())

    edge = edge_with(serve)

    async def both() -> None:
        with pytest.raises(DownloadError, match="max_file_bytes=1000"):
            await edge.download("https://replicate.delivery/big.bin", tmp_path,
                                DownloadLimits(max_file_bytes=1000))
        with pytest.raises(DownloadError, match=r"download_timeout=0\.2"):
            await edge.download("https://replicate.delivery/endless.bin", tmp_path,
                                DownloadLimits(timeout=0.2))
        await edge.aclose()

    call(both())
    assert list(tmp_path.iterdir()) == []


def test_a_failed_download_is_an_error_not_bytes(tmp_path: Path) -> None:
    edge = edge_with(lambda request: httpx.Response(404, text="gone"))
    with pytest.raises(ReplicateAPIError):
        call(edge.download(f"{BASE}/delivery/p1/out.png", tmp_path))


def test_no_token_is_a_configuration_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    edge = Edge(base_url=BASE)
    with pytest.raises(ConfigurationError, match="REPLICATE_API_TOKEN"):
        call(edge.get_model("o", "m"))


def test_repr_never_shows_the_token() -> None:
    edge = Edge(api_token=TOKEN, base_url=BASE)
    assert TOKEN not in repr(edge) and TOKEN not in str(vars(edge).get("_base_url"))


def test_each_request_goes_once_the_runner_does_the_retrying() -> None:
    seen: list[httpx.Request] = []

    def busy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return problem(503, "Service Unavailable")

    with pytest.raises(TransientError):
        call(edge_with(busy).get_prediction("abc"))
    assert len(seen) == 1


def test_a_download_redirected_to_another_host_carries_no_token(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def serve(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "replicate.delivery":
            return httpx.Response(302, headers={"location": "https://cdn.example.test/blob/out.png"})
        return httpx.Response(200, content=b"\x89PNG...")

    edge = edge_with(serve)

    async def fetch() -> bytes:
        got = await edge.download("https://replicate.delivery/xezq/out.png", tmp_path)
        await edge.aclose()
        return got.path.read_bytes()

    assert call(fetch()) == b"\x89PNG..."
    assert [r.url.host for r in seen] == ["replicate.delivery", "cdn.example.test"]
    assert all("authorization" not in r.headers for r in seen)

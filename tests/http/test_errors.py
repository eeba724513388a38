"""Every foreign failure becomes one of ours, at one place; a create that may exist says so."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import httpx
import pytest

from replibatch._http.edge import Edge
from replibatch.errors import (
    ConfigurationError,
    OutcomeUnknownError,
    ReplicateAPIError,
    TransientError,
)

TOKEN = "r8_errors_test_token_000000000000000000000"
BASE = "https://api.replicate.test"
T = TypeVar("T")


def call(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def edge_with(handler: Callable[[httpx.Request], httpx.Response]) -> Edge:
    return Edge(api_token=TOKEN, base_url=BASE, transport=httpx.MockTransport(handler))


def raising(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


def create(edge: Edge) -> Coroutine[Any, Any, Any]:
    return edge.create_prediction(("model", "o/m"), {"prompt": "x"}, wait=None)


# (what the transport raises, what a create becomes, what a read becomes)
EXCHANGE = [
    (httpx.ConnectError("refused"), TransientError, TransientError),
    (httpx.ConnectTimeout("slow"), TransientError, TransientError),
    (httpx.PoolTimeout("busy"), TransientError, TransientError),
    (httpx.ReadTimeout("held"), OutcomeUnknownError, TransientError),
    (httpx.WriteTimeout("half sent"), OutcomeUnknownError, TransientError),
    (httpx.ReadError("reset"), OutcomeUnknownError, TransientError),
    (httpx.WriteError("broken pipe"), OutcomeUnknownError, TransientError),
    (httpx.RemoteProtocolError("disconnected"), OutcomeUnknownError, TransientError),
    (httpx.ProxyError("proxy said no"), OutcomeUnknownError, TransientError),
    (httpx.DecodingError("bad gzip"), OutcomeUnknownError, TransientError),
]


@pytest.mark.parametrize(("raised", "on_create", "on_read"), EXCHANGE,
                         ids=[type(e).__name__ for e, _, _ in EXCHANGE])
def test_exchange_failures_map_by_whether_the_request_may_have_been_sent(
    raised: Exception, on_create: type[Exception], on_read: type[Exception]
) -> None:
    edge = edge_with(raising(raised))
    with pytest.raises(on_create) as created:
        call(create(edge))
    with pytest.raises(on_read) as read:
        call(edge.get_prediction("p1"))
    assert type(created.value) is on_create and type(read.value) is on_read
    assert type(raised).__name__ in str(read.value) and TOKEN not in str(created.value)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(201, text="<html>created?</html>"),
        httpx.Response(201, content=b'{"id": "\xff\xfe"}'),  # not UTF-8
        httpx.Response(201, json={"status": "starting"}),  # no id
        httpx.Response(201, json=["p1"]),
        httpx.Response(303, headers={"location": "https://elsewhere.test/p1"}),
        httpx.Response(504, text="Gateway Timeout"),
    ],
    ids=["html", "not-utf8", "no-id", "not-an-object", "redirect", "gateway"],
)
def test_a_create_answered_with_no_readable_prediction_is_outcome_unknown(response: httpx.Response) -> None:
    with pytest.raises(OutcomeUnknownError) as info:
        call(create(edge_with(lambda request: response)))
    assert info.value.status == response.status_code


def test_a_read_answered_with_what_is_not_json_is_transient() -> None:
    for body in (b"<html>oops</html>", b'{"id": "\xff"}'):

        def reply(request: httpx.Request, body: bytes = body) -> httpx.Response:
            return httpx.Response(200, content=body)

        with pytest.raises(TransientError):
            call(edge_with(reply).get_prediction("p1"))


@pytest.mark.parametrize(
    "body",
    [{"prompt": math.nan}, {"prompt": "lone \ud800"}, {"prompt": object()}, {"n": math.inf}],
    ids=["nan", "lone-surrogate", "object", "inf"],
)
def test_a_body_that_cannot_be_json_is_a_configuration_error_and_nothing_is_sent(
    body: dict[str, Any],
) -> None:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(201, json={"id": "p1"})

    edge = edge_with(record)
    with pytest.raises(ConfigurationError, match="cannot be sent as JSON"):
        call(edge.create_prediction(("model", "o/m"), body, wait=None))
    with pytest.raises(ConfigurationError):
        call(edge.request("POST", "/v1/trainings", json=body, creates=True))
    assert sent == []


def test_a_header_that_cannot_be_encoded_is_a_configuration_error_and_nothing_is_sent() -> None:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    with pytest.raises(ConfigurationError, match="cannot be sent as given"):
        call(edge_with(record).request("GET", "/v1/account", headers={"X-Note": "caf\u00e9 \u2603"}))
    assert sent == []


def test_a_redirect_is_not_followed_so_the_token_never_reaches_another_host() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(307, headers={"location": "https://collector.test/v1/predictions/p1"})

    with pytest.raises(ReplicateAPIError, match=r"redirect to https://collector\.test") as info:
        call(edge_with(handler).get_prediction("p1"))
    assert not isinstance(info.value, TransientError)  # a retry would get the same redirect
    assert [r.url.host for r in seen] == ["api.replicate.test"]


def test_an_absolute_url_off_the_apis_origin_is_refused_and_one_on_it_is_sent() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "t1"})

    edge = edge_with(record)
    for elsewhere in ("https://collector.test/v1/trainings/t1", "http://api.replicate.test/v1/x",
                      "https://api.replicate.test:8443/v1/x"):
        with pytest.raises(ConfigurationError, match="refusing to send the API token"):
            call(edge.request("GET", elsewhere))
    assert seen == []
    reply = call(edge.request("GET", f"{BASE}/v1/trainings/t1"))
    assert reply.body == {"id": "t1"} and seen[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_a_page_cursor_naming_another_host_is_read_from_the_api() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"results": [], "next": None})

    call(edge_with(record).list_predictions(cursor_url="https://collector.test/v1/predictions?cursor=abc"))
    assert [(r.url.host, r.url.path, r.url.query) for r in seen] == [
        ("api.replicate.test", "/v1/predictions", b"cursor=abc")
    ]


def test_requests_carry_our_user_agent_and_the_bearer_token() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "p1"})

    call(edge_with(record).get_prediction("p1"))
    agent = seen[0].headers["user-agent"]
    assert agent.startswith("replibatch/") and f" httpx/{httpx.__version__} python/" in agent
    assert seen[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_an_upload_is_multipart_content_and_returns_the_files_url() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        # The reply shape recorded in cassettes/file-operations.yaml.
        return httpx.Response(201, json={"id": "f1", "urls": {"get": f"{BASE}/v1/files/f1"}})

    url = call(edge_with(record).upload_file(b"hello", filename="a.txt", content_type="text/plain"))
    assert url == f"{BASE}/v1/files/f1"
    request = seen[0]
    assert (request.method, request.url.path) == ("POST", "/v1/files")
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    body = request.read()
    assert b'name="content"; filename="a.txt"' in body and b"Content-Type: text/plain" in body
    assert b"\r\n\r\nhello\r\n" in body


def test_an_upload_whose_reply_names_no_url_is_an_error() -> None:
    edge = edge_with(lambda request: httpx.Response(201, json={"id": "f1"}))
    with pytest.raises(ReplicateAPIError, match=r"urls\.get"):
        call(edge.upload_file(b"x", filename="a.bin", content_type="application/octet-stream"))

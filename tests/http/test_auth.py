"""Which token and base URL a run uses: arguments, then client=, then the environment."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import replicate

from replibatch._http import Connection
from replibatch._http.auth import normalize_base_url, resolve_connection, resolve_token
from replibatch._http.edge import Edge
from replibatch.errors import ConfigurationError

TOKEN = "r8_auth_test_token_0000000000000000000000"


class Replicate:
    """The public surface of the official 2.x client (replicate-python-beta, 2.0.0b4:
    ``bearer_token`` attribute, ``base_url`` property as an httpx.URL ending in ``/v1/``)."""

    __module__ = "replicate"  # what type(client).__module__ says for the real 2.0.0b4

    def __init__(self, bearer_token: str, base_url: str = "https://api.replicate.com/v1") -> None:
        self.bearer_token = bearer_token
        self.base_url = httpx.URL(base_url.rstrip("/") + "/")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    monkeypatch.delenv("REPLICATE_BASE_URL", raising=False)


def test_the_argument_wins_then_the_client_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    official = replicate.Client(api_token="r8_from_client", base_url="http://sim.test:9")
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_from_env")
    monkeypatch.setenv("REPLICATE_BASE_URL", "http://env.test")
    assert resolve_token("r8_from_arg", official) == "r8_from_arg"
    assert resolve_token(None, official) == "r8_from_client"
    assert resolve_token(None, None) == "r8_from_env"
    assert resolve_connection(None, "http://arg.test", official).base_url == "http://arg.test"
    assert resolve_connection(None, None, official).base_url == "http://sim.test:9"
    assert resolve_connection(None, None, None).base_url == "http://env.test"
    # A 1.x client given no token or URL falls back to the environment, as that client does.
    bare = resolve_connection(None, None, replicate.Client())
    assert (bare.api_token, bare.base_url) == ("r8_from_env", "http://env.test")


def test_without_anything_it_is_replicates_api_and_no_token() -> None:
    resolved = resolve_connection(None, None, None)
    assert (resolved.api_token, resolved.base_url) == (None, "https://api.replicate.com")


def test_a_2x_client_gives_its_public_token_and_base_url_without_v1() -> None:
    resolved = resolve_connection(None, None, Replicate(TOKEN, "http://127.0.0.1:5000/v1"))
    assert (resolved.api_token, resolved.base_url) == (TOKEN, "http://127.0.0.1:5000")
    assert resolve_connection(None, None, Replicate(TOKEN)).base_url == "https://api.replicate.com"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://api.replicate.com", "https://api.replicate.com"),
        ("https://api.replicate.com/", "https://api.replicate.com"),
        ("https://api.replicate.com/v1/", "https://api.replicate.com"),
        ("http://127.0.0.1:8080/prefix/v1", "http://127.0.0.1:8080/prefix"),
        ("http://127.0.0.1:8080/v1beta", "http://127.0.0.1:8080/v1beta"),
    ],
)
def test_base_urls_are_normalized(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize("bad", ["api.replicate.com", "ftp://api.replicate.com", "http://", "https:///v1"])
def test_an_unusable_base_url_is_refused_before_anything_is_sent(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        Edge(api_token=TOKEN, base_url=bad)


def test_a_requests_path_carries_v1_once_whatever_the_base_url() -> None:
    seen: list[httpx.URL] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json={"id": "p1"})

    for base in ("http://sim.test/v1", "http://sim.test/", "http://sim.test/mount"):
        edge = Edge(api_token=TOKEN, base_url=base, transport=httpx.MockTransport(record))
        asyncio.run(edge.get_prediction("p1"))
    assert [str(url) for url in seen] == [
        "http://sim.test/v1/predictions/p1",
        "http://sim.test/v1/predictions/p1",
        "http://sim.test/mount/v1/predictions/p1",
    ]


def test_the_environment_base_url_is_where_requests_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICATE_BASE_URL", "http://env.test:8000")
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "p1"})

    asyncio.run(Edge(api_token=TOKEN, transport=httpx.MockTransport(record)).get_prediction("p1"))
    assert [(r.url.host, r.url.port) for r in seen] == [("env.test", 8000)]


def test_anything_else_as_client_is_a_configuration_error() -> None:
    for wrong in ("r8_a_token_string", object(), httpx.AsyncClient()):
        with pytest.raises(ConfigurationError, match="client= must be"):
            Edge(client=wrong)


@pytest.mark.parametrize("token", ["r8_abc\n", "r8 abc", "r8_“abc”", "r8_\x00"])
def test_a_token_that_cannot_go_in_a_header_is_refused_without_echoing_it(token: str) -> None:
    with pytest.raises(ConfigurationError, match="API token") as info:
        Edge(api_token=token)
    assert token.strip() not in str(info.value)


def test_a_connection_never_shows_its_token() -> None:
    connection = Connection(api_token=TOKEN, base_url="http://sim.test")
    assert TOKEN not in repr(connection) and TOKEN not in str(connection)
    edge = Edge(client=connection)
    assert TOKEN not in repr(edge) and edge.has_token

"""The one pager of GET /v1/predictions: filters on the first page, `next` after, stops."""

from __future__ import annotations

from types import SimpleNamespace

import anyio
import pytest

from replibatch._engine.pager import PageQuery, edge_fetch, walk
from replibatch.errors import TransientError


class Listing:
    def __init__(self, pages: int, fail_at: int | None = None) -> None:
        self.pages, self.fail_at, self.queries = pages, fail_at, []

    async def __call__(self, query: PageQuery) -> dict:
        self.queries.append(query)
        index = 0 if query.cursor_url is None else int(query.cursor_url.rsplit("=", 1)[1])
        if index == self.fail_at:
            raise TransientError("boom", status=503)
        nxt = f"https://api/v1/predictions?cursor={index + 1}" if index + 1 < self.pages else None
        return {"results": [{"id": f"p{index}"}, "not a record"], "next": nxt}


def test_a_walk_follows_next_until_the_listing_ends_and_passes_filters_once():
    listing, seen = Listing(3), []
    walked = anyio.run(lambda: walk(listing, lambda r: seen.extend(r) or True,
                                    created_after="A", created_before="B"))
    assert walked.pages == 3 and walked.exhausted
    assert seen == [{"id": "p0"}, {"id": "p1"}, {"id": "p2"}]  # non-records dropped
    assert listing.queries[0] == PageQuery("A", "B", None)
    assert all(q.created_after is None and q.cursor_url for q in listing.queries[1:])


def test_a_walk_stops_when_told_or_at_max_pages_and_raises_what_fetch_raises():
    listing = Listing(5)
    assert anyio.run(lambda: walk(listing, lambda r: False)).pages == 1
    capped = anyio.run(lambda: walk(Listing(5), lambda r: True, max_pages=2))
    assert capped.pages == 2 and not capped.exhausted
    with pytest.raises(TransientError):
        anyio.run(lambda: walk(Listing(5, fail_at=1), lambda r: True))


class FakeEdge:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    async def list_predictions(self, **kwargs):
        self.calls.append(kwargs)

        return SimpleNamespace(body={"results": [], "next": None})


def test_edge_fetch_sends_the_query_through_the_read_function():
    edge, reads = FakeEdge(), []

    async def read(call):
        reads.append(call)
        return await call()

    fetch = edge_fetch(edge, read)  # type: ignore[arg-type]
    body = anyio.run(fetch, PageQuery("A", None, None))
    assert body == {"results": [], "next": None} and len(reads) == 1
    assert edge.calls == [{"created_after": "A", "created_before": None, "cursor_url": None}]

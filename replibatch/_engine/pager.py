"""The one walker of ``GET /v1/predictions``: reconcile, interrupt cleanup and the poller page
the account's predictions through it.

Replicate lists the account's predictions newest first, 100 full prediction objects a page,
with a ``next`` URL that already carries the filters (OpenAPI ``predictions.list``;
``created_after`` is "at or after", ``created_before`` strictly before). `walk` follows
``next`` and hands each page's results to the caller, who says whether to go on; what a page
costs (pacing under the read limit, retries) is the `FetchPage` function's business, so each
caller chooses paced (`paced_fetch`) or straight-to-the-edge reads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from replibatch._http.edge import ApiReply, Edge

__all__ = ["FetchPage", "PageQuery", "Read", "Walked", "edge_fetch", "walk"]

Read = Callable[[Callable[[], Awaitable[ApiReply]]], Awaitable[ApiReply]]


@dataclass(frozen=True)
class PageQuery:
    """One page to fetch: the first page of a filtered listing, or the page a ``next`` names."""

    created_after: str | None = None
    created_before: str | None = None
    cursor_url: str | None = None


FetchPage = Callable[[PageQuery], Awaitable[Any]]
"""Fetches one page and returns its decoded body (a dict with ``results`` and ``next``);
raises ReplicateAPIError when the page cannot be had."""


@dataclass(frozen=True)
class Walked:
    """How a walk ended: pages read, and whether the listing itself ended (no ``next``)
    rather than the caller or `max_pages` stopping it."""

    pages: int
    exhausted: bool


def edge_fetch(edge: Edge, read: Read | None = None) -> FetchPage:
    """A `FetchPage` on `edge`; each request goes through `read` (pacing, retries) if given."""

    async def fetch(query: PageQuery) -> Any:
        def call() -> Awaitable[ApiReply]:
            return edge.list_predictions(
                created_after=query.created_after,
                created_before=query.created_before,
                cursor_url=query.cursor_url,
            )

        reply = await (call() if read is None else read(call))
        return reply.body

    return fetch


async def walk(
    fetch: FetchPage,
    on_page: Callable[[list[dict]], bool],
    *,
    created_after: str | None = None,
    created_before: str | None = None,
    max_pages: int | None = None,
) -> Walked:
    """Page the listing newest first; `on_page(results)` returns False to stop.

    Records that are not objects are dropped before `on_page` sees them. Raises whatever
    `fetch` raises (ReplicateAPIError for a page that cannot be had): the caller decides what
    a partial walk means.
    """
    query = PageQuery(created_after=created_after, created_before=created_before)
    pages = 0
    while True:
        body = await fetch(query)
        pages += 1
        body = body if isinstance(body, dict) else {}
        results = [r for r in body.get("results") or [] if isinstance(r, dict)]
        nxt = body.get("next")
        if not on_page(results):
            return Walked(pages, exhausted=False)
        if not isinstance(nxt, str) or not nxt:
            return Walked(pages, exhausted=True)
        if max_pages is not None and pages >= max_pages:
            return Walked(pages, exhausted=False)
        query = PageQuery(cursor_url=nxt)

"""Requests of the trainings API, made through the one HTTP boundary (`Edge.request`).

Routes (``/work/shared/replicate-api/openapi.json``: trainings.create / get / list / cancel,
models.get, models.versions.get):

- create: ``POST /v1/models/{owner}/{name}/versions/{version_id}/trainings`` with
  ``{"destination": "owner/name", "input": {...}}``. It creates something billable, so a lost
  reply raises OutcomeUnknownError (``creates=True``). The recorded reply
  (cassettes/trainings-create.yaml) carries ``urls`` that point at ``/v1/predictions/{id}``:
  callers read a training back through `get_training` (``/v1/trainings/{id}``), never through
  the reply's urls.
- ``GET /v1/trainings`` pages the account's trainings newest first (a page's ``next`` is the
  cursor); the spec gives it no ``created_after`` filter, so a sweep pages until it is past its
  window (`replibatch._engine.reconcile.Reconciler` stops there).

Nothing here retries: pacing and retries are the executor's job. Every function raises the
`replibatch.errors` that `Edge.request` raises.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from replibatch._http.edge import ApiReply, Edge

__all__ = [
    "cancel_training",
    "create_training",
    "get_model",
    "get_training",
    "get_version",
    "list_trainings",
]


async def create_training(
    edge: Edge, trainer: str, version: str, *, destination: str, input: dict[str, Any]
) -> ApiReply:
    """Start a training of `trainer` (``owner/name``) at `version` towards `destination`.

    Raises OutcomeUnknownError when the request may have reached the service and no reply was
    read (the training may exist), NotFoundError for an unknown version or destination,
    ReplicateAPIError for any other refusal.
    """
    return await edge.request(
        "POST",
        f"/v1/models/{trainer}/versions/{version}/trainings",
        json={"destination": destination, "input": input},
        creates=True,
    )


async def get_training(edge: Edge, training_id: str) -> ApiReply:
    """``GET /v1/trainings/{id}``. Raises NotFoundError for an unknown id."""
    return await edge.request("GET", f"/v1/trainings/{training_id}")


async def cancel_training(edge: Edge, training_id: str) -> ApiReply:
    """``POST /v1/trainings/{id}/cancel``: the training stops billing. Raises NotFoundError."""
    return await edge.request("POST", f"/v1/trainings/{training_id}/cancel")


async def list_trainings(edge: Edge, cursor_url: str | None = None) -> ApiReply:
    """One page of the account's trainings, newest first; `cursor_url` is a page's ``next``."""
    if cursor_url:
        parts = urlsplit(cursor_url)
        return await edge.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
    return await edge.request("GET", "/v1/trainings")


async def get_model(edge: Edge, model: str) -> ApiReply:
    """``GET /v1/models/{owner}/{name}`` (its ``latest_version`` names the version to train)."""
    return await edge.request("GET", f"/v1/models/{model}")


async def get_version(edge: Edge, model: str, version: str) -> ApiReply:
    """``GET /v1/models/{owner}/{name}/versions/{id}`` (its ``openapi_schema`` holds the
    ``TrainingInput`` schema of a trainable version)."""
    return await edge.request("GET", f"/v1/models/{model}/versions/{version}")

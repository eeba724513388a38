"""What a model reference resolves to (`Target`), and resolving each distinct one once per run.

A reference is parsed once, at planning (`replibatch._table.refs`, kept on each `Job`); the
resolution here turns it into where predictions are created (a version, an official model's
endpoint or a deployment), the identity that keys the cache, and the input schema that checks the
rows. The `Target` is passed whole to the create path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import anyio

from replibatch._engine.reads import Reads
from replibatch._http.edge import Edge
from replibatch._table.refs import ModelRef
from replibatch._table.schema import InputSchema
from replibatch.errors import AuthenticationError, ReplicateAPIError

__all__ = ["Resolver", "Target"]

TargetKind = Literal["version", "model", "deployment"]


@dataclass(frozen=True)
class Target:
    """Where a model reference's predictions are created, and the identity its cache keys use."""

    kind: TargetKind
    ident: str  # version id, "owner/name" or "owner/name" of the deployment
    identity: str  # the resolved version (or official model name) that keys the cache
    model_name: str | None  # "owner/name" when known, for cost lookups
    # The version's input schema, when the service published one (rows are checked against it
    # before anything is sent); None: inputs go as they are and the service validates.
    schema: InputSchema | None = field(default=None, compare=False, repr=False)


class Resolver:
    """Resolves model references with the reads of one run (`Reads`)."""

    def __init__(self, edge: Edge, read: Reads) -> None:
        self._edge = edge
        self._read = read

    async def resolve(self, refs: Mapping[str, ModelRef]) -> dict[str, Target | ReplicateAPIError]:
        """Resolve each distinct reference (canonical text -> parsed) once, concurrently.
        Failures come back as values, except AuthenticationError, which is raised."""
        out: dict[str, Target | ReplicateAPIError] = {}

        async def one(text: str, ref: ModelRef) -> None:
            try:
                out[text] = await self._resolve_one(ref)
            except AuthenticationError:
                raise
            except ReplicateAPIError as exc:
                out[text] = exc

        async with anyio.create_task_group() as tg:
            for text, ref in refs.items():
                tg.start_soon(one, text, ref)
        return out

    async def _resolve_one(self, ref: ModelRef) -> Target:
        if ref.kind == "version":
            assert ref.version is not None  # a version reference always has one
            # No request: a fully cached run of a pinned version needs none. Its schema is read
            # later, for the rows the cache lacks (`execute`); a bare id has no schema to read.
            return Target("version", ref.version, ref.version, ref.model)
        name = f"{ref.owner}/{ref.name}"
        if ref.kind == "deployment":
            reply = await self._read(lambda: self._edge.request("GET", f"/v1/deployments/{name}"))
            release = (reply.body or {}).get("current_release") or {}
            version = release.get("version") or name
            model = release.get("model") or None
            # The release names its model and version; that version's schema checks the rows.
            schema = await self.version_schema(model, version) if model and version != name else None
            return Target("deployment", name, f"deployments/{name}@{version}", model, schema)
        reply = await self._read(lambda: self._edge.request("GET", f"/v1/models/{name}"))
        body = reply.body or {}
        latest_version = body.get("latest_version") or {}
        latest = latest_version.get("id")
        # models-get.yaml: latest_version carries the version's openapi_schema.
        schema = InputSchema.from_openapi(latest_version.get("openapi_schema"))
        if body.get("is_official") or not latest:
            # Official models run through the model endpoint; they are keyed by their latest
            # version when they expose one, so a new release still misses the cache.
            return Target("model", name, latest or name, name, schema)
        return Target("version", latest, latest, name, schema)

    async def version_schema(self, model: str | None, version: str | None) -> InputSchema | None:
        """The input schema of `model`'s `version` (GET /v1/models/{o}/{n}/versions/{id}), or
        None when it cannot be read: the service then validates the input itself. Raises
        AuthenticationError when the token is refused."""
        if not model or not version:
            return None
        try:
            reply = await self._read(
                lambda: self._edge.request("GET", f"/v1/models/{model}/versions/{version}")
            )
        except AuthenticationError:
            raise
        except ReplicateAPIError:
            return None
        return InputSchema.from_openapi((reply.body or {}).get("openapi_schema"))

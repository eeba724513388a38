"""Models, versions, deployments, hardware and account routes of the simulator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from replibatch.sim.context import PredictionBook, SimContext
from replibatch.sim.models import HARDWARE, SimModel
from replibatch.sim.responses import json_response as _json
from replibatch.sim.responses import problem

if TYPE_CHECKING:
    from replibatch.sim.trainings import TrainingService

__all__ = ["CatalogRoutes"]


class CatalogRoutes:
    """Read-only routes about what the simulator hosts: ``ctx.registry``, the run counts of
    `book`, and the models `trainings` created."""

    def __init__(self, ctx: SimContext, book: PredictionBook, trainings: TrainingService) -> None:
        self.ctx = ctx
        self.book = book
        self.trainings = trainings

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/models", self.list_models)
        router.add_get("/v1/models/{owner}/{name}", self.get_model)
        router.add_get("/v1/models/{owner}/{name}/versions", self.list_versions)
        router.add_get("/v1/models/{owner}/{name}/versions/{version_id}", self.get_version)
        router.add_get("/v1/deployments/{owner}/{name}", self.get_deployment)
        router.add_get("/v1/hardware", self.list_hardware)
        router.add_get("/v1/account", self.get_account)

    def _version_json(self, model: SimModel) -> dict[str, Any]:
        return {"id": model.version_id, "created_at": model.created_at,
                "cog_version": model.cog_version, "openapi_schema": model.openapi_schema}

    def _model_json(self, model: SimModel) -> dict[str, Any]:
        return {
            "url": f"{self.ctx.base_url}/{model.ref}",
            "owner": model.owner,
            "name": model.name,
            "description": model.description or None,
            "visibility": "public",
            "is_official": model.official,
            "github_url": None,
            "paper_url": None,
            "license_url": None,
            "run_count": self.book.runs.get(model.ref, 0),
            "cover_image_url": None,
            "default_example": None,
            "latest_version": None if model.official else self._version_json(model),
        }

    def _model(self, request: web.Request) -> SimModel | None:
        return self.ctx.registry.models.get(f"{request.match_info['owner']}/{request.match_info['name']}")

    async def list_models(self, request: web.Request) -> web.StreamResponse:
        results = [self._model_json(m) for m in self.ctx.registry.models.values()]
        return _json({"next": None, "previous": None, "results": results})

    async def get_model(self, request: web.Request) -> web.StreamResponse:
        model = self._model(request)
        ref = f"{request.match_info['owner']}/{request.match_info['name']}"
        created = self.trainings.model_json(ref)
        if created is not None:  # made by POST /v1/models, no version yet
            return _json(created)
        if model is None:
            return problem(404, "Not found", f"Model not found: {request.match_info['owner']}/"
                           f"{request.match_info['name']}")
        return _json(self._model_json(model))

    async def list_versions(self, request: web.Request) -> web.StreamResponse:
        model = self._model(request)
        if model is None:
            return problem(404, "Not found", "Model not found")
        # Newest first; a trained model has one version per training that pushed to it.
        versions = [m for m in self.ctx.registry.by_version.values() if m.ref == model.ref]
        results = [] if model.official else [self._version_json(m) for m in reversed(versions)]
        return _json({"next": None, "previous": None, "results": results})

    async def get_version(self, request: web.Request) -> web.StreamResponse:
        model = self.ctx.registry.by_version.get(request.match_info["version_id"])
        ref = f"{request.match_info['owner']}/{request.match_info['name']}"
        if model is None or model.official or model.ref != ref:
            return problem(404, "Not found", "Version not found")
        return _json(self._version_json(model))

    async def get_deployment(self, request: web.Request) -> web.StreamResponse:
        ref = f"{request.match_info['owner']}/{request.match_info['name']}"
        deployment = self.ctx.registry.deployments.get(ref)
        if deployment is None:
            return problem(404, "Not found", f"Deployment not found: {ref}")
        model = self.ctx.registry.models[deployment.model]
        return _json({
            "owner": deployment.owner,
            "name": deployment.name,
            "current_release": {
                "number": 1,
                "model": model.ref,
                "version": model.version_id,
                "created_at": model.created_at,
                "created_by": {"type": "organization", "username": deployment.owner,
                               "name": deployment.owner},
                "configuration": {
                    "hardware": deployment.hardware,
                    "min_instances": deployment.min_instances,
                    "max_instances": deployment.max_instances,
                },
            },
        })

    async def list_hardware(self, request: web.Request) -> web.StreamResponse:
        return _json([{"sku": sku, "name": name} for sku, name in HARDWARE.items()])

    async def get_account(self, request: web.Request) -> web.StreamResponse:
        return _json({"type": "user", "username": "replibatch-sim", "name": "Replibatch Simulator"})


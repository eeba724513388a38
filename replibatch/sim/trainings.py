"""The simulator's trainings: routes, lifecycle, and the versions trainings create.

Routes (``../shared/replicate-api/openapi.json``: trainings.create / list / get / cancel,
models.create):

- ``POST /v1/models/{owner}/{name}/versions/{version_id}/trainings`` starts a training of a
  trainable version (the demo models: see :mod:`replibatch.sim.trainers`) towards
  ``destination``, a model the account owns. A missing body field is a 422 like predictions';
  an unknown destination is the real service's 404 ``{"detail": "The specified training
  destination does not exist", "status": 404}`` (replicate/flux-fine-tuner#72): the API checks
  destinations on creation (replicate/replicate-python#117).
- ``GET /v1/trainings`` (newest first, paged like predictions), ``GET /v1/trainings/{id}``,
  ``POST /v1/trainings/{id}/cancel``.
- ``POST /v1/models`` creates an empty destination model (owner must be the account,
  ``replibatch-sim``, as the spec requires of models.create).

Real habits played: the create reply has only the keys the recording shows and its ``urls`` name
``/v1/predictions/{id}`` (cassettes/trainings-create.yaml), while a read names
``/v1/trainings/{id}`` and carries explicit nulls (cassettes/trainings-get.yaml). Trainings
create is not a create-prediction request: it draws on the general 3,000/min bucket (the
recorded create reply says ``ratelimit-remaining: 2999``, where prediction creates say 599), so
the server's middleware treats it as a read. Inputs that break the trainer's ``TrainingInput``
schema do not get a 422: the training is created and fails at once with ``Prediction input failed
validation: ...`` (the record quoted in replicate/replicate-python#308). Trainings.create takes no
``Cancel-After`` (the spec lists none), so trainings end ``canceled``, never ``aborted``.
On success the training's ``output`` is ``{"version": "dest/name:id", "weights": URL}`` (the
official client parses the destination out of ``output.version``) and the destination gains that
version, runnable by predictions. Like predictions created through the API, input, output, logs
and the weights file are deleted ``retention`` seconds after completion; the version stays.

Simulator options apply as to predictions: ``queue_delay`` (time ``starting``), ``predict_time``
(fixed training seconds instead of the trainer's ``setup + steps × seconds_per_step``),
``time_scale``, ``failure_rate`` (the training fails halfway with ``failure_message``),
``drop_after_create_rate`` / ``error_after_create_rate`` (the training exists, the reply is lost).
The faults decided before the handler (drop, slow, 5xx) see trainings.create as a read, since it
is one for rate limiting.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
from typing import Any, Protocol

from aiohttp import web

from replibatch.sim.cog import FileInput, InvalidField, OutputFile
from replibatch.sim.delivery import Blob
from replibatch.sim.faults import FaultDice, SimOptions
from replibatch.sim.models import HARDWARE, ModelRegistry, SimModel
from replibatch.sim.state import Clock, canonical_json, iso, new_prediction_id
from replibatch.sim.trainers import (
    train_kwargs,
    trainer_for,
    training_schema,
    training_validator,
)
from replibatch.sim.training_state import CreatedModel, Training, TrainingStats

__all__ = ["ACCOUNT", "TrainingService"]

ACCOUNT = "replibatch-sim"  # the username GET /v1/account answers
_MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")  # as replibatch._table.refs (lowercase)
_PROGRESS_LINES = 10


class SimHost(Protocol):
    """What the trainings need from the simulator app they are part of."""

    options: SimOptions
    registry: ModelRegistry
    clock: Clock
    dice: FaultDice
    base_url: str
    blobs: dict[str, Blob]

    def _fetch(self, uri: str) -> bytes: ...
    def _drop(self, request: web.Request, kind: str) -> web.StreamResponse: ...
    def _invalid(self, fields: list[InvalidField]) -> web.Response: ...
    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response: ...


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def _problem(status: int, title: str, detail: str) -> web.Response:
    body = {"type": f"urn:replibatch:sim:{title.lower().replace(' ', '-')}", "title": title,
            "status": status, "detail": detail}
    return web.Response(status=status, text=json.dumps(body), content_type="application/problem+json")


class TrainingService:
    """Trainings state and handlers; runs on the simulator's event loop.

    Construct it with the simulator app, then :meth:`add_routes`. Publishing happens at once: the
    trainable models' versions gain ``TrainingInput`` / ``TrainingOutput`` schemas, as Cog
    publishes them for models with a ``train()``.
    """

    def __init__(self, host: SimHost) -> None:
        self.host = host
        self.trainings: dict[str, Training] = {}
        self.order: list[Training] = []
        self.created_models: dict[str, CreatedModel] = {}
        self.stats = TrainingStats()
        for model in host.registry.models.values():
            self._publish_schema(model)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/models/{owner}/{name}/versions/{version_id}/trainings", self.create)
        router.add_get("/v1/trainings", self.list)
        router.add_get("/v1/trainings/{training_id}", self.get)
        router.add_post("/v1/trainings/{training_id}/cancel", self.cancel)
        router.add_post("/v1/models", self.create_model)

    async def stop(self) -> None:
        tasks = [t.task for t in self.order if t.task is not None and not t.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _publish_schema(self, model: SimModel) -> None:
        trainer = None if model.official else trainer_for(model.predictor)
        if trainer is not None:
            model.openapi_schema["components"]["schemas"].update(training_schema(trainer))

    # -- models.create: empty destinations ------------------------------------------------------
    def model_json(self, ref: str) -> dict[str, Any] | None:
        """``GET /v1/models/{ref}`` of a created model that has no version yet, else None."""
        made = self.created_models.get(ref)
        if made is None or ref in self.host.registry.models:
            return None
        return {"url": f"{self.host.base_url}/{ref}", "owner": made.owner, "name": made.name,
                "description": made.description, "visibility": made.visibility,
                "is_official": False, "github_url": None, "paper_url": None, "license_url": None,
                "run_count": 0, "cover_image_url": None, "default_example": None,
                "latest_version": None}

    async def create_model(self, request: web.Request) -> web.StreamResponse:
        body = await self.host._body(request)
        if isinstance(body, web.Response):
            return body
        missing = [InvalidField("required", name, f"{name} is required")
                   for name in ("owner", "name", "visibility", "hardware")
                   if not isinstance(body.get(name), str) or not body[name]]
        if missing:
            return self.host._invalid(missing)
        owner, name = body["owner"], body["name"]
        problems = []
        if not _MODEL_NAME.match(name):
            problems.append(InvalidField("format", "name", "Invalid model name"))
        if body["visibility"] not in ("public", "private"):
            problems.append(InvalidField("enum", "visibility", "Must be 'public' or 'private'"))
        if body["hardware"] not in HARDWARE:
            problems.append(InvalidField("enum", "hardware",
                                         "Unknown hardware; see GET /v1/hardware"))
        if problems:
            return self.host._invalid(problems)
        if owner != ACCOUNT:  # spec: the owner must be the account making the request
            return _problem(403, "Forbidden", f"You cannot create models owned by {owner}")
        ref = f"{owner}/{name}"
        if ref in self.host.registry.models or ref in self.created_models:
            return _problem(409, "Conflict", f"A model named {ref} already exists")
        description = body.get("description") if isinstance(body.get("description"), str) else None
        self.created_models[ref] = CreatedModel(owner, name, body["hardware"], body["visibility"],
                                                description)
        return _json(self.model_json(ref), 201)

    # -- trainings.create -----------------------------------------------------------------------
    async def create(self, request: web.Request) -> web.StreamResponse:
        ref = f"{request.match_info['owner']}/{request.match_info['name']}"
        model = self.host.registry.by_version.get(request.match_info["version_id"])
        if model is None or model.ref != ref or model.official:
            return _problem(404, "Not found", f"Version not found: {ref}:"
                            f"{request.match_info['version_id']}")
        trainer = trainer_for(model.predictor)
        if trainer is None:
            return _problem(422, "Invalid request", f"{ref} cannot be trained (it has no train())")
        body = await self.host._body(request)
        if isinstance(body, web.Response):
            return body
        inputs, destination = body.get("input"), body.get("destination")
        missing = [InvalidField("required", name, f"{name} is required")
                   for name, ok in (("destination", isinstance(destination, str) and destination),
                                    ("input", isinstance(inputs, dict))) if not ok]
        if missing:
            return self.host._invalid(missing)
        owner, _, name = str(destination).partition("/")
        if not _MODEL_NAME.match(owner) or not _MODEL_NAME.match(name):
            return self.host._invalid([InvalidField(
                "format", "destination", "destination must be 'owner/name'")])
        if destination not in self.created_models and destination not in self.host.registry.models:
            # The real body, status and detail only (replicate/flux-fine-tuner#72).
            return web.Response(
                status=404, content_type="application/problem+json",
                text=json.dumps({"detail": "The specified training destination does not exist",
                                 "status": 404}))
        if owner != ACCOUNT:  # the simulator's wording: no recording shows this case
            return _problem(403, "Forbidden", f"You do not have permission to push to {destination}")
        assert isinstance(inputs, dict) and isinstance(destination, str)
        training = Training(
            id=new_prediction_id(), seq=len(self.order), model=model, trainer=trainer,
            destination=destination, input=inputs, created=self.host.clock.now(),
            invalid=training_validator(trainer).errors(inputs),
        )
        self.trainings[training.id] = training
        self.order.append(training)
        self.stats.count_create(canonical_json(
            {"version": model.version_id, "destination": destination, "input": inputs}))
        training.task = asyncio.get_running_loop().create_task(self._run(training))
        # The after-create faults hit trainings as they hit predictions: the training exists, the
        # client learns nothing (a dropped connection, or a gateway 5xx).
        o, dice = self.host.options, self.host.dice
        faulty = dice.applies(o.fault_scope, True)
        if faulty and dice.roll(o.drop_after_create_rate):
            self.stats.count_fault("drop_after_create")
            return self.host._drop(request, "drop_after_create")
        if faulty and dice.roll(o.error_after_create_rate):
            from replibatch.sim.server import (  # (import cycle)
                _GATEWAY_REASONS,
                _gateway_error,
            )

            status = dice.choice(o.error_after_create_statuses)
            self.stats.count_fault(f"error_after_create_{status}")
            if status in _GATEWAY_REASONS:
                return _gateway_error(status)
            return _problem(status, "Internal server error", "Simulated server error; please retry.")
        return _json(training.to_json(self.host.base_url, self.host.clock, created_reply=True), 201)

    # -- lifecycle ------------------------------------------------------------------------------
    async def _run(self, t: Training) -> None:
        host, o = self.host, self.host.options
        scale = o.time_scale
        try:
            if t.invalid:
                # Shape of the error quoted in replicate/replicate-python#308.
                detail = [{"loc": ["body", *f.field.split(".")], "msg": f.description,
                           "type": f.type} for f in t.invalid]
                self._finish(t, "failed", "Prediction input failed validation: "
                             + json.dumps({"detail": detail}))
                return
            if o.queue_delay:
                await asyncio.sleep(o.queue_delay * scale)
            t.status, t.started = "processing", host.clock.now()
            fail = host.dice.roll(o.failure_rate)
            t.logs.append(f"Starting training of {t.model.ref} -> {t.destination}")
            loop = asyncio.get_running_loop()
            kwargs, weights = await loop.run_in_executor(None, self._train, t)
            t.logs.extend(t.trainer.describe(weights))
            nominal = o.predict_time if o.predict_time is not None else t.trainer.nominal_seconds(kwargs)
            await self._progress(t, int(kwargs.get("steps", 1)), nominal * scale, fail)
            if fail:
                self._finish(t, "failed", o.failure_message)
                return
            self._push(t, weights)
            self._finish(t, "succeeded")
        except asyncio.CancelledError:
            self._finish(t, "canceled")
            raise
        except Exception as exc:  # the trainer raised: the training fails, as on Replicate
            t.logs.append(f"Traceback (most recent call last):\n{type(exc).__name__}: {exc}")
            self._finish(t, "failed", str(exc) or type(exc).__name__)

    def _train(self, t: Training) -> tuple[dict[str, Any], Any]:
        """Runs on a worker thread: fetch the training files and learn from them."""
        kwargs = train_kwargs(t.trainer, t.input)
        for name in training_validator(t.trainer).uri_fields:
            if isinstance(kwargs.get(name), str):
                kwargs[name] = FileInput(self.host._fetch(kwargs[name]), name)
        return kwargs, t.trainer.train(**kwargs)

    async def _progress(self, t: Training, steps: int, duration: float, fail: bool) -> None:
        """Spread the training time over progress lines with percentages, as tqdm would log."""
        assert t.started is not None
        marks = min(_PROGRESS_LINES, steps)
        for k in range(1, marks + 1):
            delay = t.started + duration * k / marks - self.host.clock.now()
            if delay > 0:
                await asyncio.sleep(delay)
            step = steps * k // marks
            percent = 100 * step // steps
            bar = ("#" * (percent // 10)).ljust(10)
            loss = 2.5 * (0.35 ** (k / marks)) + 0.05
            t.logs.append(f"train: {percent:3d}%|{bar}| {step}/{steps} [loss={loss:.4f}]")
            if fail and k * 2 >= marks:
                t.logs.append("RuntimeError: simulated trainer crash")
                return

    def _push(self, t: Training, weights: Any) -> None:
        """Create the trained version at the destination and point the output at it."""
        host = self.host
        owner, name = t.destination.split("/", 1)
        made = self.created_models.get(t.destination)
        current = host.registry.models.get(t.destination)
        hardware = made.hardware if made is not None else current.hardware if current else "cpu"
        payload = json.dumps(weights.to_json(), sort_keys=True).encode()
        predictor = t.trainer.trained_predictor(t.model.predictor, weights)
        version = SimModel(owner, name, predictor, hardware, kind=t.model.kind,
                           description=(made.description if made else None)
                           or f"Fine-tune of {t.model.ref}",
                           created_at=iso(host.clock.wall(host.clock.now())))
        version.version_id = hashlib.sha256(
            f"{t.destination}\n{t.id}\n".encode() + payload).hexdigest()
        version.setup()
        self._publish_schema(version)
        host.registry.models[t.destination] = version
        host.registry.by_version[version.version_id] = version
        key = f"{t.id}/weights.json"
        # Never padded to output_file_bytes: the weights are read back as JSON.
        host.blobs[key] = Blob(OutputFile(payload, "weights.json", "application/json"), len(payload))
        t.file_keys.append(key)
        files_at = host.options.output_url_base or host.base_url
        t.output = {"version": f"{t.destination}:{version.version_id}",
                    "weights": f"{files_at}/delivery/{key}"}
        t.logs.append(f"Training complete: pushed {t.output['version']}")

    def _finish(self, t: Training, status: str, error: str | None = None) -> None:
        if t.terminal:
            return
        now = self.host.clock.now()
        t.status, t.error, t.completed = status, error, now
        # spec (trainings.get): terminated trainings report predict_time (running time only)
        # and total_time.
        t.metrics = {"total_time": round(now - t.created, 6)}
        if t.started is not None:
            t.metrics["predict_time"] = round(now - t.started, 6)
        if status == "succeeded":
            self.stats.count_succeeded()
        t.done.set()
        retention = self.host.options.retention * self.host.options.time_scale
        asyncio.get_running_loop().call_later(retention, self._expire, t)

    def _expire(self, t: Training) -> None:
        """Delete input, output, logs and weights file; the pushed version stays."""
        t.data_removed, t.input, t.output, t.logs = True, {}, None, []
        for key in t.file_keys:
            self.host.blobs.pop(key, None)
        t.file_keys.clear()

    # -- reads and cancel -----------------------------------------------------------------------
    def _json(self, t: Training) -> dict[str, Any]:
        return t.to_json(self.host.base_url, self.host.clock)

    async def get(self, request: web.Request) -> web.StreamResponse:
        t = self.trainings.get(request.match_info["training_id"])
        if t is None:
            return _problem(404, "Not found", "Training not found")
        return _json(self._json(t))

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        t = self.trainings.get(request.match_info["training_id"])
        if t is None:
            return _problem(404, "Not found", "Training not found")
        if not t.terminal:
            self._finish(t, "canceled")
            if t.task is not None:
                t.task.cancel()
            self.stats.count_cancel()
        return _json(self._json(t))

    async def list(self, request: web.Request) -> web.StreamResponse:
        # Newest first; the cursor is the position to continue below (as predictions.list).
        start = len(self.order)
        cursor = request.query.get("cursor")
        if cursor:
            try:
                start = int(base64.urlsafe_b64decode(cursor.encode() + b"==").decode())
            except (ValueError, binascii.Error):
                return _problem(400, "Bad request", "Invalid cursor")
        size = self.host.options.page_size
        start = max(0, min(start, len(self.order)))
        stop = max(0, start - size)
        page = [self._json(self.order[i]) for i in range(start - 1, stop - 1, -1)]
        return _json({
            "next": self._page_url(stop) if stop > 0 else None,
            "previous": self._page_url(min(len(self.order), start + size))
            if start < len(self.order) else None,
            "results": page,
        })

    def _page_url(self, position: int) -> str:
        token = base64.urlsafe_b64encode(str(position).encode()).decode().rstrip("=")
        return f"{self.host.base_url}/v1/trainings?cursor={token}"

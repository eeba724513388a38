"""The Files API (``/v1/files``) and output delivery routes of the simulator."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aiohttp import web

from replibatch.sim.context import SimContext
from replibatch.sim.delivery import serve_blob
from replibatch.sim.responses import json_response as _json
from replibatch.sim.responses import problem
from replibatch.sim.state import FileRecord, new_file_id

__all__ = ["MAX_UPLOAD", "FileRoutes"]

MAX_UPLOAD = 100 * 1024 * 1024
_MAX_UPLOAD = MAX_UPLOAD


class FileRoutes:
    """Uploads, their metadata and downloads (``ctx.files``), and output files (``ctx.blobs``)."""

    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/files", self.create_file)
        router.add_get("/v1/files", self.list_files)
        router.add_get("/v1/files/{file_id}", self.get_file)
        router.add_delete("/v1/files/{file_id}", self.delete_file)
        router.add_get("/v1/files/{file_id}/download", self.download_file)
        router.add_get("/delivery/{prediction_id}/{filename}", self.delivery)

    async def create_file(self, request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > _MAX_UPLOAD + 65536:
            return problem(413, "Content Too Large", "Files must be less than 100MB in size")
        form = await request.post()
        content = form.get("content")
        if not isinstance(content, web.FileField):
            return problem(422, "Invalid request", "content is required (multipart file field)")
        data = content.file.read()
        if len(data) > _MAX_UPLOAD:
            return problem(413, "Content Too Large", "Files must be less than 100MB in size")
        metadata: Any = {}
        if isinstance(form.get("metadata"), str):
            try:
                metadata = json.loads(str(form["metadata"]))
            except ValueError:
                return problem(422, "Invalid request", "metadata must be a JSON object")
        if not isinstance(metadata, dict):
            return problem(422, "Invalid request", "metadata must be a JSON object")
        name = str(form.get("filename") or content.filename or "file")
        content_type = str(form.get("type") or content.content_type or "application/octet-stream")
        record = FileRecord(
            id=new_file_id(), name=name, content_type=content_type, data=data, metadata=metadata,
            created=self.ctx.clock.now(), sha256=hashlib.sha256(data).hexdigest(),
            md5=hashlib.md5(data).hexdigest(),  # noqa: S324 - an etag, as the real API sends
        )
        self.ctx.files[record.id] = record
        return _json(record.to_json(self.ctx.base_url, self.ctx.clock), 201)

    async def list_files(self, request: web.Request) -> web.StreamResponse:
        results = [f.to_json(self.ctx.base_url, self.ctx.clock) for f in reversed(self.ctx.files.values())]
        return _json({"next": None, "previous": None, "results": results})

    def _file(self, request: web.Request) -> FileRecord | None:
        return self.ctx.files.get(request.match_info["file_id"])

    async def get_file(self, request: web.Request) -> web.StreamResponse:
        record = self._file(request)
        if record is None:
            return problem(404, "Not found", "File not found")
        return _json(record.to_json(self.ctx.base_url, self.ctx.clock))

    async def delete_file(self, request: web.Request) -> web.StreamResponse:
        if self.ctx.files.pop(request.match_info["file_id"], None) is None:
            return problem(404, "Not found", "File not found")
        return web.Response(status=204)

    async def download_file(self, request: web.Request) -> web.StreamResponse:
        record = self._file(request)
        if record is None:
            return problem(404, "Not found", "File not found")
        return web.Response(body=record.data, content_type=record.content_type)

    async def delivery(self, request: web.Request) -> web.StreamResponse:
        key = f"{request.match_info['prediction_id']}/{request.match_info['filename']}"
        ctx = self.ctx
        return await serve_blob(request, ctx.blobs.get(key), ctx.options, ctx.dice, ctx.stats)


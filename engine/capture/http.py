"""Listing and download of stored captures over the engine's aiohttp app, behind the session token.

    GET /captures                                   {"captures": [capture, ...]} newest first
    GET /captures/{capture_id}                      capture: id, name, created, files [{name, size, sha256}], meta
    GET /captures/{capture_id}/files/{file_name}    the file's bytes (Content-Disposition names it)

Every request needs ``Authorization: Bearer <token>`` with a token the engine accepts in Hello
(plain or signed, `Engine.authenticate`, with its failed-auth rate limit).
Ids must be 32 hex digits and file names must be files the index lists for that capture, so no
request can reach a path outside the store (path traversal answers 404).

Register on an app with ``add_capture_routes(app, engine)``; the engine opens its store on the
first request (so an engine that never serves a capture creates no files).
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
from typing import TYPE_CHECKING

from aiohttp import web

from engine.capture.store import CaptureStore, StoreError, UnknownCaptureError
from engine.protocol import ProtocolError

if TYPE_CHECKING:
    from engine.server import Engine

_ENGINE = web.AppKey("xrseg_capture_engine", object)


def add_capture_routes(app: web.Application, engine: Engine) -> None:
    """Add the capture routes to `app` (see the module docstring)."""
    app[_ENGINE] = engine
    app.router.add_get("/captures", _list)
    app.router.add_get("/captures/{capture_id}", _one)
    app.router.add_get("/captures/{capture_id}/files/{file_name}", _file)


async def _store(request: web.Request) -> CaptureStore:
    engine: Engine = request.app[_ENGINE]  # type: ignore[assignment]
    token = request.headers.get("Authorization", "")
    given = token[7:] if token.startswith("Bearer ") else ""
    try:
        engine.authenticate(given, request.remote or "")
    except ProtocolError as exc:
        raise web.HTTPUnauthorized(
            text=json.dumps({"code": "unauthorized", "message": f"send Authorization: Bearer <session token>: {exc}"}),
            content_type="application/json",
            headers={"WWW-Authenticate": "Bearer"},
        ) from None
    return await engine.capture_store()


def _not_found(message: str) -> web.HTTPNotFound:
    return web.HTTPNotFound(text=json.dumps({"code": "not_found", "message": message}), content_type="application/json")


async def _list(request: web.Request) -> web.Response:
    store = await _store(request)
    captures = await asyncio.to_thread(store.list)
    return web.json_response({"captures": [c.as_json() for c in captures]})


async def _one(request: web.Request) -> web.Response:
    store = await _store(request)
    try:
        capture = await asyncio.to_thread(store.get, request.match_info["capture_id"])
    except UnknownCaptureError as exc:
        raise _not_found(str(exc)) from None
    return web.json_response(capture.as_json())


async def _file(request: web.Request) -> web.StreamResponse:
    store = await _store(request)
    capture_id, file_name = request.match_info["capture_id"], request.match_info["file_name"]
    try:
        path = await asyncio.to_thread(store.path, capture_id, file_name)
        capture = await asyncio.to_thread(store.get, capture_id)
    except (UnknownCaptureError, StoreError) as exc:
        raise _not_found(str(exc)) from None
    kind = {".glb": "model/gltf-binary", ".ply": "application/octet-stream", ".obj": "model/obj"}.get(
        path.suffix, mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    )
    download = f"{capture.name.replace(' ', '_')}_{file_name}"
    return web.FileResponse(
        path, headers={"Content-Type": kind, "Content-Disposition": f'attachment; filename="{download}"'}
    )

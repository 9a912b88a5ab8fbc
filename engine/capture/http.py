"""Listing and download of stored captures over the engine's aiohttp app, behind the session token.

    GET /captures                                   {"captures": [capture, ...]} newest first
    GET /captures/{capture_id}                      capture: id, name, created, files [{name, size, sha256}], meta
    GET /captures/{capture_id}/files/{file_name}    the file's bytes (Content-Disposition names it)

Every request needs ``Authorization: Bearer <token>`` with a token the engine accepts in Hello
(EngineConfig.tokens; none configured means "accept any", for local demos only, as for Hello).
Ids must be 32 hex digits and file names must be files the index lists for that capture, so no
request can reach a path outside the store (path traversal answers 404).

Register on an app with ``add_capture_routes(app, tokens, store_dir)``; the store is opened on
the first request (so an engine that never serves a capture creates no files).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import mimetypes
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from engine.capture.store import CaptureStore, StoreError, UnknownCaptureError, default_store_dir

_STORE = web.AppKey("xrseg_capture_store", dict)


def add_capture_routes(app: web.Application, tokens: Sequence[str], store_dir: Path | None = None) -> None:
    """Add the capture routes to `app` (see the module docstring)."""
    app[_STORE] = {"dir": store_dir or default_store_dir(), "tokens": tuple(tokens), "store": None}
    app.router.add_get("/captures", _list)
    app.router.add_get("/captures/{capture_id}", _one)
    app.router.add_get("/captures/{capture_id}/files/{file_name}", _file)


async def _store(request: web.Request) -> CaptureStore:
    state = request.app[_STORE]
    token = request.headers.get("Authorization", "")
    given = token[7:] if token.startswith("Bearer ") else ""
    if state["tokens"] and not any(hmac.compare_digest(given, t) for t in state["tokens"]):
        raise web.HTTPUnauthorized(
            text=json.dumps({"code": "unauthorized", "message": "send Authorization: Bearer <session token>"}),
            content_type="application/json",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if state["store"] is None:
        state["store"] = await asyncio.to_thread(CaptureStore, state["dir"])
    return state["store"]


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

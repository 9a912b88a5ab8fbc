"""The engine's own web page and its HTTP rules, on the WebRTC signalling app (aiohttp).

    GET /                 the page (clients/web/dist/index.html); its files beside it
    GET /web/clips...     RGB-D clips for the page (engine/transport/web_clips.py); token required

HTTP rules for every route of the app (page, offer, clips, health):
- Auth: the page's data calls need the session token, as `Authorization: Bearer TOKEN` (the
  offer carries it in its JSON body, as before). The page itself is public: it holds nothing
  until the user gives it the token (or opens the URL `xrseg serve` prints, whose #token=...
  fragment never reaches a server or a log).
- Origins: a request whose Origin is not this server's own origin is refused with 403 unless
  that origin was configured (`--cors-origin`); configured origins get CORS headers, and their
  preflight (OPTIONS) is answered. Refusing, rather than only leaving out the CORS headers, keeps
  another site from making the engine do work (open a session, read a clip) that the browser
  would merely hide the answer of.

The built page ships in the Python package (clients/web/dist), so serving it needs no Node.
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from aiohttp import web

from engine.protocol import ErrorCode
from engine.server import Engine
from engine.transport.web_clips import Clip, ClipLibrary

log = logging.getLogger(__name__)

PAGE_DIR = Path(__file__).resolve().parents[2] / "clients" / "web" / "dist"
_ALLOWED_HEADERS = "Authorization, Content-Type"
_ALLOWED_METHODS = "GET, POST, OPTIONS"


@dataclass(frozen=True)
class WebPageConfig:
    """What the web page routes serve.

    Attributes:
        cors_origins: origins (scheme://host:port) of pages elsewhere allowed to call this engine;
            "*" allows any (local experiments only). Empty: same origin only.
        clips: RGB-D clips offered to the page as sources, by name (opened by the assembly,
            xrseg/clips.py: the engine reads no folders itself).
        page_dir: the built page (index.html, app.js, style.css).
    """

    cors_origins: tuple[str, ...] = ()
    clips: tuple[Clip, ...] = ()
    page_dir: Path = PAGE_DIR


def add_page_routes(app: web.Application, engine: Engine, config: WebPageConfig) -> None:
    """Register the page, the clip routes and the origin/CORS middleware on `app` (before it starts)."""
    clips = ClipLibrary(config.clips)
    index = config.page_dir / "index.html"
    if not index.is_file():
        log.warning("web page not built: %s missing (cd clients/web && npm install && npm run build)", index)

    async def page(request: web.Request) -> web.StreamResponse:
        if not index.is_file():
            return web.Response(status=404, text=f"the web page is not built: {index} is missing")
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    async def clip_list(request: web.Request) -> web.Response:
        _authorize(request, engine)
        return web.json_response({"clips": [asdict(c) for c in clips.list()]})

    async def clip_frame(request: web.Request) -> web.Response:
        _authorize(request, engine)
        name = request.match_info["name"]
        if not clips.has(name):
            raise _json_error(404, ErrorCode.INVALID_FIELD, f"no clip {name!r}; GET /web/clips lists them")
        try:
            index_ = int(request.match_info["index"])
            data = await clips.frame_message(name, index_)
        except (ValueError, IndexError):
            raise _json_error(
                404, ErrorCode.INVALID_FIELD, f"clip {name!r} has frames 0..{clips.length(name) - 1}"
            ) from None
        return web.Response(body=data, content_type="application/octet-stream")

    app.middlewares.append(_origin_middleware(config.cors_origins))
    app.router.add_get("/", page)
    app.router.add_get("/web/clips", clip_list)
    app.router.add_get("/web/clips/{name}/frames/{index}", clip_frame)
    for name in ("app.js", "style.css"):
        app.router.add_get(f"/{name}", _file_handler(config.page_dir / name))


def _file_handler(path: Path):  # noqa: ANN202 (an aiohttp handler)
    async def serve_file(request: web.Request) -> web.StreamResponse:
        if not path.is_file():
            return web.Response(status=404, text=f"{path.name} is not built")
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    return serve_file


def _authorize(request: web.Request, engine: Engine) -> None:
    auth = request.headers.get("Authorization", "")
    token = auth[7:] if auth.startswith("Bearer ") else ""
    tokens = engine.config.tokens
    if not token or (tokens and not any(hmac.compare_digest(token, t) for t in tokens)):
        raise _json_error(
            401,
            ErrorCode.UNAUTHORIZED,
            "send the session token as 'Authorization: Bearer TOKEN'; ask the engine operator",
        )


def _json_error(status: int, code: ErrorCode, message: str) -> web.HTTPException:
    """An HTTP error with the same {"code", "message"} body as the offer endpoint's errors."""
    kinds: dict[int, type[web.HTTPException]] = {
        401: web.HTTPUnauthorized,
        404: web.HTTPNotFound,
    }
    body = json.dumps({"code": str(code), "message": message})
    return kinds[status](text=body, content_type="application/json")


def _origin_middleware(allowed: tuple[str, ...]):  # noqa: ANN202 (aiohttp middleware type)
    allow_any = "*" in allowed

    @web.middleware
    async def origin(request: web.Request, handler):  # noqa: ANN001, ANN202
        requester = request.headers.get("Origin")
        own = f"{request.scheme}://{request.host}"
        if requester is None or requester == own:
            if request.method == "OPTIONS":
                return web.Response(status=204)
            return await handler(request)
        if not (allow_any or requester in allowed):
            return web.json_response(
                {
                    "code": str(ErrorCode.UNAUTHORIZED),
                    "message": f"origin {requester} may not call this engine; "
                    f"start it with --cors-origin {requester}",
                },
                status=403,
            )
        headers = {
            "Access-Control-Allow-Origin": requester,
            "Access-Control-Allow-Headers": _ALLOWED_HEADERS,
            "Access-Control-Allow-Methods": _ALLOWED_METHODS,
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        }
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=headers)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(headers)
            raise
        response.headers.update(headers)
        return response

    return origin

"""/health and /metrics over HTTP (aiohttp), behind a bearer token or on an admin-only bind.

    GET /health    {"status": "ok", "sessions": n, "peers": n}        counts only, never ids
    GET /metrics   Prometheus text exposition of the engine's registry (engine/metrics.py)

With require_auth, a request needs `Authorization: Bearer <token>` that verifies like a client's
hello (engine/auth.py; failures count toward the address's failed-auth limit). Without it, the
routes are meant for a separate admin bind (e.g. 127.0.0.1 only; engine/app.py).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from engine.metrics import CONTENT_TYPE
from engine.protocol import ErrorCode, ProtocolError
from engine.server import Engine


def add_admin_routes(
    app: web.Application, engine: Engine, peers: Callable[[], int], require_auth: bool
) -> None:
    async def health(request: web.Request) -> web.Response:
        if (denied := _check(request, engine, require_auth)) is not None:
            return denied
        return web.json_response({"status": "ok", "sessions": len(engine.sessions), "peers": peers()})

    async def metrics(request: web.Request) -> web.Response:
        if (denied := _check(request, engine, require_auth)) is not None:
            return denied
        return web.Response(body=engine.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)


def _check(request: web.Request, engine: Engine, require_auth: bool) -> web.Response | None:
    if not require_auth:
        return None
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    try:
        engine.authenticate(token, request.remote or "")
    except ProtocolError as exc:
        return web.json_response(
            {
                "code": str(ErrorCode.UNAUTHORIZED),
                "message": f"{exc.message} (send Authorization: Bearer <token>)",
            },
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return None

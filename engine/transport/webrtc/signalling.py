"""HTTP signalling for the WebRTC transport (aiohttp): offer/answer, health, metrics.

    POST /webrtc/offer   {"sdp", "type": "offer", "token", "session_id"?, "client"?, "video_pts_per_frame"?}
                      -> {"sdp", "type": "answer", "session_id", "model", "limits"}
    GET  /health         {"status": "ok", "sessions", "peers"}
    GET  /metrics        {"sessions", "peers": [per-peer counters, rates, session stats],
                          "recently_closed": [final counters of the last 16 closed peers]}

The token authenticates exactly as the WebSocket hello does (Engine.open_session). An offer that
names a session_id resumes that session (after a dropped connection or a killed client); any
peer still attached to it is closed first. aiortc has no ICE restart, so a reconnect is a new
peer connection resuming the same session.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from dataclasses import asdict
from typing import Any

from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InvalidAccessError, InvalidStateError

from engine.capture.http import add_capture_routes
from engine.protocol import ErrorCode, Hello, ProtocolError
from engine.server import Engine
from engine.transport.webrtc.alignment import VIDEO_CLOCK_HZ
from engine.transport.webrtc.ice import host_candidates, rtc_configuration
from engine.transport.webrtc.peer import RtcPeer
from engine.transport.webrtc.settings import WebRTCConfig

log = logging.getLogger(__name__)

DEFAULT_PTS_PER_FRAME = VIDEO_CLOCK_HZ // 15


class WebRTCTransport:
    """Serves an Engine's WebRTC front door. Lifecycle: start() -> ... -> stop().

    To serve it from an existing aiohttp app instead, call add_routes(app) and manage peers
    with close_all() on shutdown.
    """

    def __init__(self, engine: Engine, config: WebRTCConfig | None = None) -> None:
        self.engine = engine
        self.config = config if config is not None else WebRTCConfig()
        self.peers: dict[str, RtcPeer] = {}
        self.recently_closed: deque[dict[str, Any]] = deque(maxlen=16)  # final counters of closed peers
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("webrtc transport not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/webrtc/offer", self._offer)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        add_capture_routes(app, self.engine.config.tokens)  # GET /captures... (engine/capture/http.py)

    async def start(self) -> None:
        app = web.Application(client_max_size=self.config.max_offer_bytes)
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self._port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("webrtc signalling on %s", self.url)

    async def stop(self) -> None:
        await self.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def close_all(self) -> None:
        for peer in list(self.peers.values()):
            await peer.close("engine stopping")

    # -- handlers ------------------------------------------------------------------------------

    async def _offer(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, ErrorCode.MALFORMED, "offer body must be JSON: {sdp, type, token, ...}")
        try:
            offer, hello, pts_per_frame = _parse_offer(body)
            session = self.engine.open_session(hello)
        except ProtocolError as exc:
            return _error(401 if exc.code == ErrorCode.UNAUTHORIZED else 400, exc.code, exc.message)
        resumed = hello.session_id is not None
        if not offer.sdp.startswith("v=0") or "\nm=application " not in offer.sdp:
            if not resumed:
                await self.engine.close_session(session)
            return _error(
                400,
                ErrorCode.MALFORMED,
                "offer SDP has no data channel section: create the 'xrseg' data channel before createOffer",
            )
        old = self.peers.pop(session.session_id, None)
        if old is not None:
            await old.close("replaced by a new connection of the same session")
        pc = RTCPeerConnection(rtc_configuration(self.config.ice_servers))
        peer = RtcPeer(self.engine, session, pc, self.config, pts_per_frame, self._forget)
        self.peers[session.session_id] = peer
        peer.start()
        try:
            await pc.setRemoteDescription(offer)
            answer = await pc.createAnswer()
            with host_candidates(self.config.host_addresses):
                await pc.setLocalDescription(answer)
        except (ValueError, InvalidAccessError, InvalidStateError) as exc:
            await peer.close(f"bad offer: {exc}", end_session=not resumed)
            return _error(400, ErrorCode.MALFORMED, f"offer SDP rejected: {exc}")
        log.info("session %s: webrtc peer %s", session.session_id, "resumed" if resumed else "opened")
        return web.json_response(
            {
                "sdp": pc.localDescription.sdp,
                "type": pc.localDescription.type,
                "session_id": session.session_id,
                "model": self.engine.model.name,
                "limits": asdict(self.engine.config.limits),
            }
        )

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok", "sessions": len(self.engine.sessions), "peers": len(self.peers)}
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        peers = [await peer.metrics() for peer in list(self.peers.values())]
        closed = list(self.recently_closed)
        return web.json_response(
            {"sessions": len(self.engine.sessions), "peers": peers, "recently_closed": closed}
        )

    def _forget(self, peer: RtcPeer) -> None:
        self.recently_closed.append(peer.counters())
        if self.peers.get(peer.session.session_id) is peer:
            del self.peers[peer.session.session_id]


def _parse_offer(body: Any) -> tuple[RTCSessionDescription, Hello, int]:
    if not isinstance(body, dict):
        raise ProtocolError(ErrorCode.MALFORMED, "offer body must be a JSON object")
    sdp, kind, token = body.get("sdp"), body.get("type"), body.get("token")
    if not isinstance(sdp, str) or kind != "offer":
        raise ProtocolError(ErrorCode.INVALID_FIELD, "offer needs 'sdp' (string) and 'type': 'offer'")
    if not isinstance(token, str):
        raise ProtocolError(
            ErrorCode.UNAUTHORIZED, "offer needs the session 'token'; ask the engine operator for one"
        )
    session_id, client = body.get("session_id"), body.get("client", "")
    if session_id is not None and not isinstance(session_id, str):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "'session_id' must be a string (the one to resume)")
    pts = body.get("video_pts_per_frame", DEFAULT_PTS_PER_FRAME)
    if not isinstance(pts, int) or isinstance(pts, bool) or not 1 <= pts <= VIDEO_CLOCK_HZ:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"'video_pts_per_frame' must be an integer in 1..{VIDEO_CLOCK_HZ}"
        )
    hello = Hello(token=token, client=client if isinstance(client, str) else "", session_id=session_id)
    return RTCSessionDescription(sdp=sdp, type="offer"), hello, pts


def _error(status: int, code: ErrorCode, message: str) -> web.Response:
    return web.json_response({"code": str(code), "message": message}, status=status)

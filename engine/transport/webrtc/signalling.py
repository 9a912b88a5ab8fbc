"""HTTP signalling for the WebRTC transport (aiohttp): offer/answer, health, metrics.

    POST /webrtc/offer   {"sdp", "type": "offer", "token", "session_id"?, "client"?, "video_pts_per_frame"?}
                      -> {"sdp", "type": "answer", "session_id", "model", "limits"}
    GET  /health, /metrics   behind a bearer token (engine/transport/admin.py)

The token authenticates exactly as the WebSocket hello does (Engine.open_session), and failed
offers count toward the address's failed-auth limit. An offer that names a session_id resumes
that session (only for the identity that opened it); any peer still attached to it is closed
first. aiortc has no ICE restart, so a reconnect is a new peer connection resuming the same
session. Per-peer counters (`RtcPeer.metrics()`) stay in-process: no session id is served.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from dataclasses import asdict
from typing import Any

from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InvalidAccessError, InvalidStateError

from engine.capture.http import add_capture_routes
from engine.protocol import ErrorCode, Hello, ProtocolError
from engine.protocol.channels import VIDEO_CLOCK_HZ
from engine.server import Engine
from engine.transport.admin import add_admin_routes
from engine.transport.web_page import add_page_routes
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

    def __init__(
        self, engine: Engine, config: WebRTCConfig | None = None, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.engine = engine
        self.config = config if config is not None else WebRTCConfig()
        self._ssl = ssl_context
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
        return f"{'https' if self._ssl is not None else 'http'}://{self.config.host}:{self.port}"

    def add_routes(self, app: web.Application) -> None:
        """The offer endpoint only; /health and /metrics come from engine/transport/admin.py."""
        app.router.add_post("/webrtc/offer", self._offer)
        if self.config.page is not None:  # the browser page, its clips, origin rules
            add_page_routes(app, self.engine, self.config.page)
        add_capture_routes(app, self.engine)  # GET /captures... (engine/capture/http.py)

    async def start(self) -> None:
        """Serve the offer endpoint plus /health and /metrics (bearer token) on config.host:port."""
        app = web.Application(client_max_size=self.config.max_offer_bytes)
        self.add_routes(app)
        add_admin_routes(app, self.engine, lambda: len(self.peers), require_auth=True)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, ssl_context=self._ssl)
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
        except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep, a 5000-digit number
            return _error(400, ErrorCode.MALFORMED, "offer body must be JSON: {sdp, type, token, ...}")
        address = request.remote or ""
        gate = self.engine.gate
        if (refused := gate.admit(address)) is not None:
            self.engine.metrics.connections_refused.labels("webrtc", refused).inc()
            return _error(503, ErrorCode.OVERLOADED, "too many connections; try again later")
        try:
            offer, hello, pts_per_frame = _parse_offer(body)
            session = self.engine.open_session(hello, address)
        except ProtocolError as exc:
            await asyncio.sleep(self.engine.refusal_delay(address))  # a blocked guesser waits (server.py)
            gate.greeted(address)
            gate.closed()
            return _error(401 if exc.code == ErrorCode.UNAUTHORIZED else 400, exc.code, exc.message)
        gate.greeted(address)
        resumed = hello.session_id is not None
        if not offer.sdp.startswith("v=0") or "\nm=application " not in offer.sdp:
            gate.closed()
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
        self.engine.metrics.connections.labels("webrtc").inc()
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

    def _forget(self, peer: RtcPeer) -> None:
        self.recently_closed.append(peer.counters())
        self.engine.gate.closed()
        self.engine.metrics.connections.labels("webrtc").dec()
        if self.peers.get(peer.session.session_id) is peer:
            del self.peers[peer.session.session_id]


def _parse_offer(body: Any) -> tuple[RTCSessionDescription, Hello, int]:
    if not isinstance(body, dict):
        raise ProtocolError(ErrorCode.MALFORMED, "offer body must be a JSON object")
    sdp, kind, token = body.get("sdp"), body.get("type"), body.get("token")
    if not isinstance(sdp, str) or kind != "offer":
        raise ProtocolError(ErrorCode.INVALID_FIELD, "offer needs 'sdp' (string) and 'type': 'offer'")
    if not isinstance(token, str) or not token:
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

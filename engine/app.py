"""The one place that assembles a server: Engine + WebSocket + HTTP (WebRTC offers, /health,
/metrics) + an optional admin bind, with TLS on every public listener when a certificate is set.

`xrseg serve` (engine/cli.py, flags in engine/options.py; `xrseg webrtc serve` is the same command) builds a ServeConfig and
call `run_until_stopped`; tests and benches use `XrsegServer` directly.

    ws(s)://HOST:PORT            WebSocket sessions (engine/transport/websocket.py)
    http(s)://HOST:WEBRTC_PORT   POST /webrtc/offer; GET /health, /metrics with a bearer token
    http://ADMIN_HOST:ADMIN_PORT GET /health, /metrics without a token (bind it to loopback or an
                                 operator network only)
"""

from __future__ import annotations

import asyncio
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from engine.config import EngineConfig
from engine.server import Engine
from engine.transport.admin import add_admin_routes
from engine.transport.webrtc import WebRTCConfig, WebRTCTransport
from engine.transport.websocket import WebSocketTransport
from models.interfaces import SegmentationModel


@dataclass(frozen=True)
class TlsConfig:
    """A PEM certificate (chain) and its private key; both listeners use them."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load TLS certificate {self.cert} / key {self.key}: {exc}") from None
        return context


@dataclass(frozen=True)
class ServeConfig:
    """What `xrseg serve` runs.

    Attributes:
        engine: the engine (its host and port are the WebSocket's; port 0 picks a free one).
        websocket: serve the WebSocket transport.
        webrtc: WebRTC signalling and its settings (its host/port are the HTTP listener's);
            None for no HTTP listener at all.
        tls: certificate for wss:// and https://; None for plain ws:// and http://.
        admin_host, admin_port: a separate, unauthenticated /health + /metrics bind; None for none.
    """

    engine: EngineConfig
    websocket: bool = True
    webrtc: WebRTCConfig | None = None
    tls: TlsConfig | None = None
    admin_host: str = "127.0.0.1"
    admin_port: int | None = None


class XrsegServer:
    """Lifecycle: `async with XrsegServer(config) as server:` (or start() / stop())."""

    def __init__(self, config: ServeConfig, model: SegmentationModel | None = None) -> None:
        self.config = config
        self.engine = Engine(config.engine, model)
        self.websocket: WebSocketTransport | None = None
        self.webrtc: WebRTCTransport | None = None
        self._admin: web.AppRunner | None = None
        self._admin_port: int | None = None

    async def start(self) -> None:
        context = self.config.tls.server_context() if self.config.tls is not None else None
        await self.engine.start()
        try:
            if self.config.websocket:
                self.websocket = WebSocketTransport(self.engine, ssl_context=context)
                await self.websocket.start()
            if self.config.webrtc is not None:
                self.webrtc = WebRTCTransport(self.engine, self.config.webrtc, ssl_context=context)
                await self.webrtc.start()
            if self.config.admin_port is not None:
                await self._start_admin()
        except BaseException:
            await self.stop()
            raise

    async def _start_admin(self) -> None:
        app = web.Application()
        add_admin_routes(
            app, self.engine, lambda: len(self.webrtc.peers) if self.webrtc else 0, require_auth=False
        )
        self._admin = web.AppRunner(app, access_log=None)
        await self._admin.setup()
        site = web.TCPSite(self._admin, self.config.admin_host, self.config.admin_port)
        await site.start()
        self._admin_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin = None
        if self.webrtc is not None:
            await self.webrtc.stop()
            self.webrtc = None
        if self.websocket is not None:
            await self.websocket.stop()
            self.websocket = None
        await self.engine.stop()

    async def __aenter__(self) -> XrsegServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def admin_url(self) -> str | None:
        return None if self._admin_port is None else f"http://{self.config.admin_host}:{self._admin_port}"

    def describe(self) -> list[str]:
        """One line per listener, for the console."""
        lines = [f"xrseg engine ({self.engine.model.name})"]
        if self.websocket is not None:
            lines.append(f"WebSocket sessions on {self.websocket.url}")
        if self.webrtc is not None:
            lines.append(
                f"WebRTC offers to {self.webrtc.url}/webrtc/offer; /health and /metrics need a bearer token"
            )
        if self.admin_url is not None:
            lines.append(f"admin /health and /metrics (no token) on {self.admin_url}")
        return lines


async def run_until_stopped(config: ServeConfig, on_ready: Callable[[XrsegServer], None]) -> None:
    """Serve until SIGINT or SIGTERM, then shut down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with XrsegServer(config) as server:
        on_ready(server)
        await stop.wait()

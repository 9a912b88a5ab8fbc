"""WebSocket transport (websockets): one connection = one session.

The first message must be a Hello with a valid token; the engine answers Welcome and from then
on every message is routed to the session. Each reply is encoded here; nothing else in the
engine knows that this is a WebSocket.
"""

from __future__ import annotations

import asyncio
import logging

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from engine.errors import SessionClosed
from engine.protocol import (
    ErrorCode,
    ErrorMessage,
    Hello,
    Message,
    MessageType,
    ProtocolError,
    Welcome,
    decode_envelope,
    encode_message,
    parse_envelope,
)
from engine.server import Engine
from engine.session import SendFn, Session
from engine.session.wire import error_message

log = logging.getLogger(__name__)

# websockets closes the connection (code 1009) above this; below it, an oversized message gets
# a TOO_LARGE error and the session continues.
_HARD_LIMIT_FACTOR = 4


class WebSocketTransport:
    """Serves an Engine on ws://host:port. Lifecycle: start() -> ... -> stop()."""

    def __init__(self, engine: Engine, host: str | None = None, port: int | None = None) -> None:
        self._engine = engine
        self._host = host if host is not None else engine.config.host
        self._port = port if port is not None else engine.config.port
        self._server: Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._server is None:
            raise RuntimeError("transport not started")
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"ws://{self._host}:{self.port}"

    async def start(self) -> None:
        limits = self._engine.config.limits
        self._server = await serve(
            self._handle,
            self._host,
            self._port,
            max_size=limits.max_message_bytes * _HARD_LIMIT_FACTOR,
            max_queue=4,  # websockets' own receive buffer, in messages: bounded like ours
            compression=None,  # payloads are already compressed; deflate only costs CPU
        )
        log.info("websocket transport listening on %s", self.url)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, ws: ServerConnection) -> None:
        limits = self._engine.config.limits
        send_lock = asyncio.Lock()

        async def send(msg: Message) -> None:
            data = encode_message(msg)
            async with send_lock:
                try:
                    await ws.send(data)
                except ConnectionClosed:
                    pass

        try:
            session = await self._greet(ws, send)
            lease = session.attach(send)
        except SessionClosed as exc:  # closed while this client's hello was being answered
            await send(error_message(exc))
            await ws.close(1008, "session closed")
            return
        except (ProtocolError, ConnectionClosed, TimeoutError):
            return
        try:
            async for data in ws:
                try:
                    env = parse_envelope(data, limits)
                except ProtocolError as exc:
                    await session.report(exc)
                    continue
                await session.receive(env)
                if env.type == MessageType.BYE:
                    await self._engine.close_session(session)
                    await ws.close(1000, "bye")
                    return
        except ConnectionClosed:
            pass
        finally:
            session.detach(lease)  # lingers for resume (unless a newer connection holds it); reaped later

    async def _greet(self, ws: ServerConnection, send: SendFn) -> Session:
        limits = self._engine.config.limits
        try:
            data = await asyncio.wait_for(ws.recv(), self._engine.config.hello_timeout_s)
            hello = decode_envelope(parse_envelope(data, limits), limits)
            if not isinstance(hello, Hello):
                raise ProtocolError(ErrorCode.UNAUTHORIZED, "the first message must be hello with a session token")
            session = self._engine.open_session(hello)
        except ProtocolError as exc:
            await send(ErrorMessage(exc.code, exc.message, exc.ref_id))
            await ws.close(1008, exc.code)
            raise
        await send(Welcome(session.session_id, self._engine.model.name, limits))
        return session

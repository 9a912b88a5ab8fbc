"""WebSocket transport (websockets): one connection = one session.

The first message must be a Hello with a valid token; the engine answers Welcome and from then
on every message is routed to the session. Each reply is encoded here; nothing else in the
engine knows that this is a WebSocket.

What a hostile client meets (numbers in EngineConfig.admission, README "Limits and guarantees"):
a connection cap and a cap on not-yet-greeted connections per address; hello_timeout_s to say
hello; a token bucket on inbound messages (excess dropped, counted, one `overloaded` notice per
second); a bounded reply queue written by one task (engine/transport/outbox.py), so a client
that does not read only loses its own replies. A handler failure on one message becomes an
`internal` error for that message; the connection and the session go on.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from engine.admission import TokenBucket
from engine.errors import SessionClosed
from engine.protocol import (
    ErrorCode,
    ErrorMessage,
    Hello,
    MessageType,
    ProtocolError,
    Welcome,
    decode_envelope,
    parse_envelope,
)
from engine.server import Engine
from engine.session import Session
from engine.session.wire import error_message
from engine.transport.outbox import Outbox

log = logging.getLogger(__name__)

TRANSPORT = "websocket"
# websockets closes the connection (code 1009) above this; below it, an oversized message gets
# a TOO_LARGE error and the session continues.
_HARD_LIMIT_FACTOR = 4
# Over its message rate, a connection is not read until a token is back (at most this long): the
# excess waits in the sender's own TCP buffers instead of costing the event loop a read per message.
_MAX_PAUSE_S = 0.05


class WebSocketTransport:
    """Serves an Engine on ws://host:port (wss:// with an ssl context). Lifecycle: start() -> ... -> stop()."""

    def __init__(
        self, engine: Engine, host: str | None = None, port: int | None = None, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._engine = engine
        self._host = host if host is not None else engine.config.host
        self._port = port if port is not None else engine.config.port
        self._ssl = ssl_context
        self._server: Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._server is None:
            raise RuntimeError("transport not started")
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"{'wss' if self._ssl is not None else 'ws'}://{self._host}:{self.port}"

    async def start(self) -> None:
        limits = self._engine.config.limits
        self._server = await serve(
            self._handle,
            self._host,
            self._port,
            ssl=self._ssl,
            max_size=limits.max_message_bytes * _HARD_LIMIT_FACTOR,
            max_queue=4,  # websockets' own receive buffer, in messages: bounded like ours
            compression=None,  # payloads are already compressed; deflate only costs CPU
            open_timeout=self._engine.config.hello_timeout_s,  # the opening handshake, too
        )
        log.info("websocket transport listening on %s", self.url)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, ws: ServerConnection) -> None:
        engine, metrics = self._engine, self._engine.metrics
        address = str(ws.remote_address[0]) if ws.remote_address else ""
        refused = engine.gate.admit(address)
        if refused is not None:
            metrics.connections_refused.labels(TRANSPORT, refused).inc()
            await ws.close(1013, "too many connections; try again later")
            return
        metrics.connections.labels(TRANSPORT).inc()
        a = engine.config.admission
        outbox = Outbox(ws.send, metrics, TRANSPORT, a.outbox_messages, a.outbox_bytes)
        outbox.start()
        try:
            try:
                session = await self._greet(ws, outbox, address)
            finally:
                engine.gate.greeted(address)
            if session is not None:
                await self._serve_session(ws, session, outbox)
        finally:
            engine.gate.closed()
            metrics.connections.labels(TRANSPORT).dec()
            await outbox.close()

    async def _serve_session(self, ws: ServerConnection, session: Session, outbox: Outbox) -> None:
        engine, metrics = self._engine, self._engine.metrics
        limits, a = engine.config.limits, engine.config.admission
        bucket = TokenBucket(a.message_burst, a.messages_per_s)
        noticed = 0.0
        try:
            lease = session.attach(outbox.send, lambda: outbox.congested)
        except SessionClosed as exc:  # closed while this client's hello was being answered
            outbox.offer(error_message(exc))
            await ws.close(1008, "session closed")
            return
        try:
            async for data in ws:
                metrics.messages.labels(TRANSPORT).inc()
                now = time.monotonic()
                if not bucket.take(now):
                    metrics.messages_refused.labels(TRANSPORT, "rate").inc()
                    if now - noticed >= a.notice_interval_s:
                        noticed = now
                        notice = "messages dropped: slow down (rate limit)"
                        outbox.offer(ErrorMessage(ErrorCode.OVERLOADED, notice))
                    await asyncio.sleep(min(bucket.wait_s(), _MAX_PAUSE_S))  # read no faster: TCP pushes back
                    continue
                try:
                    env = parse_envelope(data, limits)
                except ProtocolError as exc:
                    session.report(exc)
                    continue
                try:
                    await session.receive(env)
                except Exception:  # a bug on one message must not end the connection (was: close 1011)
                    metrics.handler_failures.labels(TRANSPORT).inc()
                    if engine.log_throttle.allow("ws_handler"):
                        log.exception("session %s: %s message failed", session.session_id, env.type)
                    outbox.offer(ErrorMessage(ErrorCode.INTERNAL, "the engine failed on this message", env.ref_id))
                    continue
                if env.type == MessageType.BYE:
                    await engine.close_session(session)
                    await outbox.flush(1.0)
                    await ws.close(1000, "bye")
                    return
        except ConnectionClosed:
            pass
        finally:
            session.detach(lease)  # lingers for resume (unless a newer connection holds it); reaped later

    async def _greet(self, ws: ServerConnection, outbox: Outbox, address: str) -> Session | None:
        engine = self._engine
        limits = engine.config.limits
        try:
            data = await asyncio.wait_for(ws.recv(), engine.config.hello_timeout_s)
            hello = decode_envelope(parse_envelope(data, limits), limits)
            if not isinstance(hello, Hello):
                raise ProtocolError(ErrorCode.UNAUTHORIZED, "the first message must be hello with a session token")
            session = engine.open_session(hello, address)
        except ProtocolError as exc:
            await asyncio.sleep(engine.refusal_delay(address))  # a blocked guesser waits (holding a pending slot)
            outbox.offer(ErrorMessage(exc.code, exc.message, exc.ref_id))
            await outbox.flush(1.0)
            await ws.close(1008, exc.code)
            return None
        except TimeoutError:
            engine.metrics.hello_timeouts.labels(TRANSPORT).inc()
            await ws.close(1008, "no hello")
            return None
        except ConnectionClosed:
            return None
        outbox.offer(Welcome(session.session_id, engine.model.name, limits))
        return session

"""The WebSocket channel: one schema message per WebSocket message.

    async with ClientSession.connect("ws://127.0.0.1:8765", token="...") as client: ...

`XrsegClient` is the old name of `clients.session.ClientSession`, kept for existing callers.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from clients.channel import ChannelClosed, Lane
from clients.replies import EngineError, TimedResult
from clients.session import ClientSession
from engine.core import RGBDFrame
from engine.protocol import (
    DepthCodec,
    ErrorCode,
    ErrorMessage,
    Hello,
    ImageCodec,
    Welcome,
    decode_message,
    encode_frame,
    encode_message,
)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024

XrsegClient = ClientSession
"""Old name (WebSocket client); `XrsegClient.connect("ws://...")` opens a ClientSession."""


class WebSocketChannel:
    """A `clients.channel.Channel` over one websockets client connection (all lanes reliable)."""

    def __init__(self, ws: ClientConnection, welcome: Welcome) -> None:
        self.ws = ws
        self.welcome = welcome

    async def send(self, data: bytes, lane: Lane = Lane.RELIABLE) -> None:
        await self.send_raw(data)

    async def send_raw(self, data: bytes | str) -> None:
        try:
            await self.ws.send(data)
        except ConnectionClosed as exc:
            raise ChannelClosed(f"connection closed: {exc}") from None

    async def send_frame(
        self,
        frame: RGBDFrame,
        rgb_codec: ImageCodec | None = None,
        depth_codec: DepthCodec | None = None,
        with_depth: bool | None = None,
    ) -> None:
        if with_depth is False and frame.depth is not None:
            frame = replace(frame, depth=None)
        rgb = ImageCodec.JPEG if rgb_codec in (None, ImageCodec.VIDEO) else rgb_codec
        data = await asyncio.to_thread(encode_frame, frame, rgb, depth_codec or DepthCodec.PNG16)
        await self.send_raw(data)

    async def recv(self) -> bytes | str:
        try:
            return await self.ws.recv()
        except ConnectionClosed as exc:
            raise ChannelClosed(f"connection closed: {exc}") from None

    async def close(self) -> None:
        await self.ws.close()


async def open_websocket(url: str, hello: Hello) -> WebSocketChannel:
    """Connect, say hello (or resume), and return the channel once the engine welcomed us.

    Raises EngineError with the engine's code when it refuses (wrong token, unknown session)."""
    ws = await connect(url, max_size=MAX_MESSAGE_BYTES, compression=None)
    try:
        await ws.send(encode_message(hello))
        reply = decode_message(await ws.recv())
    except ConnectionClosed as exc:
        raise ChannelClosed(f"the engine closed the connection during the hello: {exc}") from None
    if isinstance(reply, ErrorMessage):
        await ws.close()
        raise EngineError(reply.code, reply.message, reply.ref_id)
    if not isinstance(reply, Welcome):
        await ws.close()
        raise EngineError(ErrorCode.MALFORMED, f"expected welcome, got {type(reply).__name__}", None)
    return WebSocketChannel(ws, reply)


__all__ = ["EngineError", "TimedResult", "WebSocketChannel", "XrsegClient", "open_websocket"]

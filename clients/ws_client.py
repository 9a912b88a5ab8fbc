"""Python client for the engine's WebSocket transport.

    async with XrsegClient.connect("ws://127.0.0.1:8765", token="...") as client:
        await client.send_frame(frame)
        result = await client.prompt(Prompt(prompt_id=1, frame_id=frame.frame_id, points=(PointPrompt(320, 240),)))

`prompt` resolves with the SegmentationResult, or raises EngineError with the engine's error
code. Results nobody waits for (tracking updates, dwell selections of a gaze stream) arrive on
`next_result()`. Depends only on engine.core and engine.protocol (the message schema).
"""

from __future__ import annotations

import asyncio
import time

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from clients.replies import EngineError, ReplyRouter, TimedResult
from engine.core import Prompt, RGBDFrame, SegmentationResult
from engine.protocol import (
    AnswerMode,
    Cancel,
    DepthCodec,
    ErrorCode,
    ErrorMessage,
    EverythingRequest,
    Hello,
    ImageCodec,
    Ping,
    PromptMessage,
    SessionStats,
    Welcome,
    decode_message,
    encode_frame,
    encode_message,
)
from engine.protocol.messages import Bye, Limits


class XrsegClient:
    """One session with an engine over WebSocket. Use `connect` as an async context manager."""

    def __init__(self, ws: ClientConnection, welcome: Welcome) -> None:
        self._ws = ws
        self.welcome = welcome
        self._replies = ReplyRouter()
        self._reader = asyncio.create_task(self._read(), name="xrseg-client-reader")

    @classmethod
    def connect(
        cls, url: str, token: str = "", client_name: str = "xrseg-python", session_id: str | None = None
    ) -> _Connector:
        return _Connector(url, Hello(token=token, client=client_name, session_id=session_id))

    @property
    def session_id(self) -> str:
        return self.welcome.session_id

    @property
    def limits(self) -> Limits:
        return self.welcome.limits

    async def send_frame(
        self, frame: RGBDFrame, rgb_codec: ImageCodec = ImageCodec.JPEG, depth_codec: DepthCodec = DepthCodec.PNG16
    ) -> None:
        data = await asyncio.to_thread(encode_frame, frame, rgb_codec, depth_codec)
        await self._ws.send(data)

    async def send_raw(self, data: bytes | str) -> None:
        """Send bytes as they are (tests of the engine's input checks use this)."""
        await self._ws.send(data)

    def prompt_nowait(
        self, prompt: Prompt, track: bool = False, everything: EverythingRequest | None = None
    ) -> asyncio.Future[TimedResult]:
        """Send a prompt; the returned future resolves when its result (or error) arrives.

        track: the engine then streams this object's mask on every new frame (`next_result`)
        until `cancel(prompt.prompt_id)`. everything: answer with every mask of the frame.
        """
        future = self._replies.expect(prompt.prompt_id)
        asyncio.ensure_future(self._send_prompt(PromptMessage(prompt, track, AnswerMode.NOW, everything), future))
        return future

    async def send_gaze(self, prompt: Prompt) -> None:
        """Stream gaze samples (answer mode "dwell"): no reply unless a dwell selection completes,
        which then arrives on `next_result` with kind "dwell" and this prompt's id."""
        await self._ws.send(encode_message(PromptMessage(prompt, answer=AnswerMode.DWELL)))

    async def cancel(self, prompt_id: int | None = None) -> None:
        """Stop tracking the object of prompt_id (None: all of this session's tracked objects)."""
        await self._ws.send(encode_message(Cancel(prompt_id)))

    async def next_result(self, timeout: float = 10.0) -> TimedResult:
        """The next result no `prompt` call is waiting for (tracking updates, dwell selections)."""
        return await asyncio.wait_for(self._replies.streamed.get(), timeout)

    async def prompt(self, prompt: Prompt, timeout: float = 30.0) -> SegmentationResult:
        return (await asyncio.wait_for(self.prompt_nowait(prompt), timeout)).result

    async def next_error(self, timeout: float = 10.0) -> ErrorMessage:
        """The next error not tied to a pending prompt (frames, malformed bytes, ...)."""
        return await asyncio.wait_for(self._replies.errors.get(), timeout)

    async def stats(self, timeout: float = 10.0) -> SessionStats:
        self._replies.stats_event.clear()
        await self._ws.send(encode_message(Ping(time.time())))
        await asyncio.wait_for(self._replies.stats_event.wait(), timeout)
        assert self._replies.stats is not None
        return self._replies.stats

    async def close(self, bye: bool = True) -> None:
        if bye:
            try:
                await self._ws.send(encode_message(Bye("client closed")))
            except ConnectionClosed:
                pass
        await self._ws.close()
        self._reader.cancel()
        self._replies.fail_all("connection closed before the result arrived")

    async def _send_prompt(self, message: PromptMessage, future: asyncio.Future[TimedResult]) -> None:
        try:
            await self._ws.send(encode_message(message))
        except ConnectionClosed as exc:
            if not future.done():
                future.set_exception(ConnectionError(f"connection closed: {exc}"))

    async def _read(self) -> None:
        try:
            async for data in self._ws:
                self._replies.dispatch(decode_message(data), time.time())
        except ConnectionClosed:
            pass
        finally:
            self._replies.fail_all("engine closed the connection")


class _Connector:
    """Awaitable and async context manager returned by XrsegClient.connect."""

    def __init__(self, url: str, hello: Hello) -> None:
        self._url = url
        self._hello = hello
        self._client: XrsegClient | None = None

    async def _open(self) -> XrsegClient:
        ws = await connect(self._url, max_size=64 * 1024 * 1024, compression=None)
        await ws.send(encode_message(self._hello))
        reply = decode_message(await ws.recv())
        if isinstance(reply, ErrorMessage):
            await ws.close()
            raise EngineError(reply.code, reply.message, reply.ref_id)
        if not isinstance(reply, Welcome):
            await ws.close()
            raise EngineError(ErrorCode.MALFORMED, f"expected welcome, got {type(reply).__name__}", None)
        return XrsegClient(ws, reply)

    def __await__(self):  # type: ignore[no-untyped-def]
        return self._open().__await__()

    async def __aenter__(self) -> XrsegClient:
        self._client = await self._open()
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()

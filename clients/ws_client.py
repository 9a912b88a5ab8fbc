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
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

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
    Message,
    Ping,
    PromptMessage,
    ResultKind,
    ResultMessage,
    SessionStats,
    StatsMessage,
    Welcome,
    decode_message,
    encode_frame,
    encode_message,
)
from engine.protocol.messages import Bye, Limits


class EngineError(RuntimeError):
    """The engine refused a message; code is an engine.protocol.ErrorCode."""

    def __init__(self, code: ErrorCode, message: str, ref_id: int | None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.ref_id = ref_id


@dataclass(frozen=True)
class TimedResult:
    """A result with the client-side times it was asked and answered (time.time())."""

    result: SegmentationResult
    sent: float
    received: float
    kind: ResultKind = ResultKind.ANSWER
    mapping: str = "identity"

    @property
    def latency_ms(self) -> float:
        return (self.received - self.sent) * 1000.0


class XrsegClient:
    """One session with an engine over WebSocket. Use `connect` as an async context manager."""

    def __init__(self, ws: ClientConnection, welcome: Welcome) -> None:
        self._ws = ws
        self.welcome = welcome
        self._pending: dict[int, tuple[asyncio.Future[TimedResult], float]] = {}
        self._errors: asyncio.Queue[ErrorMessage] = asyncio.Queue(maxsize=256)
        self._streamed: asyncio.Queue[TimedResult] = asyncio.Queue(maxsize=256)
        self._stats: SessionStats | None = None
        self._stats_event = asyncio.Event()
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
        future: asyncio.Future[TimedResult] = asyncio.get_running_loop().create_future()
        sent = time.time()
        self._pending[prompt.prompt_id] = (future, sent)
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
        return await asyncio.wait_for(self._streamed.get(), timeout)

    async def prompt(self, prompt: Prompt, timeout: float = 30.0) -> SegmentationResult:
        return (await asyncio.wait_for(self.prompt_nowait(prompt), timeout)).result

    async def next_error(self, timeout: float = 10.0) -> ErrorMessage:
        """The next error not tied to a pending prompt (frames, malformed bytes, ...)."""
        return await asyncio.wait_for(self._errors.get(), timeout)

    async def stats(self, timeout: float = 10.0) -> SessionStats:
        self._stats_event.clear()
        await self._ws.send(encode_message(Ping(time.time())))
        await asyncio.wait_for(self._stats_event.wait(), timeout)
        assert self._stats is not None
        return self._stats

    async def close(self, bye: bool = True) -> None:
        if bye:
            try:
                await self._ws.send(encode_message(Bye("client closed")))
            except ConnectionClosed:
                pass
        await self._ws.close()
        self._reader.cancel()
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("connection closed before the result arrived"))
        self._pending.clear()

    async def _send_prompt(self, message: PromptMessage, future: asyncio.Future[TimedResult]) -> None:
        try:
            await self._ws.send(encode_message(message))
        except ConnectionClosed as exc:
            if not future.done():
                future.set_exception(ConnectionError(f"connection closed: {exc}"))

    async def _read(self) -> None:
        try:
            async for data in self._ws:
                self._dispatch(decode_message(data), time.time())
        except ConnectionClosed:
            pass
        finally:
            for future, _ in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("engine closed the connection"))

    def _dispatch(self, msg: Message, now: float) -> None:
        match msg:
            case ResultMessage(result=result):
                entry = self._pending.pop(result.prompt_id, None)
                if entry is not None and not entry[0].done():
                    entry[0].set_result(TimedResult(result, entry[1], now, msg.kind, msg.mapping))
                else:
                    if self._streamed.full():
                        self._streamed.get_nowait()  # bounded: the oldest unread update goes
                    self._streamed.put_nowait(TimedResult(result, now, now, msg.kind, msg.mapping))
            case ErrorMessage(ref_id=ref_id) if ref_id in self._pending:
                future, _ = self._pending.pop(ref_id)
                if not future.done():
                    future.set_exception(EngineError(msg.code, msg.message, ref_id))
            case ErrorMessage():
                if self._errors.full():
                    self._errors.get_nowait()
                self._errors.put_nowait(msg)
            case StatsMessage(stats=stats):
                self._stats = stats
                self._stats_event.set()


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

"""One client session with an engine, over either transport.

    async with ClientSession.connect("ws://127.0.0.1:8765", token="T") as client:      # WebSocket
    async with ClientSession.connect("http://127.0.0.1:8766", token="T") as client:    # WebRTC
        await client.send_frame(frame)
        click = Prompt(prompt_id=1, frame_id=frame.frame_id, points=(PointPrompt(320, 240),))
        result = await client.prompt(click)

The URL scheme picks the transport (ws/wss: WebSocket; http/https: WebRTC signalling), or pass
transport= explicitly. `prompt` resolves with the SegmentationResult or raises EngineError with
the engine's code. Results nobody waits for (tracking updates, dwell selections of a gaze
stream) arrive on `next_result()`; errors not tied to a waiting prompt on `next_error()`.
Depends only on engine.core and engine.protocol (the message schema).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from enum import StrEnum
from typing import TYPE_CHECKING

from clients.channel import Channel, ChannelClosed, Lane
from clients.replies import EngineError, ReplyRouter, TimedResult
from engine.core import Prompt, RGBDFrame, SegmentationResult
from engine.protocol.capture import (
    CaptureAction,
    CaptureProgressMessage,
    CaptureRequest,
    CaptureSaved,
    PoseSource,
)
from engine.protocol import (
    AnswerMode,
    Bye,
    Cancel,
    DepthCodec,
    ErrorMessage,
    EverythingRequest,
    Hello,
    ImageCodec,
    Limits,
    Ping,
    PromptMessage,
    SessionStats,
    Welcome,
    decode_message,
    encode_message,
)

if TYPE_CHECKING:
    from clients.webrtc_client import RtcClientOptions


class Transport(StrEnum):
    WS = "ws"
    WEBRTC = "webrtc"

    @classmethod
    def for_url(cls, url: str) -> Transport:
        scheme = url.split(":", 1)[0].lower()
        if scheme in ("ws", "wss"):
            return cls.WS
        if scheme in ("http", "https"):
            return cls.WEBRTC
        raise ValueError(
            f"cannot tell the transport from {url!r}: use ws://HOST:PORT (WebSocket) or "
            "http://HOST:PORT (WebRTC signalling)"
        )


class ClientSession:
    """Prompts, gaze, tracking, cancel and stats of one engine session, over any `Channel`."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._replies = ReplyRouter()
        self._sends: set[asyncio.Task[None]] = set()  # prompt sends in flight; cancelled on close
        self._closed = False
        self._reader = asyncio.create_task(self._read(), name="xrseg-client-reader")

    @classmethod
    def connect(
        cls,
        url: str,
        token: str = "",
        client_name: str = "xrseg-python",
        session_id: str | None = None,
        transport: Transport | str | None = None,
        options: RtcClientOptions | None = None,
    ) -> Connector:
        """Open a session (hello), or resume one (session_id); await it or use `async with`.

        options: WebRTC settings (clients.webrtc_client.RtcClientOptions); ignored over WebSocket.
        """
        kind = Transport(transport) if transport is not None else Transport.for_url(url)
        return Connector(url, Hello(token=token, client=client_name, session_id=session_id), kind, options)

    @property
    def welcome(self) -> Welcome:
        return self.channel.welcome

    @property
    def session_id(self) -> str:
        return self.welcome.session_id

    @property
    def limits(self) -> Limits:
        return self.welcome.limits

    # -- sending -----------------------------------------------------------------------------

    async def send_frame(
        self,
        frame: RGBDFrame,
        rgb_codec: ImageCodec | None = None,
        depth_codec: DepthCodec | None = None,
        with_depth: bool | None = None,
    ) -> None:
        """Send one frame; None codecs take the transport's default (WebSocket: JPEG + PNG16;
        WebRTC: the video track + its options' depth codec). with_depth: see Channel.send_frame."""
        await self.channel.send_frame(frame, rgb_codec, depth_codec, with_depth)

    async def send_raw(self, data: bytes | str) -> None:
        """Send bytes as they are (tests of the engine's input checks use this)."""
        await self.channel.send_raw(data)

    def prompt_nowait(
        self, prompt: Prompt, track: bool = False, everything: EverythingRequest | None = None
    ) -> asyncio.Future[TimedResult]:
        """Send a prompt; the returned future resolves when its result (or error) arrives.

        track: the engine then streams this object's mask on every new frame (`next_result`,
        kind "track") until `cancel(prompt.prompt_id)`. everything: every mask of the frame.
        """
        return self._ask(PromptMessage(prompt, track, AnswerMode.NOW, everything), Lane.RELIABLE)

    async def prompt(self, prompt: Prompt, timeout: float = 30.0) -> SegmentationResult:
        return (await asyncio.wait_for(self.prompt_nowait(prompt), timeout)).result

    def track(self, prompt: Prompt) -> asyncio.Future[TimedResult]:
        """Select an object and keep tracking it: the future is the first answer; updates follow
        on `next_result` until `cancel(prompt.prompt_id)`."""
        return self.prompt_nowait(prompt, track=True)

    def text_nowait(self, prompt_id: int, frame_id: int, text: str) -> asyncio.Future[TimedResult]:
        """A text prompt ("the red mug"): the engine ranks candidate masks with its text encoder."""
        return self.prompt_nowait(Prompt(prompt_id=prompt_id, frame_id=frame_id, text=text))

    def gaze_nowait(self, prompt: Prompt) -> asyncio.Future[TimedResult]:
        """A prompt answered now, sent on the lossy lane (WebRTC "gaze" channel): on a lossy link
        it may never be answered (a newer one supersedes it); wait with a timeout."""
        return self._ask(PromptMessage(prompt), Lane.LOSSY)

    async def send_gaze(self, prompt: Prompt) -> None:
        """Stream gaze samples (answer mode "dwell"): no reply unless a dwell selection completes,
        which then arrives on `next_result` with kind "dwell" and this prompt's id."""
        await self.channel.send(encode_message(PromptMessage(prompt, answer=AnswerMode.DWELL)), Lane.LOSSY)

    async def cancel(self, prompt_id: int | None = None) -> None:
        """Stop tracking the object of prompt_id (None: all of this session's tracked objects)."""
        await self.channel.send(encode_message(Cancel(prompt_id)))

    async def capture(
        self,
        action: CaptureAction,
        prompt_id: int,
        name: str = "",
        pose_source: PoseSource = PoseSource.CLIENT,
    ) -> None:
        """Start, stop, cancel or ask the status of the 3D capture of a tracked object (the object of
        prompt_id, tracked with `track`). Its progress and the saved capture arrive on
        `next_capture`; errors (no_pose, capture_failed) on `next_error`."""
        request = CaptureRequest(action, prompt_id, name=name, pose_source=pose_source)
        await self.channel.send(encode_message(request))

    async def next_capture(self, timeout: float = 30.0) -> CaptureProgressMessage | CaptureSaved:
        """The next capture_progress or capture_saved message."""
        return await asyncio.wait_for(self._replies.captures.get(), timeout)

    async def stats(self, timeout: float = 10.0) -> SessionStats:
        """Ping the engine; its pong carries the session's counters. Also a round trip: every
        message sent before it has been handled when this returns."""
        self._replies.stats_event.clear()
        await self.channel.send(encode_message(Ping(time.time())))
        await asyncio.wait_for(self._replies.stats_event.wait(), timeout)
        assert self._replies.stats is not None
        return self._replies.stats

    ping = stats

    # -- receiving ---------------------------------------------------------------------------

    async def next_result(self, timeout: float = 10.0) -> TimedResult:
        """The next result no `prompt` call is waiting for (tracking updates, dwell selections)."""
        return await asyncio.wait_for(self._replies.streamed.get(), timeout)

    async def next_error(self, timeout: float = 10.0) -> ErrorMessage:
        """The next error not tied to a pending prompt (frames, malformed bytes, ...)."""
        return await asyncio.wait_for(self._replies.errors.get(), timeout)

    async def close(self, bye: bool = True) -> None:
        """Say bye (the engine then frees the session at once) and close; idempotent."""
        if self._closed:
            return
        self._closed = True
        if bye:
            with contextlib.suppress(ConnectionError):
                await self.channel.send(encode_message(Bye("client closed")))
        for task in list(self._sends):
            task.cancel()
        await self.channel.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self._replies.fail_all("connection closed before the result arrived")

    # -- internals ---------------------------------------------------------------------------

    def _ask(self, message: PromptMessage, lane: Lane) -> asyncio.Future[TimedResult]:
        future = self._replies.expect(message.prompt.prompt_id)
        task = asyncio.create_task(self._send_for(encode_message(message), lane, future))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)
        return future

    async def _send_for(self, data: bytes, lane: Lane, future: asyncio.Future[TimedResult]) -> None:
        try:
            await self.channel.send(data, lane)
        except (ConnectionError, ValueError) as exc:
            if not future.done():
                future.set_exception(exc if isinstance(exc, ConnectionError) else ValueError(str(exc)))

    async def _read(self) -> None:
        try:
            while True:
                data = await self.channel.recv()
                self._replies.dispatch(decode_message(data), time.time())
        except ChannelClosed:
            pass
        finally:
            self._replies.fail_all("engine closed the connection")


class Connector:
    """Awaitable and async context manager returned by ClientSession.connect."""

    def __init__(
        self, url: str, hello: Hello, transport: Transport, options: RtcClientOptions | None
    ) -> None:
        self._url = url
        self._hello = hello
        self._transport = transport
        self._options = options
        self._client: ClientSession | None = None

    async def _open(self) -> ClientSession:
        if self._transport == Transport.WS:
            from clients.ws_client import open_websocket

            channel: Channel = await open_websocket(self._url, self._hello)
        else:
            from clients.webrtc_client import RtcClientOptions, open_webrtc

            channel = await open_webrtc(self._url, self._hello, self._options or RtcClientOptions())
        return ClientSession(channel)

    def __await__(self):  # type: ignore[no-untyped-def]
        return self._open().__await__()

    async def __aenter__(self) -> ClientSession:
        self._client = await self._open()
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()


__all__ = ["ClientSession", "Connector", "EngineError", "TimedResult", "Transport"]

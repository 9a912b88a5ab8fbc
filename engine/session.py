"""One client's stream: its recent frames, its embedding, its prompts, its counters.

A Session is transport-agnostic. A transport hands it parsed envelopes (`receive`) or frames
that arrived by other means (`offer_frame`, e.g. a WebRTC video track) and gives it one
coroutine to send typed messages back. Sessions share only the read-only model and the worker
pool, so one failing session never affects another.

Newest frame wins: frames are kept undecoded in a small window; a prompt decodes only the frame
it refers to (or the newest one), and frames pushed out of the window unused are counted as
dropped. Prompts wait in a bounded queue; on overflow the oldest is dropped with an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace

from engine.config import EngineConfig
from engine.core import Prompt, RGBDFrame, SegmentationResult, StageTimestamps
from engine.pipeline import answer_prompt, encode_keyframe
from engine.protocol import (
    Bye,
    Envelope,
    ErrorCode,
    ErrorMessage,
    FrameMessage,
    Message,
    MessageType,
    Ping,
    Pong,
    PromptMessage,
    ProtocolError,
    ResultMessage,
    SessionStats,
    StatsMessage,
    check_frame,
    decode_envelope,
)
from models.interfaces import ImageEmbedding, ModelError, SegmentationModel

log = logging.getLogger(__name__)

SendFn = Callable[[Message], Awaitable[None]]


class PendingFrame:
    """A frame as it arrived: decoded at most once, and only if a prompt needs it."""

    def __init__(self, frame_id: int, decode: Callable[[], RGBDFrame], received: float) -> None:
        self.frame_id = frame_id
        self.received = received
        self._decode = decode
        self._frame: RGBDFrame | None = None

    @classmethod
    def from_envelope(cls, env: Envelope, config: EngineConfig, received: float) -> PendingFrame:
        """Validate everything but the pixels now (errors reach the client at once); decode later."""
        header = check_frame(env, config.limits)

        def decode() -> RGBDFrame:
            msg = decode_envelope(env, config.limits)
            assert isinstance(msg, FrameMessage)
            return msg.frame

        return cls(header.frame_id, decode, received)

    @classmethod
    def from_frame(cls, frame: RGBDFrame, received: float) -> PendingFrame:
        pending = cls(frame.frame_id, lambda: frame, received)
        pending._frame = frame
        return pending

    @property
    def used(self) -> bool:
        return self._frame is not None

    def frame(self) -> RGBDFrame:
        if self._frame is None:
            self._frame = self._decode()
        return self._frame


@dataclass(frozen=True)
class SessionContext:
    """What every session of one engine shares: read-only model, worker pool, settings."""

    model: SegmentationModel
    executor: Executor
    config: EngineConfig


@dataclass
class _Counters:
    frames_received: int = 0
    frames_dropped: int = 0
    frames_decoded: int = 0
    prompts_received: int = 0
    prompts_answered: int = 0
    prompts_dropped: int = 0
    errors_sent: int = 0


class Session:
    """State and work of one client. Lifecycle: start() -> receive()/offer_frame()* -> close()."""

    def __init__(self, session_id: str, token: str, context: SessionContext) -> None:
        self.session_id = session_id
        self.token = token
        self._ctx = context
        self._send: SendFn | None = None
        self._frames: OrderedDict[int, PendingFrame] = OrderedDict()
        self._prompts: deque[tuple[Prompt, float]] = deque()
        self._prompt_ready = asyncio.Event()
        self._keyframe: tuple[int, ImageEmbedding] | None = None
        self._counters = _Counters()
        self._worker: asyncio.Task[None] | None = None
        self.detached_at: float | None = None
        self.closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    def attach(self, send: SendFn) -> None:
        """Connect (or reconnect) the transport that carries this session's replies."""
        self._send = send
        self.detached_at = None
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name=f"session-{self.session_id}")

    def detach(self) -> None:
        """The transport went away; keep state so the client can resume with its token."""
        self._send = None
        self.detached_at = time.monotonic()

    async def close(self) -> None:
        self.closed = True
        self._send = None
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        self._frames.clear()
        self._prompts.clear()
        self._keyframe = None

    @property
    def stats(self) -> SessionStats:
        return SessionStats(**vars(self._counters))

    # -- inbound -----------------------------------------------------------------------------

    async def receive(self, env: Envelope) -> None:
        """Route one parsed message. Errors go back to this client only."""
        received = time.time()
        try:
            match env.type:
                case MessageType.FRAME:
                    self.offer_frame(PendingFrame.from_envelope(env, self._ctx.config, received))
                case MessageType.PROMPT:
                    msg = decode_envelope(env, self._ctx.config.limits)
                    assert isinstance(msg, PromptMessage)
                    self.submit_prompt(msg.prompt, received)
                case MessageType.PING:
                    msg = decode_envelope(env, self._ctx.config.limits)
                    assert isinstance(msg, Ping)
                    await self._emit(Pong(msg.t, time.time()))
                    await self._emit(StatsMessage(self.stats))
                case MessageType.BYE:
                    await self._emit(StatsMessage(self.stats))
                case MessageType.HELLO:
                    raise ProtocolError(ErrorCode.INVALID_FIELD, "session already open; send hello only once")
                case _:
                    raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"clients may not send {env.type!r} messages")
        except ProtocolError as exc:
            await self.report(exc)

    def offer_frame(self, pending: PendingFrame) -> None:
        """Keep the newest frames; count those pushed out without ever being used."""
        self._counters.frames_received += 1
        self._frames[pending.frame_id] = pending
        self._frames.move_to_end(pending.frame_id)
        while len(self._frames) > self._ctx.config.frame_window:
            _, old = self._frames.popitem(last=False)
            if not old.used:
                self._counters.frames_dropped += 1

    def submit_prompt(self, prompt: Prompt, received: float | None = None) -> None:
        self._counters.prompts_received += 1
        if len(self._prompts) >= self._ctx.config.prompt_queue:
            dropped, _ = self._prompts.popleft()
            self._counters.prompts_dropped += 1
            asyncio.ensure_future(
                self.report(ProtocolError(ErrorCode.OVERLOADED, "prompt dropped: newer prompts arrived faster than answered", dropped.prompt_id))
            )
        self._prompts.append((prompt, received if received is not None else time.time()))
        self._prompt_ready.set()

    # -- outbound ----------------------------------------------------------------------------

    async def report(self, exc: ProtocolError) -> None:
        self._counters.errors_sent += 1
        log.info("session %s: %s (%s, ref %s)", self.session_id, exc.message, exc.code, exc.ref_id)
        await self._emit(ErrorMessage(exc.code, exc.message, exc.ref_id))

    async def _emit(self, msg: Message) -> None:
        if self._send is not None:
            await self._send(msg)

    # -- work --------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._prompt_ready.wait()
            if not self._prompts:
                self._prompt_ready.clear()
                continue
            prompt, received = self._prompts.popleft()
            try:
                pending = self._frame_for(prompt)
                result = await loop.run_in_executor(self._ctx.executor, self._answer, prompt, pending, received)
                self._counters.prompts_answered += 1
                await self._emit(ResultMessage(replace(result, timestamps=replace(result.timestamps, send=time.time()))))
            except ProtocolError as exc:
                if exc.ref_id is None:
                    exc.ref_id = prompt.prompt_id
                await self.report(exc)
            except ModelError as exc:
                await self.report(ProtocolError(ErrorCode.INTERNAL, f"model failed: {exc}", prompt.prompt_id))
            except Exception as exc:  # the session must outlive any single bad item; log it in full
                log.exception("session %s: prompt %s failed", self.session_id, prompt.prompt_id)
                await self.report(ProtocolError(ErrorCode.INTERNAL, f"engine error on this prompt: {exc!r}", prompt.prompt_id))

    def _frame_for(self, prompt: Prompt) -> PendingFrame:
        if not self._frames:
            raise ProtocolError(ErrorCode.NO_FRAME, "no frame received yet; send a frame before prompting", prompt.prompt_id)
        pending = self._frames.get(prompt.frame_id)
        return pending if pending is not None else next(reversed(self._frames.values()))

    def _answer(self, prompt: Prompt, pending: PendingFrame, received: float) -> SegmentationResult:
        """Runs on the worker pool: decode the frame, reuse or compute its embedding, answer."""
        was_used = pending.used
        frame = pending.frame()
        if not was_used:
            self._counters.frames_decoded += 1
        stamps = StageTimestamps(capture=frame.capture_ts or None, receive=received, frame_decode=time.time())
        keyframe = self._keyframe
        if keyframe is None or keyframe[0] != frame.frame_id:
            keyframe = (frame.frame_id, encode_keyframe(self._ctx.model, frame))
            self._keyframe = keyframe
        stamps = replace(stamps, encode=time.time())
        return answer_prompt(self._ctx.model, frame, keyframe[1], keyframe[0], prompt, self._ctx.config.lift, stamps)

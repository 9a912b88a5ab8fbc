"""One client's stream: its recent frames, its keyframe, its prompts, gaze and tracked objects.

A Session is transport-agnostic. A transport hands it parsed envelopes (`receive`) or frames
that arrived by other means (`offer_frame`, e.g. a WebRTC video track) and gives it one
coroutine to send typed messages back. Sessions share only the read-only model, the worker pool
and the engine's keyframe encoder, so one failing session never affects another.

Newest frame wins: frames are kept undecoded in a small window; a frame is decoded only when a
prompt, a tracking step or a keyframe encode needs it, and frames pushed out of the window
unused are counted as dropped. Prompts wait in a bounded queue; on overflow the oldest is dropped
with an error.

The work loop runs one item at a time, in priority order: prompts (the user is waiting), then a
speculative decode at a gaze fixation (engine/dwell.py), then one tracking step on the newest
frame (engine/tracking.py). Prompts are answered from the session's keyframe, whatever frame it
is (engine/pipeline.py maps prompt and masks between the two); they wait for the encoder only
when there is no keyframe or it cannot see what the prompt points at. Keyframes are refreshed in
the background when the camera moved, the image changed or the embedding aged
(engine/scheduler.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np

from engine.config import EngineConfig
from engine.core import MaskCandidate, Pose, Prompt, RGBDFrame, RLEMask, StageTimestamps
from engine.dwell import GazeState, Speculation, SpeculationRequest
from engine.mapping import FrameMapping
from engine.pipeline import Answer, Pipeline, prompt_input
from engine.protocol import (
    AnswerMode,
    Cancel,
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
    ResultKind,
    ResultMessage,
    SessionStats,
    StatsMessage,
    check_frame,
    decode_envelope,
)
from engine.scheduler import (
    Keyframe,
    KeyframeEncoder,
    KeyframePolicy,
    KeyframeReason,
    KeyframeRef,
    keyframe_reason,
    thumbnail,
)
from engine.text_answer import TextRanker, require_text_ranker, spatial_part
from engine.tracking import TrackState, track_step
from models.interfaces import ModelError, PromptInput, SegmentationModel

log = logging.getLogger(__name__)

SendFn = Callable[[Message], Awaitable[None]]
T = TypeVar("T")


class PendingFrame:
    """A frame as it arrived: decoded at most once (thread-safe), and only if something needs it.

    pose is known from the header without decoding, so the keyframe scheduler can see camera
    motion on every frame for free; has_depth (a depth payload came with it) tells it which frames
    a depth-needing encoder can use at all (WebRTC clients send depth only with some frames).
    """

    def __init__(
        self,
        frame_id: int,
        decode: Callable[[], RGBDFrame],
        received: float,
        pose: Pose | None = None,
        has_depth: bool = True,
    ) -> None:
        self.frame_id = frame_id
        self.received = received
        self.pose = pose
        self.has_depth = has_depth
        self.on_decode: Callable[[], None] | None = None
        self._decode = decode
        self._frame: RGBDFrame | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_envelope(cls, env: Envelope, config: EngineConfig, received: float) -> PendingFrame:
        """Validate everything but the pixels now (errors reach the client at once); decode later."""
        header = check_frame(env, config.limits)

        def decode() -> RGBDFrame:
            msg = decode_envelope(env, config.limits)
            assert isinstance(msg, FrameMessage)
            return msg.frame

        return cls(header.frame_id, decode, received, header.pose, "depth" in env.payloads)

    @classmethod
    def from_frame(cls, frame: RGBDFrame, received: float) -> PendingFrame:
        pending = cls(frame.frame_id, lambda: frame, received, frame.pose, frame.depth is not None)
        pending._frame = frame
        return pending

    @property
    def used(self) -> bool:
        return self._frame is not None

    def frame(self) -> RGBDFrame:
        if self._frame is None:
            with self._lock:
                if self._frame is None:
                    self._frame = self._decode()
                    if self.on_decode is not None:
                        self.on_decode()
        return self._frame


@dataclass(frozen=True)
class SessionContext:
    """What every session of one engine shares: read-only model, worker pool, settings, encoder.

    encoder: the engine's keyframe encoder; None encodes on the prompt path (as EVERY_FRAME).
    pipeline: built from model and config when not given.
    text: the CLIP ranking of text prompts; None answers them with unsupported_prompt.
    """

    model: SegmentationModel
    executor: Executor
    config: EngineConfig
    encoder: KeyframeEncoder | None = None
    pipeline: Pipeline | None = None
    text: TextRanker | None = None

    def __post_init__(self) -> None:
        if self.pipeline is None:
            c = self.config
            pipeline = Pipeline(self.model, c.lift, c.mask_clean, c.mapping, c.everything, c.clean_masks)
            object.__setattr__(self, "pipeline", pipeline)


@dataclass
class _Counters:
    frames_received: int = 0
    frames_dropped: int = 0
    frames_decoded: int = 0
    prompts_received: int = 0
    prompts_answered: int = 0
    prompts_dropped: int = 0
    errors_sent: int = 0
    keyframes_encoded: int = 0
    prompts_waited_for_encode: int = 0
    speculative_decodes: int = 0
    speculative_hits: int = 0
    dwell_selections: int = 0
    track_results: int = 0


@dataclass(frozen=True, eq=False)
class _PromptJob:
    message: PromptMessage
    received: float


@dataclass(frozen=True, eq=False)
class _Parked:
    """A prompt that no keyframe could answer yet: it waits aside (not blocking the prompts behind
    it) for a keyframe newer than `after` (time.time() of the one that failed it; 0 = none)."""

    job: _PromptJob
    pending: PendingFrame
    frame: RGBDFrame
    request: PromptInput
    kind: ResultKind
    stamps: StageTimestamps
    after: float
    tries: int = 0  # 0: waits for any newer keyframe; 1: for the encode of its own frame
    encode: asyncio.Future[Keyframe] | None = None  # the encode it asked for (its failure is its error)


class Session:
    """State and work of one client. Lifecycle: attach() -> receive()/offer_frame()* -> close()."""

    def __init__(self, session_id: str, token: str, context: SessionContext) -> None:
        self.session_id = session_id
        self.token = token
        self._ctx = context
        self._pipeline: Pipeline = context.pipeline  # type: ignore[assignment]
        self._send: SendFn | None = None
        self._frames: OrderedDict[int, PendingFrame] = OrderedDict()
        self._prompts: deque[_PromptJob] = deque()
        self._parked: deque[_Parked] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._keyframe: Keyframe | None = None
        self._inflight: KeyframeRef | None = None  # the frame being encoded for us, as a motion reference
        self._watched: asyncio.Future[Keyframe] | None = None
        self._gaze = GazeState(context.config.gaze)
        self._deferred_speculation: SpeculationRequest | None = None
        self._tracks: dict[int, TrackState] = {}
        self._tracked_frame_id: int | None = None
        self._engaged_until = 0.0
        self._counters = _Counters()
        self._counter_lock = threading.Lock()
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
        if self._ctx.encoder is not None:
            self._ctx.encoder.cancel(self.session_id)
        for parked in list(self._parked):
            self._discard(parked)
        self._frames.clear()
        self._prompts.clear()
        self._tracks.clear()
        self._keyframe = None

    @property
    def stats(self) -> SessionStats:
        return SessionStats(**vars(self._counters))

    @property
    def keyframe(self) -> Keyframe | None:
        """The keyframe prompts are answered from (read-only view for tests and metrics)."""
        return self._keyframe

    async def idle(self) -> None:
        """Until the work loop has nothing left to do (every prompt answered, speculation and
        tracking caught up with the newest frame). For tests and benchmarks."""
        await self._idle.wait()

    @property
    def tracked(self) -> tuple[int, ...]:
        """prompt_ids of the objects being tracked."""
        return tuple(self._tracks)

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
                    self.submit(msg, received)
                case MessageType.CANCEL:
                    msg = decode_envelope(env, self._ctx.config.limits)
                    assert isinstance(msg, Cancel)
                    self.cancel_tracking(msg.prompt_id)
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
        pending.on_decode = self._count_decode
        self._frames[pending.frame_id] = pending
        self._frames.move_to_end(pending.frame_id)
        while len(self._frames) > self._ctx.config.frame_window:
            _, old = self._frames.popitem(last=False)
            if not old.used:
                self._counters.frames_dropped += 1
        self._maybe_refresh(pending)
        if self._tracks:
            self._poke()

    def submit_prompt(self, prompt: Prompt, received: float | None = None) -> None:
        """Queue a v1 prompt (answered now, not tracked)."""
        self.submit(PromptMessage(prompt), received)

    def submit(self, message: PromptMessage, received: float | None = None) -> None:
        """Queue a prompt with its answer mode, tracking flag or everything request."""
        self._counters.prompts_received += 1
        if len(self._prompts) >= self._ctx.config.prompt_queue:
            dropped = self._prompts.popleft()
            self._counters.prompts_dropped += 1
            asyncio.ensure_future(
                self.report(
                    ProtocolError(
                        ErrorCode.OVERLOADED,
                        "prompt dropped: newer prompts arrived faster than answered",
                        dropped.message.prompt.prompt_id,
                    )
                )
            )
        self._prompts.append(_PromptJob(message, received if received is not None else time.time()))
        self._poke()

    def cancel_tracking(self, prompt_id: int | None = None) -> None:
        """Stop tracking one object (or all); no result of kind track follows for it."""
        if prompt_id is None:
            self._tracks.clear()
        else:
            self._tracks.pop(prompt_id, None)

    # -- outbound ----------------------------------------------------------------------------

    async def report(self, exc: ProtocolError) -> None:
        self._counters.errors_sent += 1
        log.info("session %s: %s (%s, ref %s)", self.session_id, exc.message, exc.code, exc.ref_id)
        await self._emit(ErrorMessage(exc.code, exc.message, exc.ref_id))

    async def _emit(self, msg: Message) -> None:
        if self._send is not None:
            await self._send(msg)

    async def _emit_answer(self, answer: Answer, kind: ResultKind) -> None:
        result = answer.result
        result = replace(result, timestamps=replace(result.timestamps, send=time.time()))
        if kind is ResultKind.TRACK:
            self._counters.track_results += 1
        else:
            self._counters.prompts_answered += 1
        await self._emit(ResultMessage(result, kind, str(answer.mapping)))

    # -- work loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if (parked := self._next_parked()) is not None:
                await self._guard(self._retry_parked(parked), parked.job.message.prompt.prompt_id)
            elif self._prompts:
                job = self._prompts.popleft()
                await self._guard(self._handle_prompt(job), job.message.prompt.prompt_id)
            elif self._scheduled and self._gaze.has_wanted():  # the EVERY_FRAME baseline does not speculate
                want = self._gaze.wanted()
                assert want is not None
                await self._guard(self._speculate(want), None)
            elif self._track_due():
                await self._guard(self._track_newest(), None)
            else:
                self._wake.clear()
                self._idle.set()
                await self._wake.wait()

    async def _guard(self, work: Coroutine[Any, Any, None], ref_id: int | None) -> None:
        """Run one work item; its failure is reported to this client and the loop goes on."""
        try:
            await work
        except ProtocolError as exc:
            if ref_id is not None:  # the client waits on its prompt's id, whichever frame failed
                exc.ref_id = ref_id
            await self.report(exc)
        except ModelError as exc:
            await self.report(ProtocolError(ErrorCode.INTERNAL, f"model failed: {exc}", ref_id))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the session must outlive any single bad item; log it in full
            log.exception("session %s: work item (ref %s) failed", self.session_id, ref_id)
            await self.report(
                ProtocolError(ErrorCode.INTERNAL, f"engine error on this item: {exc!r}", ref_id)
            )

    async def _run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._ctx.executor, fn, *args)

    async def _load(self, pending: PendingFrame) -> RGBDFrame:
        return pending.frame() if pending.used else await self._run_sync(pending.frame)

    def _poke(self) -> None:
        """New work: wake the loop (and it is not idle any more)."""
        self._idle.clear()
        self._wake.set()

    def _count_decode(self) -> None:
        with self._counter_lock:
            self._counters.frames_decoded += 1

    # -- prompts -----------------------------------------------------------------------------

    async def _handle_prompt(self, job: _PromptJob) -> None:
        msg, prompt = job.message, job.message.prompt
        if msg.track:
            self._check_track_capacity(prompt.prompt_id)
        pending = self._frame_for(prompt)
        frame = await self._load(pending)
        stamps = StageTimestamps(
            capture=frame.capture_ts or None, receive=job.received, frame_decode=time.time()
        )
        h, w = frame.size
        self._engage()
        if msg.everything is not None:
            await self._answer_everything(msg, pending, frame, stamps)
            return
        if prompt.text:  # voice text: candidates ranked by CLIP, gaze and predicted IoU
            await self._answer_text(msg, pending, frame, stamps)
            return
        request = prompt_input(prompt, h, w)  # validates before anything is fed to the gaze detector
        update = self._gaze.push(prompt.gaze, frame.intrinsics) if prompt.gaze else None
        dwell = update.dwell if update is not None else None
        if msg.answer is AnswerMode.DWELL and dwell is None:
            return  # gaze stream: the samples went to the detector; nothing to answer yet
        kind = ResultKind.ANSWER
        if dwell is not None:  # the selection is at the fixation's centroid, not at these samples
            kind = ResultKind.DWELL
            request = prompt_input(prompt, h, w, (dwell.fixation.x, dwell.fixation.y))
            self._counters.dwell_selections += 1
        if _gaze_only(prompt) and self._scheduled:
            gaze_x, gaze_y = (float(v) for v in request.point_coords[-1])
            held = self._gaze.serve(
                dwell.fixation_id if dwell is not None else None,
                gaze_x,
                gaze_y,
                frame,
                time.time(),
                self._pipeline.mapping,
            )
            if held is not None:
                reused = await self._run_sync(self._from_speculation, held, frame, prompt.prompt_id, stamps)
                if reused is not None:
                    self._counters.speculative_hits += 1
                    await self._finish_prompt(job, frame, reused, kind, request, fresh=False)
                    return
        if self._scheduled:
            answer = await self._from_keyframe(pending, frame, request, prompt, stamps)
            if answer is None:  # no keyframe sees it yet: wait aside, let the prompts behind go first
                self._park(_Parked(job, pending, frame, request, kind, stamps, self._keyframe_ready()))
                return
        else:
            answer = await self._answer(pending, frame, request, prompt, stamps)
        await self._finish_prompt(job, frame, answer, kind, request)

    async def _finish_prompt(
        self,
        job: _PromptJob,
        frame: RGBDFrame,
        answer: Answer,
        kind: ResultKind,
        request: PromptInput,
        fresh: bool = True,
    ) -> None:
        await self._emit_answer(answer, kind)
        prompt = job.message.prompt
        if job.message.track:
            self._start_tracking(prompt, frame, answer)
        if _gaze_only(prompt):
            if fresh:  # hold it: the next gaze prompts on the same spot are answered from it
                x, y = (float(v) for v in request.point_coords[-1])
                self._gaze.store(Speculation(self._gaze.open_fixation_id, x, y, frame, answer, time.time()))
            await self._drop_superseded_gaze(job)
        if not self._parked and self._keyframe is not None and self._ctx.encoder is not None:
            # Nobody waits for a keyframe any more: an encode the prompts asked for and not yet started
            # is withdrawn; the background triggers (motion, age) ask again if the view needs one.
            self._ctx.encoder.cancel(self.session_id, only_prompt=True)

    async def _drop_superseded_gaze(self, answered: _PromptJob) -> None:
        """Gaze is a stream: once a gaze prompt is answered, older gaze prompts still waiting for a
        keyframe are stale (the eye has moved on); they are dropped, each with an error."""
        stale = [
            p for p in self._parked if _gaze_only(p.job.message.prompt) and p.job.received < answered.received
        ]
        if not stale:
            return
        for p in stale:
            self._discard(p)
        self._counters.prompts_dropped += len(stale)
        for p in stale:
            await self.report(
                ProtocolError(
                    ErrorCode.OVERLOADED,
                    f"gaze prompt dropped: it waited for a keyframe and gaze prompt "
                    f"{answered.message.prompt.prompt_id} (newer) was answered first",
                    p.job.message.prompt.prompt_id,
                )
            )

    async def _from_keyframe(
        self,
        pending: PendingFrame,
        frame: RGBDFrame,
        request: PromptInput,
        prompt: Prompt,
        stamps: StageTimestamps,
    ) -> Answer | None:
        """The answer from the current keyframe, or None when there is none or it cannot see the prompt."""
        self._maybe_refresh(pending, frame)
        keyframe = self._keyframe
        if keyframe is None or not self._sees_same_scene(keyframe, pending, frame):
            return None
        if self._first_chance_encode(pending, keyframe):
            return None  # parked on the encode of its own frame
        return await self._run_sync(
            self._pipeline.answer,
            frame,
            keyframe,
            request,
            prompt.prompt_id,
            replace(stamps, encode=time.time()),
            prompt.want_3d,
        )

    def _first_chance_encode(self, pending: PendingFrame, keyframe: Keyframe) -> bool:
        """True when this very frame is being encoded (or waits for the encoder) and it is the
        encoder's first chance to refresh since `keyframe` (no frame with depth came in between).

        A client that sends depth only with the frames it prompts on (WebRTC) gives the encoder
        nothing to refresh from between two prompts, so the keyframe is a whole prompt interval
        old. Its prompt is parked on its own frame's encode: at most one encode of waiting, about
        what mapping the masks from the old keyframe costs (and both would compete for the CPU),
        and the masks come out exact. With depth on every frame the background refresh keeps the
        keyframe as fresh as the stream allows and prompts are answered from it at once.
        """
        encoder = self._ctx.encoder
        if encoder is None or keyframe.frame_id >= pending.frame_id:
            return False
        if encoder.encoding(self.session_id, pending.frame_id) is None:
            return False
        return not any(
            p.has_depth and keyframe.frame_id < p.frame_id < pending.frame_id for p in self._frames.values()
        )

    def _park(self, parked: _Parked) -> None:
        """Set a prompt aside until a newer keyframe lands, and make sure one is coming: an encode
        of its frame, or of a newer frame that replaces it while it waits (newest frame wins)."""
        log.debug(
            "session %s: prompt %s on frame %s waits for a keyframe (try %d, keyframe %s)",
            self.session_id,
            parked.job.message.prompt.prompt_id,
            parked.frame.frame_id,
            parked.tries,
            self._keyframe.frame_id if self._keyframe is not None else None,
        )
        if parked.tries == 0:
            self._counters.prompts_waited_for_encode += 1
        if len(self._parked) >= self._ctx.config.prompt_queue:
            dropped = self._parked[0]
            self._discard(dropped)
            self._counters.prompts_dropped += 1
            asyncio.ensure_future(
                self.report(
                    ProtocolError(
                        ErrorCode.OVERLOADED,
                        "prompt dropped: it waited for a keyframe while newer prompts arrived",
                        dropped.job.message.prompt.prompt_id,
                    )
                )
            )
        self._parked.append(
            replace(parked, encode=self._request_keyframe(parked.pending, KeyframeReason.PROMPT))
        )

    def _keyframe_ready(self) -> float:
        return self._keyframe.ready if self._keyframe is not None else 0.0

    def _next_parked(self) -> _Parked | None:
        """The oldest parked prompt that can be retried: a keyframe newer than the one that failed it
        landed, or the encode of its own frame finished (or the encode it waited for failed)."""
        ready = self._keyframe_ready()
        for parked in self._parked:
            waited = parked.encode
            done = waited is not None and waited.done() and not waited.cancelled()
            if parked.tries >= 1:
                if done:
                    return parked
            elif ready > parked.after or (done and waited.exception() is not None):
                return parked
        return None

    async def _retry_parked(self, parked: _Parked) -> None:
        """Answer from the keyframe that landed; if it does not see the prompt either, from an
        encode of the prompt's own frame (an encoder slot no newer frame replaces; not on this loop)."""
        self._parked.remove(parked)
        prompt = parked.job.message.prompt
        waited = parked.encode
        if waited is not None and waited.done() and not waited.cancelled() and waited.exception() is not None:
            if parked.tries >= 1 or self._keyframe_ready() <= parked.after:
                raise waited.exception()  # the encode it waited for failed (e.g. no valid depth)
        if parked.tries >= 1:  # its own frame's keyframe
            assert waited is not None
            answer = await self._run_sync(
                self._pipeline.answer,
                parked.frame,
                waited.result(),
                parked.request,
                prompt.prompt_id,
                replace(parked.stamps, encode=time.time()),
                prompt.want_3d,
            )
            assert answer is not None  # a keyframe of the prompt's own frame sees the prompt
        else:
            answer = await self._from_keyframe(
                parked.pending, parked.frame, parked.request, prompt, parked.stamps
            )
        if answer is None:
            log.debug(
                "session %s: prompt %s unseen by keyframe %s; encoding its own frame %s",
                self.session_id,
                prompt.prompt_id,
                self._keyframe.frame_id if self._keyframe is not None else None,
                parked.frame.frame_id,
            )
            assert self._ctx.encoder is not None
            own = self._ctx.encoder.request(
                self._own_owner(prompt.prompt_id),
                parked.pending.frame,
                parked.frame.frame_id,
                KeyframeReason.PROMPT,
            )
            own.add_done_callback(lambda _: self._poke())
            self._parked.append(replace(parked, tries=1, encode=own))
            return
        await self._finish_prompt(parked.job, parked.frame, answer, parked.kind, parked.request)

    def _discard(self, parked: _Parked) -> None:
        """Forget a parked prompt, and the encode of its own frame if it had asked for one."""
        self._parked.remove(parked)
        if parked.tries >= 1 and self._ctx.encoder is not None:
            self._ctx.encoder.cancel(self._own_owner(parked.job.message.prompt.prompt_id))

    def _own_owner(self, prompt_id: int) -> str:
        """Encoder slot of one prompt's own frame: no newer frame of the session replaces it."""
        return f"{self.session_id}/prompt-{prompt_id}"

    async def _answer(
        self,
        pending: PendingFrame,
        frame: RGBDFrame,
        request: PromptInput,
        prompt: Prompt,
        stamps: StageTimestamps,
    ) -> Answer:
        """From the keyframe when it sees the prompt; otherwise wait for an encode of this frame."""
        if not self._scheduled:
            return await self._run_sync(self._answer_on_path, frame, request, prompt, stamps)

        async def answer_from(keyframe: Keyframe) -> Answer | None:  # None: keyframe cannot see the prompt
            now = replace(stamps, encode=time.time())
            return await self._run_sync(
                self._pipeline.answer, frame, keyframe, request, prompt.prompt_id, now, prompt.want_3d
            )

        self._maybe_refresh(pending, frame)
        keyframe = self._keyframe
        if keyframe is not None and self._sees_same_scene(keyframe, pending, frame):
            answer = await answer_from(keyframe)
            if answer is not None:
                return answer
        self._counters.prompts_waited_for_encode += 1
        answer = await answer_from(await self._request_keyframe(pending, KeyframeReason.PROMPT))
        if answer is None:  # a newer frame won the encode and does not see the prompt: encode its own frame
            keyframe = await self._run_sync(self._pipeline.keyframe_now, frame)
            self._adopt(keyframe)
            answer = await answer_from(keyframe)
        assert answer is not None  # a keyframe of the prompt's own frame always sees the prompt
        return answer

    def _answer_on_path(
        self, frame: RGBDFrame, request: PromptInput, prompt: Prompt, stamps: StageTimestamps
    ) -> Answer:
        """EVERY_FRAME baseline (worker thread): encode this frame unless it is the keyframe, then decode."""
        keyframe = self._keyframe_on_path(frame)
        answer = self._pipeline.answer(
            frame, keyframe, request, prompt.prompt_id, replace(stamps, encode=time.time()), prompt.want_3d
        )
        assert answer is not None
        return answer

    def _keyframe_on_path(self, frame: RGBDFrame) -> Keyframe:
        keyframe = self._keyframe
        if keyframe is None or keyframe.frame_id != frame.frame_id:
            keyframe = self._pipeline.keyframe_now(frame)
            self._keyframe = keyframe
            with self._counter_lock:
                self._counters.keyframes_encoded += 1
        return keyframe

    async def _answer_everything(
        self, msg: PromptMessage, pending: PendingFrame, frame: RGBDFrame, stamps: StageTimestamps
    ) -> None:
        assert msg.everything is not None
        ask = msg.everything
        config = replace(self._ctx.config.everything, points_per_side=ask.points_per_side)
        if ask.pred_iou_thresh is not None:
            config = replace(config, pred_iou_thresh=ask.pred_iou_thresh)
        if ask.stability_score_thresh is not None:
            config = replace(config, stability_score_thresh=ask.stability_score_thresh)
        keyframe = await self._keyframe_for(pending, frame)
        answer = await self._run_sync(
            self._pipeline.everything,
            frame,
            keyframe,
            msg.prompt.prompt_id,
            replace(stamps, encode=time.time()),
            config,
            msg.prompt.want_3d,
        )
        await self._emit_answer(answer, ResultKind.EVERYTHING)

    async def _answer_text(
        self, msg: PromptMessage, pending: PendingFrame, frame: RGBDFrame, stamps: StageTimestamps
    ) -> None:
        """engine/text_answer.py: the multimask outputs of the prompt's gaze / points / box / mask, or
        segment-everything for text alone, unlifted; the ranker picks one and lifts it."""
        prompt = msg.prompt
        ranker = require_text_ranker(self._ctx.text, prompt)
        spatial = spatial_part(prompt)
        request = None
        if spatial.is_empty():
            keyframe = await self._keyframe_for(pending, frame)
            answer = await self._run_sync(
                self._pipeline.everything,
                frame,
                keyframe,
                prompt.prompt_id,
                replace(stamps, encode=time.time()),
            )
        else:
            request = prompt_input(spatial, *frame.size)
            answer = await self._answer(pending, frame, request, replace(spatial, want_3d=False), stamps)
        answer = await self._run_sync(ranker.rank, self._pipeline, answer, frame, prompt, request)
        await self._emit_answer(answer, ResultKind.ANSWER)
        if msg.track:
            self._start_tracking(prompt, frame, answer)

    async def _keyframe_for(self, pending: PendingFrame, frame: RGBDFrame) -> Keyframe:
        """Any keyframe (everything and tracking map whole masks); wait for one only when there is none."""
        if not self._scheduled:
            return await self._run_sync(self._keyframe_on_path, frame)
        self._maybe_refresh(pending, frame)
        if self._keyframe is not None:
            return self._keyframe
        self._counters.prompts_waited_for_encode += 1
        return await self._request_keyframe(pending, KeyframeReason.PROMPT)

    def _sees_same_scene(self, keyframe: Keyframe, pending: PendingFrame, frame: RGBDFrame) -> bool:
        """Without poses, only the image says whether the keyframe still shows this scene."""
        if pending.pose is not None and keyframe.frame.pose is not None:
            return True  # the mapping decides, point by point (visible in the keyframe or not)
        reason = keyframe_reason(
            self._ctx.config.keyframes,
            replace(keyframe.ref, time=time.time()),
            None,
            time.time(),
            thumbnail(frame),
        )
        return reason is not KeyframeReason.SCENE_CHANGED

    def _frame_for(self, prompt: Prompt) -> PendingFrame:
        if not self._frames:
            raise ProtocolError(
                ErrorCode.NO_FRAME, "no frame received yet; send a frame before prompting", prompt.prompt_id
            )
        pending = self._frames.get(prompt.frame_id)
        return pending if pending is not None else next(reversed(self._frames.values()))

    # -- keyframes ---------------------------------------------------------------------------

    @property
    def _scheduled(self) -> bool:
        return self._ctx.encoder is not None and self._ctx.config.keyframes.policy is KeyframePolicy.SCHEDULED

    def _engage(self) -> None:
        self._engaged_until = time.time() + self._ctx.config.keyframes.engaged_s

    def _maybe_refresh(self, pending: PendingFrame, frame: RGBDFrame | None = None) -> None:
        """Ask for a background keyframe when the view changed enough (only while engaged, and only
        for the newest frame: refreshing to an older view than the newest is wasted encoder time)."""
        if not self._scheduled or self._keyframe is None:
            return
        if not self._frames or pending is not next(reversed(self._frames.values())):
            return
        if self._pipeline.model.needs_depth and not pending.has_depth:
            return  # the encoder would refuse it (no depth); wait for a frame that has some
        now = time.time()
        if now > self._engaged_until and not self._tracks and not self._gaze.active:
            return
        reference = self._inflight or self._keyframe.ref
        thumb = thumbnail(frame) if frame is not None and pending.pose is None else None
        reason = keyframe_reason(self._ctx.config.keyframes, reference, pending.pose, now, thumb)
        if reason is not None:
            self._request_keyframe(pending, reason)

    def _request_keyframe(self, pending: PendingFrame, reason: KeyframeReason) -> asyncio.Future[Keyframe]:
        encoder = self._ctx.encoder
        assert encoder is not None
        future = encoder.request(self.session_id, pending.frame, pending.frame_id, reason)
        self._inflight = KeyframeRef(pending.pose, None, time.time())
        if future is not self._watched:
            self._watched = future
            future.add_done_callback(self._landed)
        return future

    def _landed(self, future: asyncio.Future[Keyframe]) -> None:
        if future is self._watched:
            self._watched = None
            self._inflight = None
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.debug("session %s: keyframe encode failed: %s", self.session_id, exc)
            self._poke()  # a parked prompt may have been waiting for it
            return
        keyframe = future.result()
        log.debug(
            "session %s: keyframe of frame %s landed (%s)",
            self.session_id,
            keyframe.frame_id,
            keyframe.reason,
        )
        self._adopt(keyframe)
        self._counters.keyframes_encoded += 1
        if self._deferred_speculation is not None:
            self._gaze.want(self._deferred_speculation)
            self._deferred_speculation = None
        self._poke()

    def _adopt(self, keyframe: Keyframe) -> None:
        current = self._keyframe
        if current is None or keyframe.ready >= current.ready:
            self._keyframe = keyframe

    # -- gaze --------------------------------------------------------------------------------

    async def _speculate(self, want: SpeculationRequest) -> None:
        """Decode at a fixation before the dwell completes, on the newest frame and keyframe."""
        if not self._frames:
            return
        pending = next(reversed(self._frames.values()))
        frame = await self._load(pending)
        h, w = frame.size
        if not (0 <= want.x < w and 0 <= want.y < h):
            return
        keyframe = self._keyframe
        if keyframe is None or not self._scheduled:
            if self._scheduled:
                self._deferred_speculation = want
                self._request_keyframe(pending, KeyframeReason.PROMPT)
                return
            keyframe = await self._run_sync(self._keyframe_on_path, frame)
        request = PromptInput(np.array([[want.x, want.y]], np.float32), np.ones(1, np.int32))
        stamps = StageTimestamps(
            capture=frame.capture_ts or None, frame_decode=time.time(), encode=time.time()
        )
        answer = await self._run_sync(self._pipeline.answer, frame, keyframe, request, -1, stamps, True)
        if answer is not None:
            self._counters.speculative_decodes += 1
            self._gaze.store(Speculation(want.fixation_id, want.x, want.y, frame, answer, time.time()))

    def _from_speculation(
        self, spec: Speculation, frame: RGBDFrame, prompt_id: int, stamps: StageTimestamps
    ) -> Answer | None:
        """A held speculative answer, its masks moved to the prompt's frame (worker thread).

        Its decode and lift stamps are those of the speculation, earlier than this prompt's receive.
        """
        result = spec.answer.result
        if spec.frame.frame_id == frame.frame_id:
            masks, mask, method = result.masks, spec.answer.mask, spec.answer.mapping
        else:
            if spec.frame.pose is None or frame.pose is None:
                return None
            mapping = FrameMapping.between(spec.frame, frame, self._pipeline.mapping)
            moved = [
                mapping.mask(c.mask.decode(), rough=i != result.best) for i, c in enumerate(result.masks)
            ]
            masks = tuple(
                MaskCandidate(RLEMask.encode(m), c.score, c.granularity)
                for m, c in zip(moved, result.masks, strict=True)
            )
            mask, method = moved[result.best], mapping.method
        kept = result.timestamps
        stamps = replace(stamps, encode=kept.encode, decode=kept.decode, lift=kept.lift)
        out = replace(
            result,
            prompt_id=prompt_id,
            frame_id=frame.frame_id,
            masks=masks,
            pose=frame.pose,
            timestamps=stamps,
        )
        return Answer(out, mask, method, spec.answer.prediction)

    # -- tracking ----------------------------------------------------------------------------

    def _check_track_capacity(self, prompt_id: int) -> None:
        if prompt_id not in self._tracks and len(self._tracks) >= self._ctx.config.tracking.max_objects:
            raise ProtocolError(
                ErrorCode.OVERLOADED,
                f"already tracking {len(self._tracks)} objects (the limit); "
                "send cancel for one before tracking another",
                prompt_id,
            )

    def _start_tracking(self, prompt: Prompt, frame: RGBDFrame, answer: Answer) -> None:
        self._check_track_capacity(prompt.prompt_id)
        self._tracks[prompt.prompt_id] = TrackState.from_answer(
            prompt.prompt_id, frame, answer, prompt.want_3d
        )
        self._tracked_frame_id = frame.frame_id

    def _track_due(self) -> bool:
        return (
            bool(self._tracks)
            and bool(self._frames)
            and next(reversed(self._frames)) != self._tracked_frame_id
        )

    async def _track_newest(self) -> None:
        """One tracking step for every tracked object, on the newest frame (older ones are skipped)."""
        pending = next(reversed(self._frames.values()))
        self._tracked_frame_id = pending.frame_id
        frame = await self._load(pending)
        keyframe = await self._keyframe_for(pending, frame)
        config = self._ctx.config.tracking
        for prompt_id, state in list(self._tracks.items()):
            stamps = StageTimestamps(
                capture=frame.capture_ts or None,
                receive=pending.received,
                frame_decode=time.time(),
                encode=time.time(),
            )
            try:
                answer, new_state = await self._run_sync(
                    track_step, self._pipeline, state, frame, keyframe, stamps, config
                )
            except (ModelError, ProtocolError) as exc:
                code = exc.code if isinstance(exc, ProtocolError) else ErrorCode.INTERNAL
                await self.report(
                    ProtocolError(code, f"tracking failed on frame {frame.frame_id}: {exc}", prompt_id)
                )
                continue
            if prompt_id in self._tracks:  # not cancelled while the step ran
                self._tracks[prompt_id] = new_state
                await self._emit_answer(answer, ResultKind.TRACK)


def _gaze_only(prompt: Prompt) -> bool:
    """A prompt of gaze samples alone (no click, box, mask or text): part of a gaze stream."""
    return bool(prompt.gaze) and not (
        prompt.points or prompt.box is not None or prompt.mask is not None or prompt.text
    )

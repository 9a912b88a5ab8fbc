"""What a session's handlers work with: the session's parts.

`SessionParts` is one session's state as the handlers see it: its frame window, keyframe source,
gaze state, tracked objects and the selections' world anchors, plus `run` (the worker pool, one
call at a time per session) and `load` (a frame's pixels). Everything in it is read and
written on the event loop only; worker threads get inputs and return outputs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from engine.anchor import Anchors
from engine.config import EngineConfig
from engine.core import Prompt, RGBDFrame
from engine.dwell import GazeState, SpeculationRequest
from engine.errors import NoFrame, Overloaded
from engine.pipeline import Answer, Pipeline
from engine.protocol import Message, ResultKind, SessionStats
from engine.session.context import Counters, SessionContext
from engine.session.frames import FrameWindow, PendingFrame
from engine.tracking import TrackState

if TYPE_CHECKING:
    from engine.capture.handler import CaptureHandler
    from engine.session.keyframes import KeyframeSource
    from engine.session.outbox import Outbox
    from engine.session.prompt_queue import PromptQueue
    from engine.tracking_memory import TrackMemory

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Reply:
    """One result for the facade to send: an answer and its kind."""

    answer: Answer
    kind: ResultKind


@dataclass(frozen=True, eq=False)
class Failure:
    """One error for the facade to report: what failed, and the prompt it belongs to."""

    error: Exception
    ref_id: int | None


@dataclass(frozen=True, eq=False)
class Notice:
    """A ready protocol message for the facade to send (capture progress, a saved capture)."""

    message: Message


Outgoing = Reply | Failure | Notice
"""What handlers hand back; they never touch the transport."""


@dataclass(eq=False)
class SessionParts:
    """One session's state, as handlers see it. Event-loop only."""

    session_id: str
    context: SessionContext
    frames: FrameWindow
    counters: Counters
    run: Callable[..., Any]
    gaze: GazeState
    keyframes: KeyframeSource = field(init=False)
    tracks: dict[int, TrackState] = field(default_factory=dict)
    tracked_frame_id: int | None = None
    engaged_until: float = 0.0
    gaze_answered_at: float = 0.0  # receive time of the newest answered gaze-only prompt
    deferred_speculation: SpeculationRequest | None = None
    capture: CaptureHandler | None = None  # made on the session's first capture message
    track_memory: TrackMemory | None = None  # the model's video memory, while objects are tracked
    anchors: Anchors = field(default_factory=Anchors)  # world anchors of the held / tracked objects

    @property
    def pipeline(self) -> Pipeline:
        assert self.context.pipeline is not None
        return self.context.pipeline

    @property
    def config(self) -> EngineConfig:
        return self.context.config

    @property
    def scheduled(self) -> bool:
        """Keyframes come from the background encoder (not the EVERY_FRAME baseline)."""
        return self.keyframes.scheduled

    def engage(self) -> None:
        """A user acted: background keyframe refreshes are worth their cost for a while."""
        self.engaged_until = time.time() + self.config.keyframes.engaged_s

    @property
    def tracks_in_memory(self) -> bool:
        """Tracked objects follow the model's video memory (SAM 2.1 / EdgeTAM video checkpoints),
        which sees every frame itself, rather than masks mapped from keyframes."""
        return self.context.model.tracker is not None and self.config.tracking.video_memory

    def engaged(self) -> bool:
        """Background keyframe refreshes are worth their cost: a recent prompt, an open fixation, or
        objects tracked from keyframes (a video memory encodes each frame itself: refreshes would
        encode it twice)."""
        tracking = bool(self.tracks) and not self.tracks_in_memory
        return time.time() <= self.engaged_until or tracking or self.gaze.active

    def frame_for(self, prompt: Prompt, held: PendingFrame | None = None) -> PendingFrame:
        """The prompt's frame (held since the prompt arrived, or still in the window), else the newest."""
        if held is not None and held.frame_id == prompt.frame_id:
            return held
        newest = self.frames.newest()
        if newest is None:
            raise NoFrame("no frame received yet; send a frame before prompting", prompt.prompt_id)
        return self.frames.get(prompt.frame_id) or newest

    async def load(self, pending: PendingFrame) -> RGBDFrame:
        """The frame's pixels (decoded on the worker pool the first time)."""
        return pending.frame() if pending.used else await self.run(pending.frame)

    def check_track_capacity(self, prompt_id: int) -> None:
        limit = self.config.tracking.max_objects
        if prompt_id not in self.tracks and len(self.tracks) >= limit:
            raise Overloaded(
                f"already tracking {len(self.tracks)} objects (the limit); "
                "send cancel for one before tracking another",
                prompt_id,
            )


class SerialRunner:
    """Runs a session's blocking calls on the engine's worker pool, one at a time.

    Why one at a time: a session that floods prompts then holds at most one worker, and the pool's
    FIFO queue interleaves sessions, so one busy session cannot starve the others.
    """

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._lock = asyncio.Lock()

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def build_parts(session_id: str, context: SessionContext, on_landed: Callable[[], None]) -> SessionParts:
    """A new session's parts: empty window, counters, its worker-pool runner, gaze state and the
    keyframe source the engine's policy asks for."""
    from engine.session.keyframes import keyframe_source  # keyframes.py imports this module's types

    config = context.config
    parts = SessionParts(
        session_id,
        context,
        FrameWindow(config.frame_window),
        Counters(),
        SerialRunner(context.executor),
        GazeState(config.gaze),
        anchors=Anchors(config.anchor),
    )
    parts.keyframes = keyframe_source(
        session_id, context, parts.frames, parts.counters, parts.run, parts.engaged, on_landed
    )
    return parts


def session_stats(parts: SessionParts, queue: PromptQueue, outbox: Outbox) -> SessionStats:
    """The counters a client gets on ping and bye, gathered from the parts that keep them."""
    c, frames = parts.counters, parts.frames
    return SessionStats(
        frames_received=frames.received,
        frames_dropped=frames.dropped,
        frames_decoded=frames.decoded,
        prompts_received=queue.received,
        prompts_answered=c.prompts_answered,
        prompts_dropped=queue.dropped + c.prompts_dropped,
        errors_sent=c.errors_sent,
        keyframes_encoded=c.keyframes_encoded,
        prompts_waited_for_encode=c.prompts_waited_for_encode,
        speculative_decodes=c.speculative_decodes,
        speculative_hits=c.speculative_hits,
        dwell_selections=c.dwell_selections,
        track_results=c.track_results,
        replies_dropped=outbox.dropped,
    )

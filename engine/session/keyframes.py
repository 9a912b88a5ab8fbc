"""Where a session's prompts get their keyframe: one `await keyframe_for(...)` for every kind of wait.

A prompt is answered from the session's keyframe when that keyframe can see it. When it cannot
(no keyframe yet, the scene changed, the object is hidden there, or the prompt's own frame is
already being encoded), the prompt waits for a newer keyframe (an encode of its frame, or of a
newer frame that replaces it: newest frame wins) and, if that one cannot see it either, for an
encode of its own frame in a slot no newer frame replaces. All of that hides behind
`keyframe_for`; the prompt's handler awaits it as its own task, so a waiting prompt never blocks
the prompts behind it.

Two sources, chosen by the keyframe policy (`KEYFRAME_SOURCES`):
- `ScheduledKeyframes`: the engine-wide KeyframeEncoder encodes in the background
  (engine/scheduler.py); prompts reuse, map, or wait as above.
- `OnPathKeyframes`: the EVERY_FRAME baseline: each prompt's frame is encoded on the prompt path,
  the way segment-anything's predictor is used in a loop (bench.streaming compares the two).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol

from engine.core import RGBDFrame
from engine.errors import EngineError
from engine.scheduler import (
    Keyframe,
    KeyframeEncoder,
    KeyframePolicy,
    KeyframeReason,
    KeyframeRef,
    keyframe_reason,
    thumbnail,
)
from engine.session.context import Counters, SessionContext
from engine.session.frames import FrameWindow, PendingFrame

log = logging.getLogger(__name__)

Use = Callable[[Keyframe], Awaitable[Any]]
"""Tries a keyframe: its answer, or None when this keyframe cannot see the prompt."""
GiveUp = Callable[[], EngineError | None]
"""Asked whenever something changes while a prompt waits: an error to stop waiting with, or None."""
OnWait = Callable[[], None]
"""Called when the caller has to wait (the session then lets the next prompt start)."""
Run = Callable[..., Awaitable[Any]]


class KeyframeSource(Protocol):
    """What handlers ask for keyframes. One per session; event-loop only."""

    keyframe: Keyframe | None
    """The keyframe prompts are answered from now."""
    scheduled: bool
    """Keyframes come from the background encoder (False: the EVERY_FRAME baseline)."""

    def maybe_refresh(self, pending: PendingFrame, frame: RGBDFrame | None = None) -> None: ...

    async def keyframe_for(
        self,
        pending: PendingFrame,
        frame: RGBDFrame,
        use: Use | None = None,
        *,
        slot: str | None = None,
        give_up: GiveUp | None = None,
        on_wait: OnWait | None = None,
    ) -> Any:
        """With `use`: the first non-None `use(keyframe)` over the keyframes this frame can get
        (the current one, a newer one, its own). Without: any keyframe (waits only if none exists).
        `slot` names the encoder slot of the frame's own encode; `give_up` can end the wait;
        `on_wait` is called once the caller has to wait."""
        ...

    def request(self, pending: PendingFrame, reason: KeyframeReason) -> asyncio.Future[Keyframe] | None: ...

    def wake(self) -> None:
        """Something a waiter's `give_up` looks at changed: let waiters ask it again."""
        ...

    def withdraw(self) -> None:
        """Nobody waits any more: withdraw a not-yet-started encode that prompts asked for."""
        ...

    def close(self) -> None: ...


class ScheduledKeyframes:
    """Background keyframes from the engine's KeyframeEncoder (policy SCHEDULED)."""

    scheduled = True

    def __init__(
        self,
        session_id: str,
        context: SessionContext,
        frames: FrameWindow,
        counters: Counters,
        run: Run,
        engaged: Callable[[], bool],
        on_change: Callable[[], None],
    ) -> None:
        assert context.encoder is not None
        self._session_id = session_id
        self._encoder: KeyframeEncoder = context.encoder
        self._config = context.config
        self._needs_depth = context.model.needs_depth
        self._frames = frames
        self._counters = counters
        self._run = run
        self._engaged = engaged
        self._on_change = on_change
        self.keyframe: Keyframe | None = None
        self.waiters = 0
        self._inflight: KeyframeRef | None = None  # the frame being encoded for us, as a motion reference
        self._watched: asyncio.Future[Keyframe] | None = None
        self._changed = asyncio.Event()

    # -- waiting -----------------------------------------------------------------------------

    async def keyframe_for(
        self,
        pending: PendingFrame,
        frame: RGBDFrame,
        use: Use | None = None,
        *,
        slot: str | None = None,
        give_up: GiveUp | None = None,
        on_wait: OnWait | None = None,
    ) -> Any:
        self.maybe_refresh(pending, frame)
        current = self.keyframe
        if use is None and current is not None:
            return current  # everything and tracking map whole masks: any keyframe will do
        if use is not None and current is not None and self._usable(current, pending, frame):
            answer = await use(current)
            if answer is not None:
                return answer
        self._counters.prompts_waited_for_encode += 1
        if on_wait is not None:
            on_wait()
        self.waiters += 1
        try:
            if use is None:
                return await self._landing(pending, give_up)
            return await self._wait_and_use(pending, frame, use, slot, give_up)
        finally:
            self.waiters -= 1

    async def _landing(self, pending: PendingFrame, give_up: GiveUp | None) -> Keyframe:
        """The next keyframe of this session (an encode of this frame or a newer one)."""
        for _ in range(3):  # a withdrawn request (another prompt's answer) is asked again
            future = self._request(pending, KeyframeReason.PROMPT)
            await self._until(future.done, give_up)
            if not future.cancelled():
                return future.result()  # raises the encode's failure
        raise EngineError(f"no keyframe could be encoded for frame {pending.frame_id}; send another frame")

    async def _wait_and_use(
        self, pending: PendingFrame, frame: RGBDFrame, use: Use, slot: str | None, give_up: GiveUp | None
    ) -> Any:
        after = self._ready()
        future = self._request(pending, KeyframeReason.PROMPT)
        await self._until(lambda: self._ready() > after or future.done(), give_up)
        landed = self.keyframe
        if self._ready() > after and landed is not None:
            if self._usable(landed, pending, frame):
                answer = await use(landed)
                if answer is not None:
                    return answer
        elif future.done() and not future.cancelled() and future.exception() is not None:
            raise future.exception()  # type: ignore[misc]  # the encode it waited for failed
        log.debug("session %s: frame %s unseen by keyframes; encoding it", self._session_id, frame.frame_id)
        own = self._encoder.encoding(self._session_id, frame.frame_id)
        owner = slot or f"{self._session_id}/frame-{frame.frame_id}"
        if own is None:
            own = self._encoder.request(owner, pending.frame, frame.frame_id, KeyframeReason.PROMPT)
        own.add_done_callback(lambda _: self._notify())
        try:
            await self._until(own.done, give_up)
        except BaseException:
            self._encoder.cancel(owner)
            raise
        if own.cancelled():
            raise EngineError(f"the encode of frame {frame.frame_id} was cancelled; prompt again")
        answer = await use(own.result())
        assert answer is not None  # a keyframe of the prompt's own frame sees the prompt
        return answer

    async def _until(self, done: Callable[[], bool], give_up: GiveUp | None) -> None:
        while True:
            if give_up is not None and (error := give_up()) is not None:
                raise error
            if done():
                return
            changed = self._changed
            await changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def wake(self) -> None:
        self._notify()

    # -- deciding ----------------------------------------------------------------------------

    def _ready(self) -> float:
        return self.keyframe.ready if self.keyframe is not None else 0.0

    def _usable(self, keyframe: Keyframe, pending: PendingFrame, frame: RGBDFrame) -> bool:
        return self._sees_same_scene(keyframe, pending, frame) and not self._first_chance_encode(
            pending, keyframe
        )

    def _sees_same_scene(self, keyframe: Keyframe, pending: PendingFrame, frame: RGBDFrame) -> bool:
        """Without poses, only the image says whether the keyframe still shows this scene."""
        if pending.pose is not None and keyframe.frame.pose is not None:
            return True  # the mapping decides, point by point (visible in the keyframe or not)
        now = time.time()
        reason = keyframe_reason(
            self._config.keyframes, replace(keyframe.ref, time=now), None, now, thumbnail(frame)
        )
        return reason is not KeyframeReason.SCENE_CHANGED

    def _first_chance_encode(self, pending: PendingFrame, keyframe: Keyframe) -> bool:
        """True when this very frame is being encoded (or waits for the encoder) and it is the
        encoder's first chance to refresh since `keyframe` (no frame with depth came in between).

        A client that sends depth only with the frames it prompts on (WebRTC) gives the encoder
        nothing to refresh from between two prompts, so the keyframe is a whole prompt interval
        old. Its prompt waits for its own frame's encode: at most one encode of waiting, about what
        mapping the masks from the old keyframe costs (and both would compete for the CPU), and the
        masks come out exact. With depth on every frame the background refresh keeps the keyframe
        as fresh as the stream allows and prompts are answered from it at once.
        """
        if keyframe.frame_id >= pending.frame_id:
            return False
        if self._encoder.encoding(self._session_id, pending.frame_id) is None:
            return False
        return not self._frames.depth_between(keyframe.frame_id, pending.frame_id)

    def maybe_refresh(self, pending: PendingFrame, frame: RGBDFrame | None = None) -> None:
        """Ask for a background keyframe when the view changed enough (only while engaged, and only
        for the newest frame: refreshing to an older view than the newest is wasted encoder time)."""
        if self.keyframe is None or not self._frames.is_newest(pending):
            return
        if self._needs_depth and not pending.has_depth:
            return  # the encoder would refuse it (no depth); wait for a frame that has some
        if not self._engaged():
            return
        reference = self._inflight or self.keyframe.ref
        thumb = thumbnail(frame) if frame is not None and pending.pose is None else None
        now = time.time()
        reason = keyframe_reason(self._config.keyframes, reference, pending.pose, now, thumb)
        if reason is not None:
            self._request(pending, reason)

    # -- encoder -----------------------------------------------------------------------------

    def request(self, pending: PendingFrame, reason: KeyframeReason) -> asyncio.Future[Keyframe] | None:
        return self._request(pending, reason)

    def _request(self, pending: PendingFrame, reason: KeyframeReason) -> asyncio.Future[Keyframe]:
        future = self._encoder.request(self._session_id, pending.frame, pending.frame_id, reason)
        self._inflight = KeyframeRef(pending.pose, None, time.time())
        if future is not self._watched:
            self._watched = future
            future.add_done_callback(self._landed)
        return future

    def _landed(self, future: asyncio.Future[Keyframe]) -> None:
        if future is self._watched:
            self._watched = None
            self._inflight = None
        if not future.cancelled():
            if (exc := future.exception()) is not None:
                log.debug("session %s: keyframe encode failed: %s", self._session_id, exc)
            else:
                keyframe = future.result()
                if self.keyframe is None or keyframe.ready >= self.keyframe.ready:
                    self.keyframe = keyframe
                self._counters.keyframes_encoded += 1
        self._notify()
        self._on_change()

    def withdraw(self) -> None:
        if self.waiters == 0 and self.keyframe is not None:
            # An encode the prompts asked for and not yet started is withdrawn; the background
            # triggers (motion, age) ask again if the view needs one.
            self._encoder.cancel(self._session_id, only_prompt=True)

    def close(self) -> None:
        self._encoder.cancel(self._session_id)
        self.keyframe = None
        self._notify()


class OnPathKeyframes:
    """EVERY_FRAME baseline: encode the prompt's frame on the prompt path unless it is the keyframe."""

    scheduled = False

    def __init__(self, context: SessionContext, counters: Counters, run: Run) -> None:
        assert context.pipeline is not None
        self._pipeline = context.pipeline
        self._counters = counters
        self._run = run
        self.keyframe: Keyframe | None = None

    async def keyframe_for(
        self,
        pending: PendingFrame,
        frame: RGBDFrame,
        use: Use | None = None,
        *,
        slot: str | None = None,
        give_up: GiveUp | None = None,
        on_wait: OnWait | None = None,
    ) -> Any:
        keyframe = self.keyframe
        if keyframe is None or keyframe.frame_id != frame.frame_id:
            keyframe = await self._run(self._pipeline.keyframe_now, frame)
            self.keyframe = keyframe  # set here, on the loop, not by the worker that encoded it
            self._counters.keyframes_encoded += 1
        if use is None:
            return keyframe
        answer = await use(keyframe)
        assert answer is not None  # a keyframe of the prompt's own frame sees the prompt
        return answer

    def maybe_refresh(self, pending: PendingFrame, frame: RGBDFrame | None = None) -> None:
        return None

    def request(self, pending: PendingFrame, reason: KeyframeReason) -> asyncio.Future[Keyframe] | None:
        return None

    def wake(self) -> None:
        return None

    def withdraw(self) -> None:
        return None

    def close(self) -> None:
        self.keyframe = None


def keyframe_source(
    session_id: str,
    context: SessionContext,
    frames: FrameWindow,
    counters: Counters,
    run: Run,
    engaged: Callable[[], bool],
    on_change: Callable[[], None],
) -> KeyframeSource:
    """The source the engine's keyframe policy asks for (SCHEDULED needs the engine's encoder)."""
    if context.encoder is not None and context.config.keyframes.policy is KeyframePolicy.SCHEDULED:
        return ScheduledKeyframes(session_id, context, frames, counters, run, engaged, on_change)
    return OnPathKeyframes(context, counters, run)

"""The keyframe policies a good engineer would write instead of ours: the baselines of bench.streaming.

Both run the engine's served path (transport, session, handlers, Pipeline, mask cleaning); only the
session's KeyframeSource (engine/session/keyframes.py) differs, so a difference in the bench is
the policy's and nothing else's.

- `NewestOnPathKeyframes` (baseline a, "newest"): the encoder on the prompt path, the newest prompt
  answered and stale ones dropped. A prompt that gets its turn while a newer frame has arrived
  is dropped (Overloaded, counted as a drop by the client) instead of encoded: in a gaze stream
  every frame carries a prompt, so "a newer frame arrived" is "a newer prompt arrived" (the source
  cannot see the session's prompt queue; in a click stream this rule would drop clicks, which is
  why it is a bench baseline and not an engine policy). No held answers, no speculation (those
  are the engine's, gated on `scheduled`).
- `LatestEmbeddingKeyframes` (baseline b, "latest"): background encodes of the newest frame, as
  often as the same duty cap allows (every frame asks; the encoder keeps only the newest request),
  the same held-answer cache and speculation as ours (`scheduled = True`), and each prompt decoded
  from the latest embedding as if it were of the prompt's own frame: no mapping of the prompt into
  the keyframe nor of the masks back, no waiting for a fresher keyframe.

`install(policy)` swaps the engine's source factory in the process it is called in (the bench's
engine child process only): parts.py asks `engine.session.keyframes.keyframe_source` at session
creation, so a session made afterwards gets the baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from enum import StrEnum
from typing import Any

from engine.core import RGBDFrame
from engine.errors import Overloaded
from engine.scheduler import Keyframe, KeyframeReason
from engine.session.context import Counters, SessionContext
from engine.session.frames import FrameWindow, PendingFrame
from engine.session.keyframes import (
    GiveUp,
    KeyframeSource,
    OnPathKeyframes,
    OnWait,
    Run,
    ScheduledKeyframes,
    Use,
)


class BenchPolicy(StrEnum):
    """Every keyframe policy bench.streaming compares (the engine's two, and the two baselines)."""

    SCHEDULED = "scheduled"  # ours (engine default)
    EVERY_FRAME = "every_frame"  # the engine's naive baseline: encode each prompt's frame, FIFO
    NEWEST = "newest"  # baseline (a)
    LATEST = "latest"  # baseline (b)


class NewestOnPathKeyframes(OnPathKeyframes):
    """Baseline (a): encode the newest prompt's frame on the prompt path; drop prompts gone stale."""

    def __init__(self, context: SessionContext, frames: FrameWindow, counters: Counters, run: Run) -> None:
        super().__init__(context, counters, run)
        self._frames = frames

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
        newest = self._frames.newest()
        if newest is not None and newest.frame_id > frame.frame_id and self.keyframe is not None:
            self._counters.prompts_dropped += 1
            raise Overloaded(
                f"prompt on frame {frame.frame_id} dropped: frame {newest.frame_id} (and its prompt) "
                "is newer",
                None,
            )
        return await super().keyframe_for(pending, frame, use, slot=slot, give_up=give_up, on_wait=on_wait)


class LatestEmbeddingKeyframes(ScheduledKeyframes):
    """Baseline (b): background encodes of the newest frame; prompts decoded from the latest embedding
    with no mapping (the embedding is taken to be of the prompt's frame)."""

    def maybe_refresh(self, pending: PendingFrame, frame: RGBDFrame | None = None) -> None:
        """Every newest frame asks for a background encode (the encoder keeps the newest request and
        holds background encodes to the duty cap), while engaged, as ours."""
        if self.keyframe is None or not self._frames.is_newest(pending):
            return
        if self._needs_depth and not pending.has_depth:
            return
        if not self._engaged():
            return
        self._request(pending, KeyframeReason.AGED)

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
        if current is None:  # nothing to answer from yet: wait for the first encode, as ours does
            self._counters.prompts_waited_for_encode += 1
            if on_wait is not None:
                on_wait()
            self.waiters += 1
            try:
                current = await self._landing(pending, give_up)
            finally:
                self.waiters -= 1
        if use is None:
            return current
        answer = await use(as_of(current, frame))
        assert answer is not None  # an identity mapping sees every in-frame prompt
        return answer


def as_of(keyframe: Keyframe, frame: RGBDFrame) -> Keyframe:
    """The keyframe's embedding presented as if it were computed from `frame` (no mapping)."""
    return replace(keyframe, frame=frame)


def _factory(policy: BenchPolicy) -> Callable[..., KeyframeSource]:
    def make(
        session_id: str,
        context: SessionContext,
        frames: FrameWindow,
        counters: Counters,
        run: Run,
        engaged: Callable[[], bool],
        on_change: Callable[[], None],
    ) -> KeyframeSource:
        if policy is BenchPolicy.NEWEST:
            return NewestOnPathKeyframes(context, frames, counters, run)
        if context.encoder is None:
            raise RuntimeError("baseline 'latest' needs the engine's keyframe encoder (policy scheduled)")
        return LatestEmbeddingKeyframes(session_id, context, frames, counters, run, engaged, on_change)

    return make


def install(policy: BenchPolicy) -> None:
    """Make sessions created from now on in this process use the baseline `policy` (NEWEST or LATEST)."""
    import engine.session.keyframes as keyframes

    if policy not in (BenchPolicy.NEWEST, BenchPolicy.LATEST):
        raise ValueError(f"{policy} is an engine policy, not a bench baseline")
    keyframes.keyframe_source = _factory(policy)  # type: ignore[assignment]

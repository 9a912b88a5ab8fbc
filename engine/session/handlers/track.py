"""Tracking: every tracked object gets a mask on each newest frame (engine/tracking.py).

Prompts with `track` start it (engine/session/handlers/common.py `start_tracking`); `cancel`
stops it. This is background work: one step for all tracked objects on the newest frame; frames
that arrived while a step ran are skipped (newest frame wins). A model with a video memory
(SAM 2.1 / EdgeTAM video checkpoints) tracks through it (engine/tracking_memory.py); every other
model through the session's keyframes (engine/tracking.py). Each track result carries the
object's world anchor, fused over its track results (engine/anchor.py).
"""

from __future__ import annotations

import time

from engine.core import RGBDFrame, StageTimestamps
from engine.errors import EngineError
from engine.protocol import ProtocolError, ResultKind
from engine.session.handlers.capture import capture_tracked
from engine.session.handlers.common import track_anchor
from engine.session.parts import Failure, Outgoing, Reply, SessionParts
from engine.tracking import track_step
from engine.tracking_memory import TrackMemory, memory_track_step
from models.interfaces import ModelError, VideoTracker


class TrackStep:
    def due(self, parts: SessionParts) -> bool:
        newest = parts.frames.newest()
        return bool(parts.tracks) and newest is not None and newest.frame_id != parts.tracked_frame_id

    async def run(self, parts: SessionParts) -> list[Outgoing]:
        pending = parts.frames.newest()
        assert pending is not None
        parts.tracked_frame_id = pending.frame_id
        frame = await parts.load(pending)
        tracker = parts.context.model.tracker
        if tracker is not None and parts.tracks_in_memory:
            return await self._with_memory(parts, pending.received, frame, tracker)
        keyframe = await parts.keyframes.keyframe_for(pending, frame)
        out: list[Outgoing] = []
        for prompt_id, state in list(parts.tracks.items()):
            now = time.time()
            stamps = StageTimestamps(
                capture=frame.capture_ts or None, receive=pending.received, frame_decode=now, encode=now
            )
            try:
                answer, new_state = await parts.run(
                    track_step, parts.pipeline, state, frame, keyframe, stamps, parts.config.tracking
                )
            except (ModelError, EngineError, ProtocolError) as exc:
                out.append(
                    Failure(_retold(exc, f"tracking failed on frame {frame.frame_id}: {exc}"), prompt_id)
                )
                continue
            if prompt_id in parts.tracks:  # not cancelled while the step ran
                parts.tracks[prompt_id] = new_state
                answer = parts.anchors.report(track_anchor(prompt_id), prompt_id, answer)
                out.append(Reply(answer, ResultKind.TRACK))
                out.extend(await capture_tracked(parts, prompt_id, frame, answer.mask))
        return out

    async def _with_memory(
        self, parts: SessionParts, received: float, frame: RGBDFrame, tracker: VideoTracker
    ) -> list[Outgoing]:
        """One step through the model's video memory (made on the first step after tracking starts)."""
        if parts.track_memory is None:
            frames = parts.config.tracking.memory_frames
            parts.track_memory = await parts.run(TrackMemory.start, tracker, frames)
        stamps = StageTimestamps(capture=frame.capture_ts or None, receive=received, frame_decode=time.time())
        try:
            steps = await parts.run(
                memory_track_step, parts.pipeline, parts.track_memory, dict(parts.tracks), frame, stamps
            )
        except (ModelError, EngineError, ProtocolError) as exc:
            parts.track_memory = None  # its state may be half-updated: start afresh next step
            message = f"tracking failed on frame {frame.frame_id}: {exc}"
            return [Failure(_retold(exc, message), pid) for pid in parts.tracks]
        out: list[Outgoing] = []
        for prompt_id, (answer, new_state) in steps.items():
            if prompt_id in parts.tracks:  # not cancelled while the step ran
                parts.tracks[prompt_id] = new_state
                answer = parts.anchors.report(track_anchor(prompt_id), prompt_id, answer)
                out.append(Reply(answer, ResultKind.TRACK))
                out.extend(await capture_tracked(parts, prompt_id, frame, answer.mask))
        return out


def cancel_tracking(parts: SessionParts, prompt_id: int | None) -> list[int]:
    """Stop tracking one object (or all); no result of kind track follows for it. Returns the
    prompt ids whose captures must be forgotten with it (a capture needs its tracked masks)."""
    ids = list(parts.tracks) if prompt_id is None else [prompt_id]
    for pid in ids:
        parts.tracks.pop(pid, None)
        parts.anchors.forget(track_anchor(pid))
    if not parts.tracks:
        parts.track_memory = None  # nothing left to remember; a new track starts a new memory
    capturing = parts.capture.capturing if parts.capture is not None else ()
    return [pid for pid in ids if pid in capturing]


def _retold(exc: Exception, message: str) -> Exception:
    """The same kind of error (so it maps to the same wire code), with the tracking context."""
    if isinstance(exc, ProtocolError):
        return ProtocolError(exc.code, message)
    return type(exc)(message)

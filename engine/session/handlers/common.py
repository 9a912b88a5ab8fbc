"""Steps every prompt handler shares: find and load the prompt's frame, answer a spatial request
from a keyframe, and finish (reply, start tracking)."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from engine.core import Prompt, RGBDFrame, StageTimestamps
from engine.errors import EngineError
from engine.pipeline import Answer
from engine.protocol import ResultKind
from engine.session.frames import PendingFrame
from engine.session.keyframes import GiveUp
from engine.session.parts import Outgoing, Reply, SessionParts
from engine.session.prompt_queue import PromptJob
from engine.tracking import TrackState
from models.interfaces import PromptInput


@dataclass(frozen=True, eq=False)
class Loaded:
    """A prompt's frame, decoded, with the first stage timestamps."""

    pending: PendingFrame
    frame: RGBDFrame
    stamps: StageTimestamps


async def begin(parts: SessionParts, job: PromptJob) -> Loaded:
    """Check tracking capacity first (fail before any work), then load the prompt's frame."""
    if job.message.track:
        parts.check_track_capacity(job.prompt_id)
    pending = parts.frame_for(job.prompt, job.frame)
    frame = await parts.load(pending)
    stamps = StageTimestamps(capture=frame.capture_ts or None, receive=job.received, frame_decode=time.time())
    parts.engage()
    return Loaded(pending, frame, stamps)


async def answer_request(
    parts: SessionParts,
    job: PromptJob,
    loaded: Loaded,
    request: PromptInput,
    prompt: Prompt,
    give_up: GiveUp | None = None,
) -> Answer:
    """Masks for a spatial request, from the first keyframe that sees it (engine/session/keyframes.py)."""
    frame = loaded.frame

    async def use(keyframe: object) -> Answer | None:
        stamps = replace(loaded.stamps, encode=time.time())
        return await parts.run(
            parts.pipeline.answer, frame, keyframe, request, prompt.prompt_id, stamps, prompt.want_3d
        )

    return await parts.keyframes.keyframe_for(
        loaded.pending,
        frame,
        use,
        slot=f"{parts.session_id}/prompt-{prompt.prompt_id}",
        give_up=give_up,
        on_wait=job.admit,
    )


def finish(
    parts: SessionParts, job: PromptJob, frame: RGBDFrame, answer: Answer, kind: ResultKind
) -> list[Outgoing]:
    """The reply, and tracking from this answer on when the prompt asked for it."""
    if job.message.track:
        start_tracking(parts, job.prompt, frame, answer)
        answer = parts.anchors.report(track_anchor(job.prompt_id), job.prompt_id, answer)
    return [Reply(answer, kind)]


def start_tracking(parts: SessionParts, prompt: Prompt, frame: RGBDFrame, answer: Answer) -> None:
    parts.check_track_capacity(prompt.prompt_id)
    parts.tracks[prompt.prompt_id] = TrackState.from_answer(prompt.prompt_id, frame, answer, prompt.want_3d)
    parts.tracked_frame_id = frame.frame_id
    parts.anchors.forget(track_anchor(prompt.prompt_id))  # a new object: its anchor starts afresh


def track_anchor(prompt_id: int) -> tuple[str, int]:
    """The world anchor slot of a tracked object (engine/anchor.py)."""
    return ("track", prompt_id)


def with_ref(error: EngineError, ref_id: int) -> EngineError:
    error.ref_id = ref_id
    return error

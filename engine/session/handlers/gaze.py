"""Gaze: samples feed the fixation detector; a dwell selects; answers are held and reused.

A prompt with gaze samples pushes them into the session's detector (engine/dwell.py). In DWELL
mode nothing is answered until a fixation lasts the dwell time; then the selection is at the
fixation's centroid. Gaze-only prompts (a stream of them, one per frame or so) are answered from
the held answer of the previous one when the eye stayed on the same spot (masks moved into the
new frame); once that answer is too old to move, a gaze point still on its mask renews it as the
same object (engine/renewal.py) instead of decoding the point afresh, and so does a speculation
while the fixation stays on it. Each answer of the held object carries its world anchor, fused
over the answers of that object (engine/anchor.py); one decoded afresh starts a new anchor. An
older gaze prompt still waiting for a keyframe is dropped once a newer one is answered: the eye
has moved on.

`GazeSpeculation` is background work: while the user dwells, decode at the open fixation on the
newest frame, so the answer is ready when the dwell completes.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from engine.core import MaskCandidate, Prompt, RGBDFrame, RLEMask, StageTimestamps
from engine.dwell import Speculation
from engine.errors import EngineError, Overloaded
from engine.mapping import FrameMapping, MappingConfig
from engine.pipeline import Answer, prompt_input
from engine.protocol import AnswerMode, ResultKind
from engine.renewal import renew
from engine.scheduler import Keyframe, KeyframeReason
from engine.session.handlers.common import answer_request, begin, finish
from engine.session.parts import Outgoing, SessionParts
from engine.session.prompt_queue import PromptJob
from models.interfaces import PromptInput

GAZE_ANCHOR = "gaze"  # the anchor slot of the held gaze answer (engine/anchor.py)


def gaze_only(prompt: Prompt) -> bool:
    """A prompt of gaze samples alone (no click, box, mask or text): part of a gaze stream."""
    return bool(prompt.gaze) and not (
        prompt.points or prompt.box is not None or prompt.mask is not None or prompt.text
    )


class GazeHandler:
    async def handle(self, job: PromptJob, parts: SessionParts) -> list[Outgoing]:
        prompt = job.prompt
        loaded = await begin(parts, job)
        frame = loaded.frame
        h, w = frame.size
        request = prompt_input(prompt, h, w)  # validates before anything is fed to the detector
        dwell = parts.gaze.push(prompt.gaze, frame.intrinsics).dwell
        if job.message.answer is AnswerMode.DWELL and dwell is None:
            return []  # gaze stream: the samples went to the detector; nothing to answer yet
        kind = ResultKind.ANSWER
        if dwell is not None:  # the selection is at the fixation's centroid, not at these samples
            kind = ResultKind.DWELL
            request = prompt_input(prompt, h, w, (dwell.fixation.x, dwell.fixation.y))
            parts.counters.dwell_selections += 1
        if not gaze_only(prompt):
            answer = await answer_request(parts, job, loaded, request, prompt)
            return finish(parts, job, frame, answer, kind)
        x, y = (float(v) for v in request.point_coords[-1])
        if parts.scheduled:
            fixation_id = dwell.fixation_id if dwell is not None else None
            held = parts.gaze.serve(fixation_id, x, y, frame, time.time(), parts.pipeline.mapping)
            if held is not None:
                reused = await parts.run(
                    from_speculation, held, frame, prompt.prompt_id, loaded.stamps, parts.pipeline.mapping
                )
                if reused is not None:
                    parts.counters.speculative_hits += 1
                    self._answered(parts, job)
                    return finish(parts, job, frame, _anchored(parts, held.object_id, reused), kind)
            gx, gy = parts.gaze.last_gaze or (x, y)  # where the eye is now (a dwell's x, y: its centroid)
            on = parts.gaze.on_object(fixation_id, gx, gy, frame, parts.pipeline.mapping)
            if on is not None:  # still looking at the held object: keep it (engine/renewal.py)
                keyframe = await parts.keyframes.keyframe_for(loaded.pending, frame)
                stamps = replace(loaded.stamps, encode=time.time())
                renewed = await renew_held(
                    parts, on, frame, keyframe, (x, y), prompt.prompt_id, prompt.want_3d, stamps
                )
                if renewed is not None:
                    self._answered(parts, job)
                    return finish(parts, job, frame, _anchored(parts, on.object_id, renewed), kind)
        answer = await answer_request(
            parts, job, loaded, request, prompt, give_up=lambda: _superseded(parts, job)
        )
        if (stale := _superseded(parts, job)) is not None:
            raise stale  # a newer gaze prompt was answered while this one waited: the eye moved on
        # Hold it: the next gaze prompts on the same spot are answered from it.
        held = parts.gaze.store(Speculation(parts.gaze.open_fixation_id, x, y, frame, answer, time.time()))
        self._answered(parts, job)
        return finish(parts, job, frame, _anchored(parts, held.object_id, answer), kind)

    @staticmethod
    def _answered(parts: SessionParts, job: PromptJob) -> None:
        """Older gaze prompts still waiting for a keyframe are stale now; wake them to give up."""
        parts.gaze_answered_at = max(parts.gaze_answered_at, job.received)
        parts.keyframes.wake()


def _anchored(parts: SessionParts, object_id: int | None, answer: Answer) -> Answer:
    """The answer with its held object's world anchor, fused over the gaze answers of that object
    (engine/anchor.py): a reused or renewed answer continues the anchor; one decoded afresh has a
    new object_id and starts it afresh."""
    return parts.anchors.report(GAZE_ANCHOR, object_id, answer)


def _superseded(parts: SessionParts, job: PromptJob) -> EngineError | None:
    if parts.gaze_answered_at <= job.received:
        return None
    parts.counters.prompts_dropped += 1
    return Overloaded(
        "gaze prompt dropped: it waited for a keyframe and a newer gaze prompt was answered first",
        job.prompt_id,
    )


class GazeSpeculation:
    """Background: decode at a fixation before the dwell completes, on the newest frame."""

    def due(self, parts: SessionParts) -> bool:
        return parts.scheduled and parts.gaze.has_wanted()

    async def run(self, parts: SessionParts) -> list[Outgoing]:
        want = parts.gaze.wanted()
        pending = parts.frames.newest()
        if want is None or pending is None:
            return []
        frame = await parts.load(pending)
        h, w = frame.size
        if not (0 <= want.x < w and 0 <= want.y < h):
            return []
        keyframe = parts.keyframes.keyframe
        if keyframe is None:  # ask for one; the speculation runs when it lands
            parts.deferred_speculation = want
            parts.keyframes.request(pending, KeyframeReason.PROMPT)
            return []
        now = time.time()
        stamps = StageTimestamps(capture=frame.capture_ts or None, frame_decode=now, encode=now)
        # Is the eye still on the held object? Asked at the latest gaze point, not at the centroid:
        # while the head turns, the centroid of the fixation's pixels lags behind the eye.
        gx, gy = parts.gaze.last_gaze or (want.x, want.y)
        on = parts.gaze.on_object(want.fixation_id, gx, gy, frame, parts.pipeline.mapping)
        if on is not None:  # the fixation is still on the held object: keep it (engine/renewal.py)
            if await renew_held(
                parts, on, frame, keyframe, (want.x, want.y), -1, True, stamps, want.fixation_id
            ):
                parts.counters.speculative_decodes += 1
                return []
        request = PromptInput(np.array([[want.x, want.y]], np.float32), np.ones(1, np.int32))
        answer = await parts.run(parts.pipeline.answer, frame, keyframe, request, -1, stamps, True)
        if answer is not None:
            parts.counters.speculative_decodes += 1
            parts.gaze.store(Speculation(want.fixation_id, want.x, want.y, frame, answer, time.time()))
        return []


async def renew_held(
    parts: SessionParts,
    held: Speculation,
    frame: RGBDFrame,
    keyframe: Keyframe,
    gaze: tuple[float, float],
    prompt_id: int,
    want_3d: bool,
    stamps: StageTimestamps,
    fixation_id: int | None = None,
) -> Answer | None:
    """Decode the held answer's object again on `frame` and hold the result at `gaze` ((x, y) in
    `frame`'s pixels); None when the renewal lost the object (the caller decodes afresh)."""
    renewal = await parts.run(
        renew,
        parts.pipeline,
        held.answer,
        held.frame,
        held.track,
        frame,
        keyframe,
        prompt_id,
        want_3d,
        stamps,
        parts.config.tracking,
        parts.gaze.config.renew_min_px,
    )
    if renewal is None:
        return None
    if fixation_id is None:
        fixation_id = parts.gaze.open_fixation_id
    x, y = gaze
    parts.gaze.store(
        Speculation(fixation_id, x, y, frame, renewal.answer, time.time(), renewal.state, held.object_id)
    )
    return renewal.answer


def resume_deferred_speculation(parts: SessionParts) -> None:
    """A keyframe landed: the speculation that waited for one is wanted again."""
    if parts.deferred_speculation is not None and parts.keyframes.keyframe is not None:
        parts.gaze.want(parts.deferred_speculation)
        parts.deferred_speculation = None


def from_speculation(
    spec: Speculation, frame: RGBDFrame, prompt_id: int, stamps: StageTimestamps, config: MappingConfig
) -> Answer | None:
    """A held speculative answer, its masks moved to the prompt's frame (worker thread, pure).

    Its decode and lift stamps are those of the speculation, earlier than this prompt's receive.
    """
    result = spec.answer.result
    if spec.frame.frame_id == frame.frame_id:
        masks, mask, method = result.masks, spec.answer.mask, spec.answer.mapping
    else:
        if spec.frame.pose is None or frame.pose is None:
            return None
        mapping = FrameMapping.between(spec.frame, frame, config)
        moved = [mapping.mask(c.mask.decode(), rough=i != result.best) for i, c in enumerate(result.masks)]
        masks = tuple(
            MaskCandidate(RLEMask.encode(m), c.score, c.granularity)
            for m, c in zip(moved, result.masks, strict=True)
        )
        mask, method = moved[result.best], mapping.method
    kept = result.timestamps
    stamps = replace(stamps, encode=kept.encode, decode=kept.decode, lift=kept.lift)
    out = replace(
        result, prompt_id=prompt_id, frame_id=frame.frame_id, masks=masks, pose=frame.pose, timestamps=stamps
    )
    return Answer(out, mask, method, spec.answer.prediction)

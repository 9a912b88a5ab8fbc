"""Segment everything: every object of the keyframe, mapped to the prompt's frame."""

from __future__ import annotations

import time
from dataclasses import replace

from engine.protocol import ResultKind
from engine.session.handlers.common import begin
from engine.session.parts import Outgoing, Reply, SessionParts
from engine.session.prompt_queue import PromptJob


class EverythingHandler:
    """Any keyframe will do: whole masks are mapped, not prompt points."""

    async def handle(self, job: PromptJob, parts: SessionParts) -> list[Outgoing]:
        ask = job.message.everything
        assert ask is not None
        loaded = await begin(parts, job)
        config = replace(parts.config.everything, points_per_side=ask.points_per_side)
        if ask.pred_iou_thresh is not None:
            config = replace(config, pred_iou_thresh=ask.pred_iou_thresh)
        if ask.stability_score_thresh is not None:
            config = replace(config, stability_score_thresh=ask.stability_score_thresh)
        keyframe = await parts.keyframes.keyframe_for(loaded.pending, loaded.frame, on_wait=job.admit)
        answer = await parts.run(
            parts.pipeline.everything,
            loaded.frame,
            keyframe,
            job.prompt_id,
            replace(loaded.stamps, encode=time.time()),
            config,
            job.prompt.want_3d,
        )
        return [Reply(answer, ResultKind.EVERYTHING)]

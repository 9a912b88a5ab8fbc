"""Voice text: candidates ranked by CLIP, gaze and predicted IoU (engine/text_answer.py).

The candidates are the multimask outputs of the prompt's gaze / points / box / mask, or
segment-everything for text alone, unlifted; the ranker picks one and lifts it.
"""

from __future__ import annotations

import time
from dataclasses import replace

from engine.pipeline import prompt_input
from engine.protocol import ResultKind
from engine.session.handlers.common import answer_request, begin, start_tracking
from engine.session.parts import Outgoing, Reply, SessionParts
from engine.session.prompt_queue import PromptJob
from engine.text_answer import require_text_ranker, spatial_part


class TextHandler:
    async def handle(self, job: PromptJob, parts: SessionParts) -> list[Outgoing]:
        prompt = job.prompt
        loaded = await begin(parts, job)
        ranker = require_text_ranker(parts.context.text, prompt)
        spatial = spatial_part(prompt)
        request = None
        if spatial.is_empty():
            keyframe = await parts.keyframes.keyframe_for(loaded.pending, loaded.frame, on_wait=job.admit)
            stamps = replace(loaded.stamps, encode=time.time())
            answer = await parts.run(
                parts.pipeline.everything, loaded.frame, keyframe, prompt.prompt_id, stamps
            )
        else:
            request = prompt_input(spatial, *loaded.frame.size)
            answer = await answer_request(parts, job, loaded, request, replace(spatial, want_3d=False))
        answer = await parts.run(ranker.rank, parts.pipeline, answer, loaded.frame, prompt, request)
        if job.message.track:
            start_tracking(parts, prompt, loaded.frame, answer)
        return [Reply(answer, ResultKind.ANSWER)]

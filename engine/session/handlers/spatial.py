"""Point, box and mask prompts (clicks, drags, rough masks): decode from the keyframe that sees them."""

from __future__ import annotations

from engine.pipeline import prompt_input
from engine.protocol import ResultKind
from engine.session.handlers.common import answer_request, begin, finish
from engine.session.parts import Outgoing, SessionParts
from engine.session.prompt_queue import PromptJob


class SpatialHandler:
    """(prompt, keyframe) -> masks, via the stateless Pipeline."""

    async def handle(self, job: PromptJob, parts: SessionParts) -> list[Outgoing]:
        loaded = await begin(parts, job)
        request = prompt_input(job.prompt, *loaded.frame.size)
        answer = await answer_request(parts, job, loaded, request, job.prompt)
        return finish(parts, job, loaded.frame, answer, ResultKind.ANSWER)

"""Prompts waiting for a slot: bounded, oldest dropped first.

Why bounded and oldest-first: a user who keeps clicking or gazing faster than the engine answers
wants the newest answer; an unbounded queue would turn a burst into seconds of stale answers and
unbounded memory. Control messages (cancel, ping, bye) never enter this queue: the session
handles them as they arrive, so they overtake every prompt waiting here.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from engine.core import Prompt
from engine.protocol import PromptMessage
from engine.session.frames import PendingFrame


@dataclass(frozen=True, eq=False)
class PromptJob:
    """A prompt message, when it arrived (time.time(), the clock of the stage timestamps) and its
    frame: held by the job, so a prompt that waits while newer frames push its frame out of the
    window is still answered on the frame it was given on.

    `admitted` completes when the job's handler starts waiting for a keyframe (or finishes):
    the session starts the next prompt only then, so prompts are prepared in arrival order (gaze
    samples reach the fixation detector in order) and only their waits overlap.
    """

    message: PromptMessage
    received: float
    frame: PendingFrame | None = None  # the prompt's frame, held from arrival on (None: not seen yet)
    admitted: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def admit(self) -> None:
        if not self.admitted.done():
            self.admitted.set_result(None)

    @property
    def prompt(self) -> Prompt:
        return self.message.prompt

    @property
    def prompt_id(self) -> int:
        return self.message.prompt.prompt_id


class PromptQueue:
    """FIFO of at most `capacity` jobs. Event-loop only."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"prompt queue capacity must be >= 1, got {capacity}")
        self._capacity = capacity
        self._jobs: deque[PromptJob] = deque()
        self.received = 0
        self.dropped = 0

    def push(self, job: PromptJob) -> PromptJob | None:
        """Queue a job; returns the job dropped to make room (the oldest), if any."""
        self.received += 1
        dropped = None
        if len(self._jobs) >= self._capacity:
            dropped = self._jobs.popleft()
            self.dropped += 1
        self._jobs.append(job)
        return dropped

    def pop(self) -> PromptJob:
        return self._jobs.popleft()

    def keep_newest(self) -> int:
        """Drop every job but the newest; returns how many were dropped (the caller counts why)."""
        dropped = max(len(self._jobs) - 1, 0)
        while len(self._jobs) > 1:
            self._jobs.popleft()
        return dropped

    def clear(self) -> None:
        self._jobs.clear()

    def __len__(self) -> int:
        return len(self._jobs)

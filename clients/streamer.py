"""Stream an RGB-D sequence to the engine at a fixed rate, prompting with scripted gaze.

Frames are stamped with the time they are sent (a live camera's capture time), so the engine's
per-stage timestamps measure real end-to-end latency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from clients.gaze_script import GazeScript
from clients.replies import EngineError, TimedResult
from clients.session import ClientSession
from engine.core import PointPrompt, Prompt, RGBDFrame
from engine.protocol import DepthCodec, ImageCodec, SessionStats


class PromptMode(StrEnum):
    GAZE = "gaze"  # the scripted gaze sample, as a gaze prompt
    CLICK = "click"  # a click (positive point) where the script looks


@dataclass(frozen=True)
class StreamPlan:
    """fps: frame rate to send at; prompt_every: prompt on every n-th frame, as gaze or click."""

    fps: float = 15.0
    prompt_every: int = 3
    mode: PromptMode = PromptMode.GAZE
    rgb_codec: ImageCodec = ImageCodec.JPEG
    depth_codec: DepthCodec = DepthCodec.PNG16
    result_timeout_s: float = 30.0


@dataclass
class StreamReport:
    frames_sent: int = 0
    prompts_sent: int = 0
    results: list[TimedResult] = field(default_factory=list)
    errors: list[EngineError] = field(default_factory=list)
    stats: SessionStats | None = None
    wall_s: float = 0.0


async def stream_sequence(
    client: ClientSession,
    frames: Sequence[RGBDFrame],
    script: GazeScript,
    plan: StreamPlan = StreamPlan(),
    on_result: Callable[[int, TimedResult], None] | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> StreamReport:
    """Send every frame at plan.fps, prompt on gaze, and wait for every answer at the end.

    on_result(frame_index, result) runs as results arrive; on_frame(index) after each send.
    """
    report = StreamReport()
    pending: list[tuple[int, asyncio.Future[TimedResult]]] = []
    period = 1.0 / plan.fps
    start = time.perf_counter()
    for index, recorded in enumerate(frames):
        delay = start + index * period - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing a live camera, not waiting for a condition
        now = time.time()
        frame = replace(recorded, capture_ts=now)
        await client.send_frame(frame, plan.rgb_codec, plan.depth_codec)
        report.frames_sent += 1
        if index % plan.prompt_every == 0 and (sample := script.gaze(index, frame, now)) is not None:
            if plan.mode == PromptMode.GAZE:
                prompt = Prompt(prompt_id=index, frame_id=frame.frame_id, gaze=(sample,))
            else:
                prompt = Prompt(prompt_id=index, frame_id=frame.frame_id, points=(PointPrompt(sample.x, sample.y),))
            future = client.prompt_nowait(prompt)
            if on_result is not None:
                future.add_done_callback(lambda f, i=index: f.exception() is None and on_result(i, f.result()))
            pending.append((index, future))
            report.prompts_sent += 1
        if on_frame is not None:
            on_frame(index)
    for _, future in pending:
        try:
            report.results.append(await asyncio.wait_for(future, plan.result_timeout_s))
        except EngineError as exc:
            report.errors.append(exc)
    report.stats = await client.stats()
    report.wall_s = time.perf_counter() - start
    return report

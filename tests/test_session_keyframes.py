"""The keyframe source on its own: one await for every wait, over a real engine encoder."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from engine.config import EngineConfig
from engine.scheduler import KeyframeConfig, KeyframeEncoder, KeyframePolicy
from engine.session.context import Counters, SessionContext
from engine.session.frames import FrameWindow, PendingFrame
from engine.session.keyframes import OnPathKeyframes, ScheduledKeyframes, keyframe_source
from engine.session.parts import SerialRunner
from models.registry import ModelSpec, build_model
from tests.conftest import block_frame


def _build(policy: KeyframePolicy):  # type: ignore[no-untyped-def]
    model = build_model(ModelSpec("geometric"))
    config = EngineConfig(port=0, keyframes=KeyframeConfig(policy=policy))
    pool = ThreadPoolExecutor(1)
    encoder = KeyframeEncoder(model, ThreadPoolExecutor(1), config.keyframes)
    context = SessionContext(model, pool, config, encoder)
    frames, counters = FrameWindow(4), Counters()
    source = keyframe_source("s", context, frames, counters, SerialRunner(pool), lambda: True, lambda: None)
    return encoder, frames, counters, source


async def test_scheduled_source_waits_once_then_reuses() -> None:
    encoder, frames, counters, source = _build(KeyframePolicy.SCHEDULED)
    assert isinstance(source, ScheduledKeyframes)
    encoder.start()
    try:
        frame, _ = block_frame(1)
        pending = PendingFrame.from_frame(frame, 0.0)
        frames.offer(pending)
        waited: list[int] = []

        async def use(keyframe):  # type: ignore[no-untyped-def]
            return keyframe.frame_id

        assert await source.keyframe_for(pending, frame, use, on_wait=lambda: waited.append(1)) == 1
        assert waited == [1] and counters.prompts_waited_for_encode == 1 and counters.keyframes_encoded == 1
        assert await source.keyframe_for(pending, frame, use, on_wait=lambda: waited.append(2)) == 1
        assert waited == [1]  # the second prompt was answered from the keyframe without waiting

        async def unseen(keyframe):  # type: ignore[no-untyped-def]
            return None if keyframe.frame_id == 1 else keyframe.frame_id

        later, _ = block_frame(2)
        newer = PendingFrame.from_frame(later, 0.0)
        frames.offer(newer)
        assert await source.keyframe_for(newer, later, unseen, slot="s/prompt-9") == 2
    finally:
        await encoder.stop()


async def test_on_path_source_encodes_each_new_frame_on_the_prompt_path() -> None:
    _, frames, counters, source = _build(KeyframePolicy.EVERY_FRAME)
    assert isinstance(source, OnPathKeyframes)
    for frame_id in (1, 1, 2):
        frame, _ = block_frame(frame_id)
        keyframe = await source.keyframe_for(PendingFrame.from_frame(frame, 0.0), frame)
        assert keyframe.frame_id == frame_id
    assert counters.keyframes_encoded == 2  # frame 1's keyframe served its second prompt

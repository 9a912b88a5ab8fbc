"""bench.streaming's baseline keyframe sources behave as their docstrings say (real encoder, real model)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

import engine.session.keyframes as keyframes
from bench.keyframe_baselines import (
    BenchPolicy,
    LatestEmbeddingKeyframes,
    NewestOnPathKeyframes,
    install,
)
from engine.config import EngineConfig
from engine.errors import Overloaded
from engine.scheduler import KeyframeConfig, KeyframeEncoder, KeyframePolicy
from engine.session.context import Counters, SessionContext
from engine.session.frames import FrameWindow, PendingFrame
from engine.session.parts import SerialRunner
from models.registry import ModelSpec, build_model
from tests.conftest import block_frame


def _source(policy: BenchPolicy, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(keyframes, "keyframe_source", keyframes.keyframe_source)  # undone after the test
    install(policy)
    engine_policy = KeyframePolicy.EVERY_FRAME if policy is BenchPolicy.NEWEST else KeyframePolicy.SCHEDULED
    model = build_model(ModelSpec("geometric"))
    config = EngineConfig(port=0, keyframes=KeyframeConfig(policy=engine_policy))
    pool = ThreadPoolExecutor(1)
    encoder = KeyframeEncoder(model, ThreadPoolExecutor(1), config.keyframes)
    context = SessionContext(model, pool, config, encoder if policy is BenchPolicy.LATEST else None)
    frames, counters = FrameWindow(4), Counters()
    source = keyframes.keyframe_source(
        "s", context, frames, counters, SerialRunner(pool), lambda: True, lambda: None
    )
    return encoder, frames, counters, source


async def test_newest_drops_a_prompt_whose_frame_is_no_longer_the_newest(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, frames, counters, source = _source(BenchPolicy.NEWEST, monkeypatch)
    assert isinstance(source, NewestOnPathKeyframes)
    first, _ = block_frame(1)
    frames.offer(PendingFrame.from_frame(first, 0.0))
    assert (await source.keyframe_for(PendingFrame.from_frame(first, 0.0), first)).frame_id == 1
    second, _ = block_frame(2)
    third, _ = block_frame(3)
    frames.offer(PendingFrame.from_frame(second, 0.0))
    frames.offer(PendingFrame.from_frame(third, 0.0))
    with pytest.raises(Overloaded):
        await source.keyframe_for(PendingFrame.from_frame(second, 0.0), second)
    assert (await source.keyframe_for(PendingFrame.from_frame(third, 0.0), third)).frame_id == 3
    assert counters.prompts_dropped == 1 and counters.keyframes_encoded == 2


async def test_latest_answers_from_the_old_embedding_as_if_it_were_the_prompts_frame(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    encoder, frames, counters, source = _source(BenchPolicy.LATEST, monkeypatch)
    assert isinstance(source, LatestEmbeddingKeyframes) and source.scheduled
    encoder.start()
    try:
        first, _ = block_frame(1)
        pending = PendingFrame.from_frame(first, 0.0)
        frames.offer(pending)
        seen = []

        async def use(keyframe):  # type: ignore[no-untyped-def]
            seen.append((keyframe.frame_id, keyframe.embedding))
            return keyframe.frame_id

        assert await source.keyframe_for(pending, first, use) == 1
        embedding = seen[-1][1]
        encoder_frames = encoder.stats.frames
        later, _ = block_frame(2)
        newer = PendingFrame.from_frame(later, 0.0)
        frames.offer(newer)
        source_keyframe = source.keyframe
        # Answered at once from frame 1's embedding, presented as frame 2 (no mapping, no waiting).
        assert await source.keyframe_for(newer, later, use) == 2
        assert seen[-1][1] is embedding and source_keyframe is not None and source_keyframe.frame_id == 1
        assert counters.prompts_waited_for_encode == 1
        await encoder.wait_idle()  # the newest frame was asked for in the background
        assert encoder.stats.frames == encoder_frames + 1
    finally:
        await encoder.stop()

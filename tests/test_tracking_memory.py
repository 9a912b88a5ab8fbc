"""Tracking through a model's video memory (SAM 2.1's, on a tiny random-weights SAM 2 video model).

The session must hand each tracked object to the model's `VideoTracker` (joined on the frame its
selection was answered on, with that mask as the memory's prompt), step it on every new frame, and
return exactly what the tracker predicts (cleaning off here, so the masks are comparable); cancel
forgets the memory, and `video_memory=False` keeps the keyframe tracker.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from clients.sources.synthetic import (
    DepthDegradation,
    default_intrinsics,
    make_scene,
    orbit_poses,
    render_sequence,
)
from engine.config import EngineConfig
from engine.core import PointPrompt, Prompt
from engine.masks.metrics import mask_iou
from engine.protocol import PromptMessage, ResultKind
from engine.scheduler import KeyframeConfig
from engine.server import Engine
from engine.tracking import TrackingConfig, interior_point
from models.geometric import build_geometric
from models.interfaces import ImageInput, PromptInput
from models.sam2.video import Sam2VideoTracker, video_processor
from tests.session_inbox import offer, open_session
from tests.test_models_sam2_video import S, tiny_video_net

K = default_intrinsics(320, 240, 262.5, 262.5)


@pytest.fixture(scope="module")
def frames():
    scene = make_scene(3)
    synth = render_sequence(scene, orbit_poses(scene, 100)[:7], K, DepthDegradation(), seed=4)
    target = max(scene.object_ids, key=lambda o: synth[0].visible_mask(o).sum())
    return synth, target


@pytest.fixture(scope="module")
def tracker() -> Sam2VideoTracker:
    net = tiny_video_net(5)
    # Random weights call every object absent (empty masks); a confident object-score head makes
    # the tracked masks depend on the memory, so a wrongly wired memory shows in them.
    with torch.no_grad():
        net.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(4.0)
    return Sam2VideoTracker("sam2-tiny-video", net, video_processor(None, S))


def _select(synth, target: int, prompt_id: int) -> Prompt:
    x, y = interior_point(synth.visible_mask(target) & (synth.frame.depth_m > 0))
    return Prompt(prompt_id, synth.frame.frame_id, points=(PointPrompt(x, y),))


def _engine(tracker: Sam2VideoTracker, keyframes: KeyframeConfig | None = None, **tracking) -> Engine:
    model = replace(build_geometric(), tracker=tracker)
    config = EngineConfig(port=0, clean_masks=False, tracking=TrackingConfig(**tracking))
    return Engine(replace(config, keyframes=keyframes or config.keyframes), model)


async def test_tracking_follows_the_video_memory_and_cancel_forgets_it(tracker, frames) -> None:
    synth, target = frames
    async with _engine(tracker) as engine:
        session, inbox = open_session(engine)
        offer(session, synth[0].frame)
        session.submit(PromptMessage(_select(synth[0], target, 7), track=True))
        first = await inbox.result(7, ResultKind.ANSWER)
        selected = first.result.masks[first.result.best].mask.decode()
        tracked = []
        for s in synth[1:5]:  # one frame at a time: each is stepped (none skipped as older)
            offer(session, s.frame)
            tracked.append(await inbox.result(7, ResultKind.TRACK, frame_id=s.frame.frame_id))
        await session.idle()
        session.cancel_tracking(7)
        offer(session, synth[5].frame)
        await session.idle()
        after_cancel = inbox.results(ResultKind.TRACK)
        # a new selection starts a new memory
        session.submit(PromptMessage(_select(synth[5], target, 8), track=True))
        await inbox.result(8, ResultKind.ANSWER)
        offer(session, synth[6].frame)
        again = await inbox.result(8, ResultKind.TRACK, frame_id=synth[6].frame.frame_id)
        stats = session.stats

    # the same stream driven through the tracker directly
    state = tracker.start(TrackingConfig().memory_frames)
    tracker.add_object(state, ImageInput(synth[0].frame.rgb), 7, PromptInput(mask=selected, multimask=False))
    for s, msg in zip(synth[1:5], tracked, strict=True):
        want = tracker.track(state, ImageInput(s.frame.rgb))[7]
        (candidate,) = msg.result.masks
        assert candidate.granularity == "memory" and msg.result.keyframe_id == s.frame.frame_id
        assert want.masks[0].any() and np.array_equal(candidate.mask.decode(), want.masks[0])
        assert candidate.score == pytest.approx(float(want.scores[0]), abs=1e-6)
        assert msg.result.segment is None or msg.result.segment.frame in ("world", "camera")
    assert len(after_cancel) == 4  # nothing tracked on the frame after the cancel
    assert again.result.masks[0].granularity == "memory"
    assert stats.track_results == 5 and stats.errors_sent == 0


async def test_video_memory_off_keeps_the_keyframe_tracker(tracker, frames) -> None:
    synth, target = frames
    async with _engine(tracker, video_memory=False) as engine:
        session, inbox = open_session(engine)
        offer(session, synth[0].frame)
        session.submit(PromptMessage(_select(synth[0], target, 3), track=True))
        await inbox.result(3, ResultKind.ANSWER)
        offer(session, synth[1].frame)
        msg = await inbox.result(3, ResultKind.TRACK, frame_id=synth[1].frame.frame_id)
    assert msg.result.masks[0].granularity != "memory"
    assert mask_iou(msg.result.masks[0].mask.decode(), synth[1].visible_mask(target)) > 0.7


@pytest.mark.parametrize("video_memory", [True, False])
async def test_tracking_through_the_video_memory_asks_for_no_background_keyframes(
    tracker, frames, video_memory: bool
) -> None:
    """The video memory encodes every frame itself: background keyframe refreshes while tracking
    would encode each frame twice. The keyframe tracker does need them as the camera moves."""
    synth, target = frames
    moving = KeyframeConfig(
        engaged_s=1e-3, max_translation_m=0.001, max_rotation_deg=0.1, background_duty=1.0
    )
    async with _engine(tracker, moving, video_memory=video_memory) as engine:
        session, inbox = open_session(engine)
        offer(session, synth[0].frame)
        session.submit(PromptMessage(_select(synth[0], target, 5), track=True))
        await inbox.result(5, ResultKind.ANSWER)
        for s in synth[1:5]:
            offer(session, s.frame)
            await inbox.result(5, ResultKind.TRACK, frame_id=s.frame.frame_id)
        await session.idle()
        stats = session.stats
    if video_memory:
        assert stats.keyframes_encoded == 1  # the selection's own
    else:
        assert stats.keyframes_encoded > 1

"""Tracking a selected object through a moving-camera sequence with the geometric default model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from clients.sources.synthetic import (
    DepthDegradation,
    default_intrinsics,
    make_scene,
    orbit_poses,
    render_sequence,
)
from clients.ws_client import XrsegClient
from engine.config import EngineConfig
from engine.core import BoxPrompt, PointPrompt, Prompt
from engine.protocol import ErrorCode, ImageCodec, PromptMessage, ResultKind
from engine.server import Engine
from engine.tracking import TrackingConfig, interior_point, mask_iou
from tests.conftest import TOKEN, LiveEngine
from tests.session_inbox import offer, open_session

K = default_intrinsics(320, 240, 262.5, 262.5)


def _select(synth, object_id: int, prompt_id: int) -> Prompt:
    """What a user does to pick an object: a box around it and a click inside."""
    visible = synth.visible_mask(object_id)
    ys, xs = np.nonzero(visible)
    x, y = interior_point(visible & (synth.frame.depth_m > 0))
    box = BoxPrompt(float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
    return Prompt(prompt_id, synth.frame.frame_id, points=(PointPrompt(x, y),), box=box)


async def test_tracked_object_keeps_its_mask_through_100_frames() -> None:
    """A 60 deg orbit in 100 frames (0.6 deg, ~2 cm per frame) with Kinect-like depth noise; the
    object is the largest in the first view (a box: its faces turn away and new ones appear)."""
    scene = make_scene(5)
    frames = render_sequence(scene, orbit_poses(scene, 100), K, DepthDegradation(), seed=5)
    target = max(scene.object_ids, key=lambda o: frames[0].visible_mask(o).sum())
    async with Engine(EngineConfig(port=0)) as engine:
        session, inbox = open_session(engine)
        offer(session, frames[0].frame)
        session.submit(PromptMessage(_select(frames[0], target, 7), track=True))
        first = await inbox.result(7, ResultKind.ANSWER)
        ious = [mask_iou(first.result.masks[first.result.best].mask.decode(), frames[0].visible_mask(target))]
        centroids = []
        for synth in frames[1:]:
            offer(session, synth.frame)
            msg = await inbox.result(7, ResultKind.TRACK, frame_id=synth.frame.frame_id)
            await engine.encoder.wait_idle()  # a background keyframe requested for this frame lands first
            r = msg.result
            assert r.prompt_id == 7 and len(r.masks) == 1 and r.keyframe_id <= r.frame_id
            assert msg.mapping in ("identity", "reprojection")
            ious.append(mask_iou(r.masks[0].mask.decode(), synth.visible_mask(target)))
            if r.segment is not None and r.segment.status == "ok":
                centroids.append(r.segment.centroid)
        stats = session.stats
    ious = np.asarray(ious)
    assert ious.mean() >= 0.8, f"mean IoU {ious.mean():.3f}, min {ious.min():.3f}"
    assert stats.track_results == 99 and stats.errors_sent == 0
    # keyframes follow the motion, not the frame rate
    assert 5 <= stats.keyframes_encoded <= 40, stats.keyframes_encoded
    # the 3D segment stays on the object (world-anchored)
    obj = scene.objects[target]
    lo, hi = obj.vertices.min(0) - 0.03, obj.vertices.max(0) + 0.03
    inside = [bool(np.all((c >= lo) & (c <= hi))) for c in centroids]
    assert len(centroids) >= 90 and np.mean(inside) > 0.95


async def test_tracking_over_websocket_streams_every_frame_and_stops_on_cancel(
    live_engine: LiveEngine,
) -> None:
    scene = make_scene(3)
    frames = render_sequence(scene, orbit_poses(scene, 100)[:12], K, DepthDegradation(), seed=2)
    target = max(scene.object_ids, key=lambda o: frames[0].visible_mask(o).sum())
    async with XrsegClient.connect(live_engine.url, TOKEN) as client:
        await client.send_frame(frames[0].frame, ImageCodec.PNG)
        first = await client.prompt_nowait(_select(frames[0], target, 3), track=True)
        assert first.kind is ResultKind.ANSWER and first.result.frame_id == 0
        for synth in frames[1:9]:
            await client.send_frame(synth.frame, ImageCodec.PNG)
            update = await client.next_result()
            assert update.kind is ResultKind.TRACK and update.result.prompt_id == 3
            assert update.result.frame_id == synth.frame.frame_id  # the mask is in the new frame's pixels
            assert mask_iou(update.result.masks[0].mask.decode(), synth.visible_mask(target)) > 0.7
            assert update.result.segment is not None and update.result.segment.status == "ok"
        await client.cancel(3)
        assert (await client.stats()).track_results == 8
        for synth in frames[9:]:
            await client.send_frame(synth.frame, ImageCodec.PNG)
        answer = await client.prompt(
            Prompt(4, 11, points=(PointPrompt(*interior_point(frames[11].visible_mask(target))),))
        )
        stats = await client.stats()
    assert answer.frame_id == 11
    assert stats.track_results == 8 and stats.prompts_answered == 2  # nothing tracked after the cancel


async def test_tracked_objects_are_bounded() -> None:
    scene = make_scene(3)
    (synth,) = render_sequence(scene, orbit_poses(scene, 1), K, DepthDegradation(), seed=2)
    a, b = sorted(scene.object_ids, key=lambda o: -synth.visible_mask(o).sum())[:2]
    async with Engine(EngineConfig(port=0, tracking=TrackingConfig(max_objects=1))) as engine:
        session, inbox = open_session(engine)
        offer(session, synth.frame)
        session.submit(PromptMessage(_select(synth, a, 1), track=True))
        session.submit(PromptMessage(_select(synth, b, 2), track=True))
        await inbox.result(1)
        error = await inbox.wait_for(lambda m: getattr(m, "ref_id", None) == 2)
        assert error.code == ErrorCode.OVERLOADED and "cancel" in error.message
        assert session.tracked == (1,)
        session.cancel_tracking(1)
        session.submit(PromptMessage(replace(_select(synth, b, 5), prompt_id=5), track=True))
        await inbox.result(5)
        assert session.tracked == (5,)

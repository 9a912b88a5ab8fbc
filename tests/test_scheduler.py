"""Keyframe scheduling with the real geometric model: reuse, background refresh, newest wins, batching."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import numpy as np
import pytest

from clients.sources.synthetic import (
    DepthDegradation,
    default_intrinsics,
    make_scene,
    orbit_poses,
    render_sequence,
)
from engine.config import EngineConfig
from engine.core import Pose, Prompt
from engine.mapping import MappingMethod
from engine.protocol import ResultKind
from engine.scheduler import (
    KeyframeConfig,
    KeyframePolicy,
    KeyframeReason,
    KeyframeRef,
    camera_motion,
    keyframe_reason,
)
from engine.server import Engine
from engine.tracking import interior_point, mask_iou
from tests.session_inbox import offer, open_session

K = default_intrinsics(320, 240, 262.5, 262.5)


@pytest.fixture(scope="module")
def orbit():
    """40 frames of a 100-frame orbit (0.6 deg and ~2 cm per frame) with Kinect-like depth noise."""
    scene = make_scene(3)
    frames = render_sequence(scene, orbit_poses(scene, 100)[:40], K, DepthDegradation(), seed=5)
    target = max(scene.object_ids, key=lambda o: frames[0].visible_mask(o).sum())
    return scene, frames, target


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with Engine(EngineConfig(port=0)) as eng:
        yield eng


def _gaze_prompt(pid: int, synth, target: int) -> Prompt:
    from engine.core import PointPrompt

    x, y = interior_point(synth.visible_mask(target) & (synth.frame.depth_m > 0))
    return Prompt(pid, synth.frame.frame_id, points=(PointPrompt(x, y),))


def test_keyframe_reasons():
    cfg = KeyframeConfig(max_translation_m=0.1, max_rotation_deg=8.0, max_age_s=3.0, max_image_change=12.0)
    assert keyframe_reason(cfg, None, None, 0.0) is KeyframeReason.PROMPT
    base = KeyframeRef(Pose.identity(), np.full((24, 32), 100, np.uint8), 100.0)
    near = np.eye(4)
    near[:3, 3] = [0.05, 0, 0]
    assert keyframe_reason(cfg, base, Pose(near), 101.0) is None
    far = near.copy()
    far[:3, 3] = [0.12, 0, 0]
    assert keyframe_reason(cfg, base, Pose(far), 101.0) is KeyframeReason.CAMERA_MOVED
    c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
    turned = np.array([[c, 0, s, 0], [0, 1, 0, 0], [-s, 0, c, 0], [0, 0, 0, 1]])
    assert camera_motion(Pose.identity(), Pose(turned))[1] == pytest.approx(10.0)
    assert keyframe_reason(cfg, base, Pose(turned), 101.0) is KeyframeReason.CAMERA_MOVED
    assert keyframe_reason(cfg, base, Pose(near), 104.0) is KeyframeReason.AGED
    # no pose: the image decides
    no_pose = replace(base, pose=None)
    assert keyframe_reason(cfg, no_pose, None, 101.0, np.full((24, 32), 105, np.uint8)) is None
    assert (
        keyframe_reason(cfg, no_pose, None, 101.0, np.full((24, 32), 130, np.uint8))
        is KeyframeReason.SCENE_CHANGED
    )
    with pytest.raises(ValueError):
        KeyframeConfig(max_rotation_deg=0.0)


async def test_prompts_reuse_the_keyframe_and_refresh_happens_in_the_background(
    engine: Engine, orbit
) -> None:
    scene, frames, target = orbit
    session, inbox = open_session(engine)
    offer(session, frames[0].frame)
    session.submit(_gaze_prompt(0, frames[0], target))
    first = await inbox.result(0)
    assert first.result.keyframe_id == 0 and first.mapping == "identity"
    assert session.stats.prompts_waited_for_encode == 1
    # Frames 1..12 move the camera ~7 deg / 25 cm along the orbit; prompts on them are answered at once.
    answered = []
    for i in range(1, 13):
        offer(session, frames[i].frame)
        session.submit(_gaze_prompt(i, frames[i], target))
        answered.append(await inbox.result(i))
    for msg in answered:
        r = msg.result
        assert r.frame_id > 0 and r.keyframe_id <= r.frame_id
        truth = frames[r.frame_id].visible_mask(target)
        assert mask_iou(r.masks[r.best].mask.decode(), truth) > 0.6  # masks are in the prompt frame's pixels
    reused = [m for m in answered if m.result.keyframe_id < m.result.frame_id]
    assert len(reused) >= 6 and all(m.mapping == MappingMethod.REPROJECTION for m in reused)
    assert session.stats.prompts_waited_for_encode == 1  # never again: a usable embedding existed
    # the camera moved past the threshold: the engine refreshed the keyframe without being asked
    await engine.encoder.wait_idle()
    assert session.stats.keyframes_encoded >= 2 and session.keyframe.frame_id > 0
    assert session.keyframe.reason in (KeyframeReason.CAMERA_MOVED, KeyframeReason.AGED)
    moved = max(camera_motion(frames[0].frame.pose, frames[i].frame.pose)[0] for i in range(13))
    assert moved > engine.config.keyframes.max_translation_m
    # timestamps of a reused keyframe: no encode on the prompt's path
    ts = reused[0].result.timestamps
    assert ts.encode - ts.frame_decode < 0.01 and ts.receive <= ts.frame_decode <= ts.decode <= ts.send


async def test_idle_sessions_cost_no_encoder_time(orbit) -> None:
    _, frames, target = orbit
    config = EngineConfig(port=0, keyframes=KeyframeConfig(engaged_s=0.001))  # engaged 1 ms after a prompt
    async with Engine(config) as engine:
        session, inbox = open_session(engine)
        offer(session, frames[0].frame)
        session.submit(_gaze_prompt(0, frames[0], target))
        await inbox.result(0)  # an encode and a decode later, the session is no longer engaged
        for synth in frames[1:30]:
            offer(session, synth.frame)  # the camera moves far, nobody asks anything
        await engine.encoder.wait_idle()
        assert session.stats.keyframes_encoded == 1 and engine.encoder.stats.frames == 1


async def test_encodes_of_two_sessions_arriving_together_are_one_batch(engine: Engine, orbit) -> None:
    _, frames, target = orbit
    (a, inbox_a), (b, inbox_b) = open_session(engine, "a"), open_session(engine, "b")
    offer(a, frames[0].frame)
    offer(b, frames[5].frame)
    a.submit(_gaze_prompt(1, frames[0], target))
    b.submit(_gaze_prompt(2, frames[5], target))
    ra, rb = await inbox_a.result(1), await inbox_b.result(2)
    assert ra.result.keyframe_id == 0 and rb.result.keyframe_id == 5
    stats = engine.encoder.stats
    assert stats.batch_sizes == {2: 1} and stats.frames == 2 and stats.batches == 1


async def test_newest_frame_wins_the_encoder(engine: Engine, orbit) -> None:
    _, frames, target = orbit
    encoder = engine.encoder
    loads = []

    def loader(i):
        def load():
            loads.append(i)
            return frames[i].frame

        return load

    futures = [encoder.request("owner", loader(i), i, KeyframeReason.CAMERA_MOVED) for i in (1, 2, 3)]
    assert futures[0] is futures[1] is futures[2]  # one waiting slot per owner
    keyframe = await futures[0]
    assert keyframe.frame_id == 3 and loads == [3]  # the older frames were never even decoded
    assert encoder.stats.superseded == 2 and encoder.stats.frames == 1


async def test_without_pose_the_image_decides_whether_the_keyframe_is_usable(engine: Engine, orbit) -> None:
    _, frames, target = orbit
    session, inbox = open_session(engine)
    still = replace(frames[0].frame, pose=None)
    offer(session, still)
    session.submit(_gaze_prompt(0, frames[0], target))
    await inbox.result(0)
    # a nearby view (one frame of orbit): answered from the keyframe, mapped by a 2D shift
    near = replace(frames[1].frame, pose=None)
    offer(session, near)
    session.submit(_gaze_prompt(1, frames[1], target))
    r1 = await inbox.result(1)
    assert r1.result.keyframe_id == 0 and r1.result.frame_id == 1 and r1.mapping == MappingMethod.SHIFT
    assert mask_iou(r1.result.masks[r1.result.best].mask.decode(), frames[1].visible_mask(target)) > 0.6
    assert session.stats.prompts_waited_for_encode == 1
    # a view 23 deg further along: the old embedding is not used, the prompt waits for its own keyframe
    far = replace(frames[39].frame, pose=None)
    offer(session, far)
    session.submit(_gaze_prompt(2, frames[39], target))
    r2 = await inbox.result(2)
    assert r2.result.keyframe_id == 39 and r2.mapping == "identity"
    assert session.stats.prompts_waited_for_encode == 2


async def test_every_frame_policy_encodes_on_the_prompt_path(orbit) -> None:
    _, frames, target = orbit
    config = EngineConfig(port=0, keyframes=KeyframeConfig(policy=KeyframePolicy.EVERY_FRAME))
    async with Engine(config) as engine:
        session, inbox = open_session(engine)
        for i in range(4):
            offer(session, frames[i].frame)
            session.submit(_gaze_prompt(i, frames[i], target))
            msg = await inbox.result(i)
            assert msg.result.keyframe_id == i and msg.kind is ResultKind.ANSWER and msg.mapping == "identity"
        assert session.stats.keyframes_encoded == 4 and engine.encoder.stats.frames == 0


async def test_background_refreshes_leave_the_machine_to_prompts(orbit) -> None:
    _, frames, _ = orbit
    config = EngineConfig(port=0, keyframes=KeyframeConfig(background_duty=0.1))
    async with Engine(config) as engine:
        encoder = engine.encoder
        first = await encoder.request("a", lambda: frames[1].frame, 1, KeyframeReason.CAMERA_MOVED)
        took = encoder.stats.busy_s
        second = await encoder.request("a", lambda: frames[2].frame, 2, KeyframeReason.CAMERA_MOVED)
        assert second.ready - first.ready >= 9 * took * 0.99  # duty 0.1: 9x the encode time in between
        background = encoder.request("b", lambda: frames[3].frame, 3, KeyframeReason.AGED)
        prompt = encoder.request("c", lambda: frames[4].frame, 4, KeyframeReason.PROMPT)
        done, _ = await asyncio.wait({background, prompt}, return_when=asyncio.FIRST_COMPLETED)
        assert done == {prompt}  # a prompt's encode does not wait out the pause
        assert (await background).ready >= (await prompt).ready


async def test_a_prompt_waiting_for_an_encode_does_not_hold_up_the_next(engine: Engine, orbit) -> None:
    """Prompt A points at something keyframe 0 cannot see (it waits for an encode of its frame);
    prompt B, queued right behind it, is answered from keyframe 0 meanwhile."""
    from engine.core import PointPrompt
    from engine.mapping import FrameMapping

    _, frames, target = orbit
    session, inbox = open_session(engine)
    offer(session, frames[0].frame)
    session.submit(_gaze_prompt(0, frames[0], target))
    await inbox.result(0)
    late = frames[39].frame
    to_first = FrameMapping.between(late, frames[0].frame)
    ys, xs = np.mgrid[10:230:6, 10:310:6]
    grid = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    grid = grid[late.depth_m[grid[:, 1].astype(int), grid[:, 0].astype(int)] > 0]
    unseen = grid[~to_first.points(grid).visible]
    assert len(unseen) > 0  # 23 deg of orbit later, part of the view was not in keyframe 0
    offer(session, frames[1].frame)
    offer(session, late)
    session.submit(Prompt(1, 39, points=(PointPrompt(*unseen[len(unseen) // 2]),)))
    session.submit(_gaze_prompt(2, frames[1], target))
    a, b = await inbox.result(1), await inbox.result(2)
    assert b.result.keyframe_id == 0 and a.result.keyframe_id == 39
    assert session.stats.prompts_waited_for_encode == 2


async def test_gaze_prompts_waiting_for_a_keyframe_are_superseded_by_newer_gaze(
    engine: Engine, orbit
) -> None:
    from engine.core import GazeSample
    from engine.mapping import FrameMapping
    from engine.protocol import ErrorCode

    _, frames, target = orbit
    session, inbox = open_session(engine)
    offer(session, frames[0].frame)
    session.submit(_gaze_prompt(0, frames[0], target))
    await inbox.result(0)
    late = frames[39].frame
    ys, xs = np.mgrid[10:230:6, 10:310:6]
    grid = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    grid = grid[late.depth_m[grid[:, 1].astype(int), grid[:, 0].astype(int)] > 0]
    x, y = grid[~FrameMapping.between(late, frames[0].frame).points(grid).visible][0]
    offer(session, frames[1].frame)
    offer(session, late)
    session.submit(Prompt(1, 39, gaze=(GazeSample(10.0, x, y),)))  # waits for a keyframe of frame 39
    tx, ty = interior_point(frames[1].visible_mask(target) & (frames[1].frame.depth_m > 0))
    session.submit(Prompt(2, 1, gaze=(GazeSample(10.1, tx, ty),)))  # newer, answerable now
    newer = await inbox.result(2)
    error = await inbox.wait_for(lambda m: getattr(m, "ref_id", None) == 1)
    assert newer.result.keyframe_id == 0
    assert error.code == ErrorCode.OVERLOADED and "newer" in error.message
    assert session.stats.prompts_dropped == 1


async def test_withdrawing_an_encode_only_prompts_asked_for(engine: Engine, orbit) -> None:
    _, frames, _ = orbit
    encoder = engine.encoder
    other = encoder.request("x", lambda: frames[0].frame, 0, KeyframeReason.PROMPT)
    background = encoder.request("a", lambda: frames[1].frame, 1, KeyframeReason.CAMERA_MOVED)
    prompted = encoder.request("b", lambda: frames[2].frame, 2, KeyframeReason.PROMPT)
    encoder.cancel("a", only_prompt=True)
    encoder.cancel("b", only_prompt=True)
    assert prompted.cancelled() and not background.cancelled()
    assert (await background).frame_id == 1 and (await other).frame_id == 0


async def test_a_prompt_the_newest_keyframe_cannot_see_gets_its_own_frame_encoded(
    engine: Engine, orbit
) -> None:
    """Newest frame wins the encoder, so a prompt may be answered from a newer frame's keyframe; when
    that one does not see it either, the prompt's own frame is encoded for it."""
    from engine.core import PointPrompt
    from engine.mapping import FrameMapping

    _, frames, target = orbit
    session, inbox = open_session(engine)
    offer(session, frames[0].frame)
    session.submit(_gaze_prompt(0, frames[0], target))
    await inbox.result(0)
    late = frames[39].frame
    ys, xs = np.mgrid[10:230:6, 10:310:6]
    grid = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    grid = grid[late.depth_m[grid[:, 1].astype(int), grid[:, 0].astype(int)] > 0]
    x, y = grid[~FrameMapping.between(late, frames[0].frame).points(grid).visible][0]
    # one tick: frame 39, a prompt on it, then a newer frame that looks where keyframe 0 looked
    offer(session, late)
    session.submit(Prompt(1, 39, points=(PointPrompt(x, y),)))
    offer(session, replace(frames[0].frame, frame_id=100))
    answer = await inbox.result(1)
    assert answer.result.keyframe_id == 39 and answer.result.frame_id == 39
    await engine.encoder.wait_idle()
    assert session.keyframe.frame_id == 100  # the newest frame's keyframe, not the prompt's own
    assert engine.encoder.stats.frames == 3  # frames 0, 100 and 39


async def test_depth_only_with_prompted_frames_encodes_those_and_answers_on_them(
    engine: Engine, orbit
) -> None:
    """A WebRTC-style client sends depth only with the frames it prompts on: frames without depth
    never reach the depth-needing encoder, and a prompt on a depth frame whose encode is already
    running waits for it and is answered on its own frame (no mapping) instead of from the old
    keyframe a whole prompt interval back."""
    _, frames, target = orbit
    session, inbox = open_session(engine)
    offer(session, frames[0].frame)
    session.submit(_gaze_prompt(0, frames[0], target))
    assert (await inbox.result(0)).result.keyframe_id == 0
    for synth in frames[1:15]:  # ~30 cm of camera travel, colour only
        offer(session, replace(synth.frame, depth=None))
    await engine.encoder.wait_idle()
    assert engine.encoder.stats.failed == 0 and engine.encoder.stats.frames == 1
    offer(session, frames[15].frame)  # depth again: the camera moved, its encode starts at once
    session.submit(_gaze_prompt(15, frames[15], target))
    answer = await inbox.result(15)
    assert (
        answer.result.frame_id == answer.result.keyframe_id == 15 and answer.mapping == MappingMethod.IDENTITY
    )
    truth = frames[15].visible_mask(target)
    assert mask_iou(answer.result.masks[answer.result.best].mask.decode(), truth) > 0.6
    assert engine.encoder.stats.frames == 2 and session.stats.prompts_waited_for_encode == 2


def test_the_start_up_warm_up_runs_a_whole_prompt() -> None:
    """Engine.start runs engine.pipeline.warm_up (EngineConfig.warm_up): one real prompt on a
    generated frame (a box 1.4 m in front of a wall 2 m away) through encode, decode, clean and lift."""
    from engine.pipeline import Pipeline, warm_up
    from models.registry import ModelSpec, build_model

    answer = warm_up(Pipeline(build_model(ModelSpec("geometric"))))
    box = np.zeros((480, 640), bool)
    box[160:320, 213:426] = True
    assert mask_iou(answer.mask, box) > 0.9
    segment = answer.result.segment
    assert segment is not None and segment.status == "ok"
    assert abs(segment.centroid[2] - 1.4) < 0.02


async def test_a_frame_being_encoded_is_not_encoded_again(engine: Engine, orbit) -> None:
    _, frames, _ = orbit
    encoder = engine.encoder
    first = encoder.request("s", lambda: frames[0].frame, 0, KeyframeReason.CAMERA_MOVED)
    while encoder.pending("s") is not None:  # until the worker has taken it
        await asyncio.sleep(0.001)
    again = encoder.request("s", lambda: frames[0].frame, 0, KeyframeReason.PROMPT)
    assert again is first and (await again).frame_id == 0
    assert encoder.stats.frames == 1
    newer = encoder.request("s", lambda: frames[1].frame, 1, KeyframeReason.PROMPT)
    assert newer is not first and (await newer).frame_id == 1

"""Gaze in the session: samples -> fixation -> dwell selection, answered from a speculative decode."""

from __future__ import annotations

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
from clients.ws_client import XrsegClient
from engine.config import EngineConfig
from engine.core import GazeSample, Prompt
from engine.protocol import AnswerMode, ImageCodec, PromptMessage, ResultKind
from engine.server import Engine
from engine.tracking import interior_point, mask_iou
from tests.conftest import TOKEN, LiveEngine
from tests.session_inbox import offer, open_session, settle

K = default_intrinsics(320, 240, 262.5, 262.5)
RATE_HZ = 120.0
FPS = 15.0


@pytest.fixture(scope="module")
def view():
    scene = make_scene(3)
    (synth,) = render_sequence(scene, orbit_poses(scene, 1), K, DepthDegradation(), seed=6)
    big = sorted(scene.object_ids, key=lambda o: -synth.visible_mask(o).sum())
    return synth, big[0], big[1]


def gaze_trace(
    first_xy,
    target_xy,
    first_s: float = 0.3,
    saccade_s: float = 0.04,
    target_s: float = 1.0,
    noise_px: float = 1.5,
    seed: int = 0,
) -> list[GazeSample]:
    """A short glance at one point, a saccade, then a long look at the target, sampled at 120 Hz."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(int((first_s + saccade_s + target_s) * RATE_HZ)):
        t = i / RATE_HZ
        if t < first_s:
            xy = np.asarray(first_xy, float)
        elif t < first_s + saccade_s:
            a = (t - first_s) / saccade_s
            xy = (1 - a) * np.asarray(first_xy, float) + a * np.asarray(target_xy, float)
        else:
            xy = np.asarray(target_xy, float)
        x, y = xy + rng.normal(0, noise_px, 2)
        out.append(GazeSample(t, float(x), float(y), 0.95))
    return out


def per_frame(samples: list[GazeSample]) -> list[tuple[GazeSample, ...]]:
    """The samples each 15 fps frame carries (what a headset client sends with every frame)."""
    n = int(np.ceil(samples[-1].t * FPS)) + 1
    return [tuple(s for s in samples if i / FPS <= s.t < (i + 1) / FPS) for i in range(n)]


async def test_dwell_selection_is_ready_when_the_dwell_completes(view) -> None:
    synth, target, other = view
    trace = gaze_trace(interior_point(synth.visible_mask(other)), interior_point(synth.visible_mask(target)))
    async with Engine(EngineConfig(port=0)) as engine:
        session, inbox = open_session(engine)
        for i, samples in enumerate(per_frame(trace)):
            frame = replace(synth.frame, frame_id=i)  # the head holds still; frames keep coming
            offer(session, frame)
            if samples:
                session.submit(
                    PromptMessage(Prompt(100 + i, i, gaze=samples), answer=AnswerMode.DWELL), received=None
                )
            await settle(engine, session)  # what a live stream leaves time for between frames
        stats = session.stats
    results = inbox.results()
    assert len(results) == 1 and not inbox.errors()
    dwell = results[0]
    r = dwell.result
    assert dwell.kind is ResultKind.DWELL
    # the dwell completes 0.6 s into the fixation (plus the detector's 40 ms velocity window)
    done_at = (r.prompt_id - 100) / FPS
    assert 0.3 + 0.04 + 0.6 <= done_at + 1 / FPS and done_at <= 0.3 + 0.04 + 0.6 + 0.2
    assert mask_iou(r.masks[r.best].mask.decode(), synth.visible_mask(target)) > 0.7
    assert r.segment is not None and r.segment.status == "ok"
    # decoded speculatively, before the prompt that completed the dwell was even received
    assert r.timestamps.decode < r.timestamps.receive <= r.timestamps.send
    assert stats.speculative_decodes >= 1 and stats.speculative_hits == 1 and stats.dwell_selections == 1
    assert stats.prompts_answered == 1  # dwell-mode prompts are not answered one by one


async def test_gaze_prompts_answered_now_reuse_the_held_answer(view) -> None:
    """Answer mode "now" (schema v1's): every gaze prompt gets its result; while the eye stays on
    one spot, most are answered from the held answer without decoding again."""
    synth, target, other = view
    trace = gaze_trace(
        interior_point(synth.visible_mask(other)), interior_point(synth.visible_mask(target)), seed=1
    )
    async with Engine(EngineConfig(port=0)) as engine:
        session, inbox = open_session(engine)
        frames = per_frame(trace)
        for i, samples in enumerate(frames):
            offer(session, replace(synth.frame, frame_id=i))
            if samples:
                session.submit(Prompt(i, i, gaze=samples))
            await settle(engine, session)
        stats = session.stats
    results = {m.result.prompt_id: m for m in inbox.results()}
    asked = [i for i, samples in enumerate(frames) if samples]
    assert sorted(results) == asked and not inbox.errors()
    kinds = [results[i].kind for i in asked]
    assert kinds.count(ResultKind.DWELL) == 1 and kinds.count(ResultKind.ANSWER) == len(asked) - 1
    late = [results[i].result for i in asked if i / FPS > 0.3 + 0.04 + 0.2]
    assert all(mask_iou(r.masks[r.best].mask.decode(), synth.visible_mask(target)) > 0.7 for r in late)
    assert stats.speculative_hits >= len(asked) // 2


async def test_dwell_over_websocket(live_engine: LiveEngine, view) -> None:
    synth, target, other = view
    trace = gaze_trace(
        interior_point(synth.visible_mask(other)), interior_point(synth.visible_mask(target)), seed=2
    )
    async with XrsegClient.connect(live_engine.url, TOKEN) as client:
        for i, samples in enumerate(per_frame(trace)):
            await client.send_frame(replace(synth.frame, frame_id=i), ImageCodec.PNG)
            if samples:
                await client.send_gaze(Prompt(i, i, gaze=samples))
        selection = await client.next_result(timeout=30)
        stats = await client.stats()
    assert selection.kind is ResultKind.DWELL
    assert (
        mask_iou(selection.result.masks[selection.result.best].mask.decode(), synth.visible_mask(target))
        > 0.7
    )
    assert stats.dwell_selections == 1 and stats.prompts_answered == 1


async def test_held_gaze_answers_follow_a_moving_camera() -> None:
    """The head turns (0.6 deg per frame) while the eye stays on an object: answers reused from
    earlier frames are moved into each prompt's frame."""
    scene = make_scene(3)
    frames = render_sequence(scene, orbit_poses(scene, 100)[:20], K, DepthDegradation(), seed=6)
    target = max(scene.object_ids, key=lambda o: frames[0].visible_mask(o).sum())
    first = frames[0]
    x, y = interior_point(first.visible_mask(target) & (first.frame.depth_m > 0))
    z = float(first.frame.depth_m[int(y), int(x)])
    world = first.frame.pose.transform(np.array([[(x - K.cx) * z / K.fx, (y - K.cy) * z / K.fy, z]]))[0]
    rng = np.random.default_rng(3)
    async with Engine(EngineConfig(port=0)) as engine:
        session, inbox = open_session(engine)
        for i, synth in enumerate(frames):
            cam = synth.frame.pose.inverse().transform(world[None])[0]
            u, v = K.fx * cam[0] / cam[2] + K.cx, K.fy * cam[1] / cam[2] + K.cy
            samples = tuple(
                GazeSample(i / FPS + k / RATE_HZ, float(u + dx), float(v + dy), 0.95)
                for k, (dx, dy) in enumerate(rng.normal(0, 1.0, (8, 2)))
            )
            offer(session, synth.frame)
            session.submit(Prompt(i, i, gaze=samples))
            await settle(engine, session)
        stats = session.stats
    results = {m.result.prompt_id: m.result for m in inbox.results()}
    assert sorted(results) == list(range(20)) and not inbox.errors()
    for i, r in results.items():
        assert r.frame_id == i  # reused or not, the masks are in the prompt's frame
        assert mask_iou(r.masks[r.best].mask.decode(), frames[i].visible_mask(target)) > 0.7, i
    assert stats.speculative_hits >= 10 and any(r.keyframe_id < r.frame_id for r in results.values())

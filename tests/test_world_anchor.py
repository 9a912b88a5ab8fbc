"""The world anchor of a selected object (engine/anchor.py): fused over the frames one selection
keeps the object, reported as `segment.anchor`, started afresh for another object.

On the posed livingroom1_micro sequence the gazed chair seat's per-frame centroid (that of the
surface each frame sees) slides with the viewpoint; the anchor, the centroid of every world voxel
the seat's segments covered so far, converges (bench/selection_stability.py --modes gaze).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bench.real_gt import default_data_dir
from clients.sources.synthetic import (
    DepthDegradation,
    default_intrinsics,
    make_scene,
    orbit_poses,
    render_sequence,
)
from engine.anchor import AnchorConfig, Anchors, WorldAnchor
from engine.config import EngineConfig
from engine.core import (
    MaskCandidate,
    Prompt,
    RLEMask,
    Segment3D,
    SegmentationResult,
    StageTimestamps,
)
from engine.dwell import DwellConfig
from engine.mapping import MappingMethod
from engine.pipeline import Answer
from engine.protocol import PromptMessage, ResultKind
from engine.server import Engine
from engine.tracking import interior_point
from tests.session_inbox import offer, open_session, settle
from tests.test_gaze_dwell import FPS as DWELL_FPS
from tests.test_gaze_dwell import gaze_trace, per_frame
from tests.test_gaze_renewal import gaze_at_the_seat
from tests.test_tracking import _select

SEQUENCE = default_data_dir() / "livingroom1_micro"
FPS = 30.0


def _segment(points: list[list[float]], frame: str = "world") -> Segment3D:
    pts = np.asarray(points, np.float32)
    return Segment3D("ok", pts.mean(0), pts.mean(0), np.ones(3), np.eye(3), pts, len(pts), frame)


def _answer(segment: Segment3D | None) -> Answer:
    mask = np.ones((2, 2), bool)
    result = SegmentationResult(
        1, 1, 1, (MaskCandidate(RLEMask.encode(mask), 0.9, "object"),), 0, segment, None, StageTimestamps()
    )
    return Answer(result, mask, MappingMethod.IDENTITY)


def _spread_cm(points: list[np.ndarray]) -> np.ndarray:
    c = np.stack(points)
    return np.linalg.norm(c - np.median(c, axis=0), axis=1) * 100


def test_a_voxel_counts_once_and_only_world_points_are_fused() -> None:
    anchor = WorldAnchor(AnchorConfig(voxel_m=0.01))
    seen = _segment([[0.001, 0.0, 0.0], [0.002, 0.0, 0.0]])  # one voxel, twice
    anchor.fuse(seen)
    anchor.fuse(seen)  # the same segment again (a held answer reused): not a new frame
    got = anchor.anchor()
    assert got is not None and (got.frames, got.voxels) == (1, 1)
    np.testing.assert_allclose(got.centroid, [0.005, 0.005, 0.005])
    anchor.fuse(_segment([[0.101, 0.0, 0.0], [0.003, 0.001, 0.0]]))  # a new voxel and the old one
    got = anchor.anchor()
    assert (got.frames, got.voxels) == (2, 2)
    np.testing.assert_allclose(got.centroid, [0.055, 0.005, 0.005])
    anchor.fuse(_segment([[5.0, 5.0, 5.0]], frame="camera"))  # no pose: cannot be placed in the world
    assert (anchor.anchor().frames, anchor.anchor().voxels) == (2, 2)


def test_memory_is_bounded_by_dropping_the_voxels_seen_longest_ago() -> None:
    anchor = WorldAnchor(AnchorConfig(voxel_m=0.01, max_voxels=2))
    anchor.fuse(_segment([[0.0, 0.0, 0.0]]))
    anchor.fuse(_segment([[1.0, 0.0, 0.0]]))
    anchor.fuse(_segment([[2.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))  # the voxel at 0 is the oldest
    got = anchor.anchor()
    assert got.voxels == 2
    np.testing.assert_allclose(got.centroid, [1.505, 0.005, 0.005])


def test_anchors_start_afresh_for_another_object_and_skip_camera_frame_results() -> None:
    anchors = Anchors()
    first = anchors.report("gaze", 1, _answer(_segment([[0.0, 0.0, 0.0]])))
    again = anchors.report("gaze", 1, _answer(_segment([[0.1, 0.0, 0.0]])))
    assert first.result.segment.anchor.frames == 1 and again.result.segment.anchor.frames == 2
    unposed = anchors.report("gaze", 1, _answer(_segment([[9.0, 0.0, 0.0]], frame="camera")))
    assert unposed.result.segment.anchor is None  # camera coordinates: no world anchor to give
    assert anchors.report("gaze", 1, _answer(None)).result.segment is None
    other = anchors.report("gaze", 2, _answer(_segment([[3.0, 0.0, 0.0]])))
    assert other.result.segment.anchor.frames == 1  # another object: its own anchor
    np.testing.assert_allclose(other.result.segment.anchor.centroid, [3.005, 0.005, 0.005])
    track = anchors.report(("track", 5), 5, _answer(_segment([[0.0, 0.0, 0.0]])))
    assert track.result.segment.anchor.frames == 1  # slots are independent
    anchors.forget(("track", 5))
    assert (
        anchors.report(("track", 5), 5, _answer(_segment([[0.5, 0.0, 0.0]]))).result.segment.anchor.frames
        == 1
    )


@pytest.mark.skipif(not SEQUENCE.is_dir(), reason="needs ../shared/data/rgbd/livingroom1_micro")
async def test_a_held_gaze_object_gets_an_anchor_steadier_than_its_centroid() -> None:
    """The eye stays on one world point of the chair seat for 24 posed frames (every prompt decoded:
    reuse_max_s 0, so each is a renewal of the held seat). Every answer carries the anchor, fused
    over one more frame each time, and it spreads less than the per-frame centroid. Then a frame
    without pose: its segment is in camera coordinates and carries no anchor; the held answer
    cannot be carried across it (a gaze point maps between frames only with poses:
    engine/renewal.py lands_on), so the next posed frame's answer is decoded afresh and starts a
    new anchor (the session's state before the unposed frame is kept by the anchor itself, but the
    selection it belonged to ended there)."""
    n = 24
    results = await gaze_at_the_seat(n + 2, unposed=(n,))
    assert sorted(results) == list(range(n + 2))
    centroids, anchors, fused = [], [], []
    for i in range(n):
        segment = results[i].segment
        assert segment is not None and segment.status == "ok" and segment.anchor is not None, i
        centroids.append(np.asarray(segment.centroid, np.float64))
        anchors.append(np.asarray(segment.anchor.centroid, np.float64))
        fused.append(segment.anchor.frames)
    assert fused[0] == 1 and all(b >= a for a, b in zip(fused[:-1], fused[1:], strict=True)), fused
    assert fused[-1] >= n // 2, fused  # renewals add the surfaces of new frames
    per_frame_cm, anchor_cm = _spread_cm(centroids), _spread_cm(anchors)
    assert np.median(anchor_cm) < np.median(per_frame_cm), (anchor_cm.round(2), per_frame_cm.round(2))
    assert np.percentile(anchor_cm, 90) < np.percentile(per_frame_cm, 90)
    assert anchor_cm.max() < 2.0, anchor_cm.round(2)
    unposed = results[n].segment
    assert unposed is not None and unposed.frame == "camera" and unposed.anchor is None
    after = results[n + 1].segment
    assert after is not None and after.frame == "world" and after.anchor is not None
    # A new anchor: that fresh answer is what frame 25 alone says the gaze point belongs to, here
    # seat + back (~40 cm from the seat's anchor), so fusing it into the seat's would be wrong.
    assert after.anchor.frames == 1


async def test_the_anchor_starts_afresh_when_the_gaze_moves_to_another_object() -> None:
    """Every prompt decoded (reuse_max_s 0): the anchor grows over the renewals of the first object;
    after the saccade the answers are of the second object, and so is their anchor, started again."""
    k = default_intrinsics(320, 240, 262.5, 262.5)
    scene = make_scene(3)
    (synth,) = render_sequence(scene, orbit_poses(scene, 1), k, DepthDegradation(), seed=6)
    first, second = sorted(scene.object_ids, key=lambda o: -synth.visible_mask(o).sum())[:2]
    trace = gaze_trace(interior_point(synth.visible_mask(first)), interior_point(synth.visible_mask(second)))
    async with Engine(EngineConfig(port=0, gaze=DwellConfig(reuse_max_s=0.0))) as engine:
        session, inbox = open_session(engine)
        for i, samples in enumerate(per_frame(trace)):
            offer(session, replace(synth.frame, frame_id=i))
            if samples:
                session.submit(Prompt(i, i, gaze=samples))
            await settle(engine, session)
    assert not inbox.errors()
    results = sorted((m.result for m in inbox.results()), key=lambda r: r.prompt_id)
    on_first = [r.segment for r in results if 0.1 <= r.prompt_id / DWELL_FPS < 0.3]
    on_second = [r.segment for r in results if r.prompt_id / DWELL_FPS > 0.3 + 0.04 + 0.1]
    assert on_first and on_second
    assert all(s is not None and s.anchor is not None for s in on_first + on_second)
    assert on_first[-1].anchor.frames > 1  # fused over the first object's renewals
    fused = [
        r.segment.anchor.frames for r in results if r.segment is not None and r.segment.anchor is not None
    ]
    assert any(b < a for a, b in zip(fused[:-1], fused[1:], strict=True)), fused  # started afresh
    second_fused = [s.anchor.frames for s in on_second]
    assert all(b >= a for a, b in zip(second_fused[:-1], second_fused[1:], strict=True)), second_fused
    last = on_second[-1]
    # the anchor is the second object's: near its own segment, not the first object's anchor
    to_own = np.linalg.norm(last.anchor.centroid - last.centroid)
    assert to_own < 0.05 and to_own < np.linalg.norm(last.anchor.centroid - on_first[-1].anchor.centroid)


async def test_a_tracked_object_carries_its_anchor_and_a_new_track_starts_another() -> None:
    """A tracked box on a 20-frame orbit: the first answer and every track result carry one anchor,
    fused over one more frame each, inside the object's bounds; a new track of that prompt id after
    a cancel starts its own."""
    k = default_intrinsics(320, 240, 262.5, 262.5)
    scene = make_scene(5)
    frames = render_sequence(scene, orbit_poses(scene, 100)[:20], k, DepthDegradation(), seed=5)
    target = max(scene.object_ids, key=lambda o: frames[0].visible_mask(o).sum())
    async with Engine(EngineConfig(port=0)) as engine:
        session, inbox = open_session(engine)
        offer(session, frames[0].frame)
        session.submit(PromptMessage(_select(frames[0], target, 7), track=True))
        anchors = [(await inbox.result(7, ResultKind.ANSWER)).result.segment.anchor]
        for synth in frames[1:]:
            offer(session, synth.frame)
            msg = await inbox.result(7, ResultKind.TRACK, frame_id=synth.frame.frame_id)
            await engine.encoder.wait_idle()
            anchors.append(msg.result.segment.anchor if msg.result.segment is not None else None)
        session.cancel_tracking(7)
        last = frames[-1]
        session.submit(
            PromptMessage(replace(_select(last, target, 7), frame_id=last.frame.frame_id), track=True)
        )
        again = (await inbox.result(7, ResultKind.ANSWER, frame_id=last.frame.frame_id)).result.segment.anchor
    got = [a for a in anchors if a is not None]
    assert len(got) >= 18 and got[0].frames == 1
    assert [a.frames for a in got] == sorted(a.frames for a in got) and got[-1].frames >= 18
    obj = scene.objects[target]
    lo, hi = obj.vertices.min(0) - 0.03, obj.vertices.max(0) + 0.03
    assert all(np.all((a.centroid >= lo) & (a.centroid <= hi)) for a in got)
    assert again is not None and again.frames == 1

"""Synthetic ray-cast scenes: exact ground truth, Kinect-like degradation, determinism, sequences."""

from __future__ import annotations

import numpy as np
import pytest

from clients.sources.synthetic import (
    BACKGROUND_ID,
    DepthDegradation,
    SceneError,
    SceneRenderer,
    default_camera_pose,
    default_intrinsics,
    look_at_pose,
    make_scene,
    orbit_poses,
    render_frame,
    render_sequence,
)
from engine.core import RGBDFrame

SEED = 3


@pytest.fixture(scope="module")
def scene():
    return make_scene(SEED, n_objects=6)


@pytest.fixture(scope="module")
def clean(scene):
    return render_frame(scene, seed=SEED)


@pytest.fixture(scope="module")
def noisy(scene):
    return render_frame(scene, degradation=DepthDegradation(), seed=SEED)


def _backproject(frame, mask, depth):
    k = frame.frame.intrinsics
    v, u = np.nonzero(mask & (depth > 0))
    z = depth[v, u].astype(np.float64)
    cam = np.stack([(u - k.cx) * z / k.fx, (v - k.cy) * z / k.fy, z], axis=1)
    return frame.frame.pose.transform(cam)


def test_scene_has_structure_and_objects_resting_on_supports(scene) -> None:
    kinds = [o.kind for o in scene.objects]
    assert kinds[0] == "floor" and "wall" in kinds
    assert len(scene.object_ids) == 6
    assert all(o.object_id == i for i, o in enumerate(scene.objects))
    for oid in scene.object_ids:
        obj = scene.objects[oid]
        support = scene.objects[obj.support_id]
        bottom = float(obj.vertices[:, 2].min())
        top_of_support = 0.0 if support.kind == "floor" else float(support.vertices[:, 2].max())
        assert bottom == pytest.approx(top_of_support, abs=1e-4), f"object {oid} ({obj.kind}) floats"


def test_ids_and_clean_depth_agree_pixel_for_pixel(clean) -> None:
    ids, depth = clean.object_ids, clean.clean_depth_m
    assert ids.dtype == np.int32 and ids.shape == depth.shape == (480, 640)
    assert np.array_equal(ids == BACKGROUND_ID, depth == 0)
    # clean rendering carries the exact depth in the frame itself (float32 metres)
    assert clean.frame.depth.dtype == np.float32 and clean.frame.depth_scale == 1.0
    assert np.array_equal(clean.frame.depth_m, depth)


def test_every_labelled_pixel_lies_on_its_own_mesh(scene, clean) -> None:
    for oid in scene.object_ids:
        mask = clean.visible_mask(oid)
        if mask.sum() < 50:
            continue
        pts = _backproject(clean, mask, clean.clean_depth_m)
        lo = scene.objects[oid].vertices.min(0) - 1e-3
        hi = scene.objects[oid].vertices.max(0) + 1e-3
        inside = np.all((pts >= lo) & (pts <= hi), axis=1)
        assert inside.mean() > 0.999, f"object {oid}: {1 - inside.mean():.2%} of its pixels off its mesh"
    floor = _backproject(clean, clean.visible_mask(0), clean.clean_depth_m)
    assert np.abs(floor[:, 2]).max() < 1e-3  # the floor is the plane z = 0


def test_spheres_back_project_onto_their_radius() -> None:
    for seed in range(12):
        scene = make_scene(seed)
        spheres = [o for o in scene.objects if o.kind == "sphere"]
        if not spheres:
            continue
        frame = render_frame(scene, seed=seed)
        s = spheres[0]
        mask = frame.visible_mask(s.object_id)
        if mask.sum() < 100:
            continue
        pts = _backproject(frame, mask, frame.clean_depth_m)
        radius = (s.vertices.max(0) - s.vertices.min(0))[0] / 2
        dist = np.linalg.norm(pts - s.center, axis=1)
        assert np.abs(dist - radius).max() < 0.01 * radius + 2e-3  # a 40-ring tessellated sphere
        return
    pytest.fail("no visible sphere in 12 seeds")


def test_same_seed_same_scene_and_frame_other_seed_differs(scene, noisy) -> None:
    again = make_scene(SEED, n_objects=6)
    assert all(
        np.array_equal(a.vertices, b.vertices) for a, b in zip(scene.objects, again.objects, strict=True)
    )
    frame = render_frame(again, degradation=DepthDegradation(), seed=SEED)
    assert np.array_equal(frame.frame.rgb, noisy.frame.rgb)
    assert np.array_equal(frame.frame.depth, noisy.frame.depth)
    other = make_scene(SEED + 1, n_objects=6)
    assert not np.array_equal(other.objects[3].vertices, scene.objects[3].vertices)
    renoised = render_frame(scene, degradation=DepthDegradation(), seed=SEED + 1)
    assert not np.array_equal(renoised.frame.depth, noisy.frame.depth)


def test_degradation_is_kinect_like(clean, noisy) -> None:
    frame = noisy.frame
    assert isinstance(frame, RGBDFrame)
    assert frame.depth.dtype == np.uint16 and frame.depth_scale == 1000.0
    d, truth = frame.depth_m, noisy.clean_depth_m
    # millimetre quantisation
    assert np.allclose(d * 1000, np.round(d * 1000), atol=1e-3)
    # zero border and holes
    b = DepthDegradation().border_px
    assert not d[:b].any() and not d[:, -b:].any()
    hole = (d == 0) & (truth > 0)
    assert 0.02 < hole[b:-b, b:-b].mean() < 0.2
    # noise grows with z^2: robust spread of the error near and far (flying pixels are outliers)
    err, z = (d - truth)[d > 0], truth[d > 0]

    def sigma(e: np.ndarray) -> float:
        return 1.4826 * float(np.median(np.abs(e - np.median(e))))

    near, far = err[z < 2.0], err[z > 3.0]
    assert near.size > 1000 and far.size > 1000
    assert sigma(far) > 2.0 * sigma(near)
    assert sigma(near) == pytest.approx(1.4e-3 * np.median(z[z < 2.0]) ** 2, rel=0.35)
    # flying pixels: some measured depths lie well between the two sides of a depth edge
    flying = (d > 0) & (truth - d > 0.1)
    assert flying.sum() > 20
    # ids are untouched by degradation; colour differs only by sensor noise
    assert np.array_equal(noisy.object_ids, clean.object_ids)
    assert np.abs(noisy.frame.rgb.astype(int) - clean.frame.rgb.astype(int)).mean() < 5


def test_orbit_sequence_looks_at_the_scene(scene) -> None:
    poses = orbit_poses(scene, 5, radius=2.2, height=1.4, arc_deg=40)
    frames = render_sequence(scene, poses, degradation=DepthDegradation(), seed=7)
    assert [f.frame.frame_id for f in frames] == list(range(5))
    assert np.all(np.diff([f.frame.capture_ts for f in frames]) > 0)
    k = default_intrinsics()
    for f, pose in zip(frames, poses, strict=True):
        cam = pose.inverse().transform(scene.target[None])[0]
        u, v = k.fx * cam[0] / cam[2] + k.cx, k.fy * cam[1] / cam[2] + k.cy
        assert abs(u - k.cx) < 1 and abs(v - k.cy) < 1  # the target projects to the centre
        assert np.linalg.norm(pose.translation[:2] - scene.target[:2]) == pytest.approx(2.2)
        assert f.frame.pose is pose
    # the camera moves, so consecutive views differ
    assert not np.array_equal(frames[0].object_ids, frames[-1].object_ids)


def test_renderer_reuses_one_scene_for_many_cameras(scene) -> None:
    renderer = SceneRenderer(scene)
    k = default_intrinsics(320, 240, 262.5, 262.5)
    a = renderer.render(k, default_camera_pose(scene, 0))
    b = renderer.render(k, default_camera_pose(scene, 1))
    assert a.object_ids.shape == (240, 320)
    assert not np.array_equal(a.object_ids, b.object_ids)


def test_bad_requests_say_what_to_do() -> None:
    with pytest.raises(SceneError, match="n_objects"):
        make_scene(0, n_objects=0)
    with pytest.raises(SceneError, match="up vector"):
        look_at_pose(np.zeros(3), np.array([0.0, 0.0, 1.0]))
    with pytest.raises(SceneError, match="n >= 1"):
        orbit_poses(make_scene(0, n_objects=2), 0)

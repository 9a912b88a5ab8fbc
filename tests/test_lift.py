"""Behaviour of engine.lift on ray-cast scenes with exact ground truth, and on real RGB-D depth.

Ground truth comes from Open3D's RaycastingScene: per-pixel depth and object ids for a camera at
a known pose, so the true visible-surface centroid of an object is the mean of its hit points.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import open3d as o3d
import pytest

from engine.core import CameraIntrinsics, Pose
from engine.lift import LiftConfig, lift_mask

K = CameraIntrinsics(width=640, height=480, fx=525.0, fy=525.0, cx=319.5, cy=239.5)
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rgbd"


@dataclass(frozen=True, eq=False)
class Render:
    """A ray-cast view: depth (H, W) float32 metres (0 = miss), ids (H, W) int64 (-1 = miss),
    world_points (H, W, 3) float64 hit points in world coordinates."""

    depth: np.ndarray
    ids: np.ndarray
    world_points: np.ndarray

    def truth_centroid(self, mask: np.ndarray) -> np.ndarray:
        return self.world_points[mask].mean(axis=0)


def render(meshes: list[o3d.geometry.TriangleMesh], pose: Pose) -> Render:
    """Cast one ray per pixel centre (OpenCV convention, integer u, v) from a camera at ``pose``."""
    scene = o3d.t.geometry.RaycastingScene()
    for mesh in meshes:
        scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
    v, u = np.mgrid[: K.height, : K.width].astype(np.float64)
    cam_dirs = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u)], axis=-1)
    dirs = cam_dirs @ pose.rotation.T
    origins = np.broadcast_to(pose.translation, dirs.shape)
    rays = np.concatenate([origins, dirs], axis=-1).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor(rays))
    t = hit["t_hit"].numpy().astype(np.float64)  # camera-z of dirs is 1, so t is the depth
    ids = hit["geometry_ids"].numpy().astype(np.int64)
    miss = ~np.isfinite(t)
    ids[miss] = -1
    depth = np.where(miss, 0.0, t).astype(np.float32)
    world = origins + dirs * np.where(miss, 0.0, t)[..., None]
    return Render(depth=depth, ids=ids, world_points=world)


def box(size: tuple[float, float, float], center: tuple[float, float, float]) -> o3d.geometry.TriangleMesh:
    mesh = o3d.geometry.TriangleMesh.create_box(*size)
    mesh.translate(np.asarray(center) - np.asarray(size) / 2)
    return mesh


def sphere(radius: float, center: tuple[float, float, float]) -> o3d.geometry.TriangleMesh:
    mesh = o3d.geometry.TriangleMesh.create_sphere(radius, resolution=40)
    mesh.translate(center)
    return mesh


def kinect_noise(depth: np.ndarray, seed: int) -> np.ndarray:
    """Axial noise of a structured-light sensor (sigma = 1.2 mm + 1.9 mm (z - 0.4)^2), mm quantised."""
    rng = np.random.default_rng(seed)
    sigma = 0.0012 + 0.0019 * np.square(depth - 0.4)
    noisy = np.round((depth + rng.normal(size=depth.shape) * sigma) * 1000) / 1000
    return np.where(depth > 0, noisy, 0).astype(np.float32)


WALL, CABINET, BALL = 0, 1, 2


@pytest.fixture(scope="module")
def room() -> Render:
    """A cabinet 1.2 m in front of a wall 3 m away, a ball to its right, camera at the origin."""
    meshes = [
        box((6.0, 5.0, 0.05), (0.0, 0.0, 3.0)),
        box((0.5, 0.4, 0.3), (-0.1, 0.0, 1.8)),
        sphere(0.1, (0.55, 0.05, 1.5)),
    ]
    return render(meshes, Pose.identity())


def pixel_of(mask: np.ndarray) -> tuple[float, float]:
    """A pixel well inside the mask: the one farthest from its border."""
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(x), float(y)


def test_mask_bleeding_onto_the_wall_is_cut_and_centroid_matches_the_visible_surface(room: Render) -> None:
    cabinet = room.ids == CABINET
    bled = cv2.dilate(cabinet.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    depth = kinect_noise(room.depth, seed=1)
    truth = room.truth_centroid(cabinet)

    seg = lift_mask(bled, depth, K, Pose.identity(), anchor_xy=pixel_of(cabinet))

    naive = room.world_points[bled].mean(axis=0)
    assert np.linalg.norm(naive - truth) > 0.1  # the scene really does punish keeping the wall
    assert seg.status == "ok" and seg.frame == "world"
    assert np.linalg.norm(seg.centroid - truth) < 0.01
    assert seg.points.dtype == np.float32 and seg.points.shape[1] == 3
    assert np.all(seg.points[:, 2] < 2.2)  # no wall points (wall at z = 3)
    assert seg.num_points == int(np.count_nonzero(depth[bled]))


def test_centroid_is_pixel_weighted_not_voxel_weighted() -> None:
    # A floor seen at a grazing angle: near rows have many pixels per voxel, far rows few,
    # so the voxel mean sits far behind the pixel mean.
    tilt = Pose(np.array([[1, 0, 0, 0], [0, 0.8, 0.6, 0], [0, -0.6, 0.8, 0], [0, 0, 0, 1.0]]))
    view = render([box((3.0, 0.02, 6.0), (0.0, 1.0, 3.5))], tilt)
    floor = view.ids == 0
    truth = view.truth_centroid(floor)
    config = LiftConfig(max_points_out=100_000)

    seg = lift_mask(floor, view.depth, K, tilt, anchor_xy=pixel_of(floor), config=config)

    voxel_mean = seg.points.mean(axis=0)
    assert np.linalg.norm(voxel_mean - truth) > 0.05
    assert np.linalg.norm(seg.centroid - truth) < 0.01


def test_anchor_picks_the_cluster_under_the_prompt_and_no_anchor_picks_the_largest(room: Render) -> None:
    cabinet, ball = room.ids == CABINET, room.ids == BALL
    both = cabinet | ball
    depth = kinect_noise(room.depth, seed=2)

    on_ball = lift_mask(both, depth, K, None, anchor_xy=pixel_of(ball))
    on_cabinet = lift_mask(both, depth, K, None, anchor_xy=pixel_of(cabinet))
    unprompted = lift_mask(both, depth, K, None)

    assert np.linalg.norm(on_ball.centroid - room.truth_centroid(ball)) < 0.01
    assert np.linalg.norm(on_cabinet.centroid - room.truth_centroid(cabinet)) < 0.01
    assert np.linalg.norm(unprompted.centroid - room.truth_centroid(cabinet)) < 0.01
    assert on_ball.frame == "camera"


def test_anchor_without_depth_falls_back_to_the_largest_cluster(room: Render) -> None:
    cabinet, ball = room.ids == CABINET, room.ids == BALL
    depth = room.depth.copy()
    x, y = pixel_of(ball)
    depth[int(y) - 20 : int(y) + 21, int(x) - 20 : int(x) + 21] = 0.0

    seg = lift_mask(cabinet | ball, depth, K, None, anchor_xy=(x, y))

    assert np.linalg.norm(seg.centroid - room.truth_centroid(cabinet)) < 0.01


def test_world_coordinates_follow_the_camera_pose() -> None:
    angle = np.deg2rad(35)
    rot = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    matrix = np.eye(4)
    matrix[:3, :3] = rot
    matrix[:3, 3] = [1.5, -0.3, 0.7]
    pose = Pose(matrix)
    target = pose.transform(np.array([[0.1, 0.05, 2.0]]))[0]
    view = render(
        [sphere(0.25, tuple(target)), box((20, 20, 0.1), tuple(pose.transform(np.array([[0, 0, 4.0]]))[0]))],
        pose,
    )
    ball = view.ids == 0

    world = lift_mask(ball, view.depth, K, pose, anchor_xy=pixel_of(ball))
    camera = lift_mask(ball, view.depth, K, None, anchor_xy=pixel_of(ball))

    assert world.frame == "world" and camera.frame == "camera"
    assert np.linalg.norm(world.centroid - view.truth_centroid(ball)) < 0.005
    np.testing.assert_allclose(world.centroid, pose.transform(camera.centroid[None])[0], atol=1e-6)
    np.testing.assert_allclose(world.box_center, pose.transform(camera.box_center[None])[0], atol=1e-6)
    np.testing.assert_allclose(world.box_rotation, rot @ camera.box_rotation, atol=1e-9)
    np.testing.assert_allclose(world.points, pose.transform(camera.points.astype(np.float64)), atol=1e-5)
    # the visible cap of a 0.25 m ball lies within 0.25 m of its centre
    assert np.all(np.linalg.norm(world.points - target, axis=1) < 0.27)


def test_box_of_a_flat_wall_patch_is_thin_proper_and_encloses_the_points(room: Render) -> None:
    patch = np.zeros_like(room.ids, dtype=bool)
    patch[20:80, 20:200] = True  # upper-left of the frame: only the wall

    seg = lift_mask(patch, room.depth, K, None)

    rot = seg.box_rotation
    np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-6)
    assert np.linalg.det(rot) == pytest.approx(1.0, abs=1e-6)
    extent = np.sort(seg.box_extent)
    assert extent[0] < 0.01
    assert extent[1] == pytest.approx(60 * 2.975 / 525, rel=0.1)  # 60 rows at the wall's depth
    assert extent[2] == pytest.approx(180 * 2.975 / 525, rel=0.1)
    local = (seg.points - seg.box_center) @ rot
    assert np.all(np.abs(local) <= seg.box_extent / 2 + 1e-3)


@pytest.mark.parametrize("pixels", [1, 2, 3])
def test_tiny_segments_get_a_finite_box(room: Render, pixels: int) -> None:
    mask = np.zeros_like(room.ids, dtype=bool)
    mask[240, 320 : 320 + pixels] = True

    seg = lift_mask(mask, room.depth, K, None, config=LiftConfig(min_valid_points=1, min_cluster_points=1))

    assert seg.status == "ok"
    assert np.all(np.isfinite(seg.box_extent)) and np.all(np.isfinite(seg.box_center))
    assert np.linalg.det(seg.box_rotation) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(seg.centroid, room.world_points[mask].mean(axis=0), atol=1e-5)


@pytest.mark.parametrize("fill", [0.0, np.nan, np.inf, -1.0])
def test_mask_without_valid_depth_answers_no_depth(room: Render, fill: float) -> None:
    cabinet = room.ids == CABINET
    depth = room.depth.copy()
    depth[cabinet] = fill

    seg = lift_mask(cabinet, depth, K, Pose.identity())

    assert seg.status == "no_depth" and seg.num_points == 0 and seg.frame == "world"
    assert seg.points.shape == (0, 3)


def test_too_few_valid_samples_answer_no_depth(room: Render) -> None:
    cabinet = room.ids == CABINET
    depth = np.zeros_like(room.depth)
    ys, xs = np.nonzero(cabinet)
    depth[ys[:10], xs[:10]] = room.depth[ys[:10], xs[:10]]

    seg = lift_mask(cabinet, depth, K, None, config=LiftConfig(min_valid_points=30))

    assert seg.status == "no_depth" and seg.num_points == 10 and seg.frame == "camera"


def test_nan_and_inf_depth_are_ignored_like_zero(room: Render) -> None:
    cabinet = room.ids == CABINET
    depth = kinect_noise(room.depth, seed=3)
    holes = np.random.default_rng(4).random(depth.shape) < 0.2
    with_zero, with_nan = depth.copy(), depth.copy()
    with_zero[holes] = 0.0
    with_nan[holes] = np.where(np.arange(holes.sum()) % 2 == 0, np.nan, np.inf)

    a = lift_mask(cabinet, with_zero, K, None)
    b = lift_mask(cabinet, with_nan, K, None)

    assert a.num_points == b.num_points == int(np.count_nonzero(cabinet & ~holes))
    np.testing.assert_allclose(a.centroid, b.centroid)
    np.testing.assert_array_equal(a.points, b.points)


def test_points_out_are_capped(room: Render) -> None:
    seg = lift_mask(room.ids == WALL, room.depth, K, None, config=LiftConfig(max_points_out=50))
    assert seg.points.shape == (50, 3)


def test_bad_inputs_raise_errors_that_say_what_to_do(room: Render) -> None:
    cabinet = room.ids == CABINET
    with pytest.raises(ValueError, match="mask is 320x240 but depth_m is 640x480"):
        lift_mask(cabinet[::2, ::2], room.depth, K, None)
    with pytest.raises(ValueError, match="RGBDFrame.depth_m"):
        lift_mask(cabinet, (room.depth * 1000).astype(np.uint16), K, None)
    with pytest.raises(ValueError, match="outside the 640x480 image"):
        lift_mask(cabinet, room.depth, K, None, anchor_xy=(700.0, 10.0))
    small = CameraIntrinsics(320, 240, 262.5, 262.5, 159.75, 119.75)
    with pytest.raises(ValueError, match="scale the intrinsics"):
        lift_mask(cabinet, room.depth, small, None)
    with pytest.raises(ValueError, match="LiftConfig.voxel_size"):
        LiftConfig(voxel_size=0.0)


def test_real_kinect_depth_with_holes_lifts_to_a_plausible_segment() -> None:
    depth_raw = cv2.imread(str(DATA / "kinect_slambook5" / "depth" / "1.pgm"), cv2.IMREAD_UNCHANGED)
    assert depth_raw is not None and depth_raw.dtype == np.uint16
    depth = depth_raw.astype(np.float32) / 1000.0
    kinect = CameraIntrinsics(640, 480, 518.0, 519.0, 325.5, 253.5)
    mask = np.zeros(depth.shape, bool)
    mask[180:330, 240:420] = True  # 27k pixels across the table, holes and edges included

    seg = lift_mask(mask, depth, kinect, None, anchor_xy=(330.0, 255.0))

    valid = depth[mask][depth[mask] > 0]
    assert seg.status == "ok" and seg.num_points == valid.size
    assert 0 < len(seg.points) <= LiftConfig().max_points_out
    assert np.all(np.isfinite(seg.points)) and np.all(seg.box_extent < 5.0)
    assert valid.min() - 0.05 <= seg.centroid[2] <= valid.max() + 0.05


def test_large_masks_reach_open3d_as_a_bounded_number_of_voxels() -> None:
    """What keeps a large mask's lift fast (its time is bench.pipeline_latency's, not a test's):
    Open3D's outlier removal and DBSCAN see about max_voxels voxels, however many pixels the
    mask has, and the voxels still carry every pixel (counts) for the exact centroid."""
    from engine.lift import _backproject, _voxelize

    depth = cv2.imread(str(DATA / "livingroom1_micro" / "depth" / "00100.png"), cv2.IMREAD_UNCHANGED)
    depth = depth.astype(np.float32) / 1000.0
    yy, xx = np.mgrid[:480, :640]
    config = LiftConfig()
    for area in (2_000, 30_000, 100_000, 300_000):
        mask = (xx - 320) ** 2 + (yy - 240) ** 2 <= area / np.pi
        points = _backproject(mask, depth, K)
        voxels = _voxelize(points, K, config)
        assert len(voxels.counts) <= 1.25 * config.max_voxels, (area, len(voxels.counts))
        assert int(voxels.counts.sum()) == points.shape[1]


TORCH_THEN_OPEN3D = """
import torch
import open3d
import numpy as np
pts = np.random.default_rng(0).random((500, 3))
labels = np.asarray(open3d.geometry.PointCloud(open3d.utility.Vector3dVector(pts)).cluster_dbscan(0.1, 5))
print(labels.size, float((torch.ones(4, 4) @ torch.ones(4, 4)).sum()))
"""


def test_open3d_and_torch_load_together_in_either_order() -> None:
    """Both libraries ship their own OpenMP / C++ runtimes; the engine process loads both."""
    # torch first: in a fresh interpreter, since this one has imported open3d already.
    run = subprocess.run(
        [sys.executable, "-c", TORCH_THEN_OPEN3D], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["500", "64.0"]
    # open3d first: this process (engine.lift imported open3d at collection).
    assert "open3d" in sys.modules
    import torch

    seg = lift_mask(np.ones((480, 640), bool), np.full((480, 640), 2.0, np.float32), K, None)
    assert seg.status == "ok"
    assert float((torch.ones(4, 4) @ torch.ones(4, 4)).sum()) == 64.0

"""Prompt and mask mapping between two views, checked against ray-cast ground truth."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from clients.sources.synthetic import (
    DepthDegradation,
    default_intrinsics,
    look_at_pose,
    make_scene,
    orbit_poses,
    render_sequence,
)
from engine.core import Pose
from engine.mapping import FrameMapping, MappingConfig, MappingMethod
from engine.tracking import interior_point, mask_iou

K = default_intrinsics(320, 240, 262.5, 262.5)


@pytest.fixture(scope="module")
def views():
    """Frames 0, 4 and 12 of a 100-frame orbit (0.6 deg per frame), with Kinect-like depth noise."""
    scene = make_scene(3)
    poses = orbit_poses(scene, 100)
    return scene, render_sequence(scene, (poses[0], poses[4], poses[12]), K, DepthDegradation(), seed=1)


def _objects(scene, *frames, min_px: int = 150):
    return [o for o in scene.object_ids if all(f.visible_mask(o).sum() >= min_px for f in frames)]


def test_reprojected_masks_match_the_true_masks_in_the_other_view(views):
    scene, (a, b, _) = views
    mapping = FrameMapping.between(a.frame, b.frame)
    assert mapping.method is MappingMethod.REPROJECTION
    ious = [mask_iou(mapping.mask(a.visible_mask(o)), b.visible_mask(o)) for o in _objects(scene, a, b)]
    assert len(ious) >= 4
    assert np.mean(ious) >= 0.9 and min(ious) >= 0.75, ious


def test_warped_mask_beats_the_unmoved_mask(views):
    """The check that mapping matters: at 7 deg of orbit the unmoved mask is clearly worse."""
    scene, (a, _, c) = views
    mapping = FrameMapping.between(a.frame, c.frame)
    objs = _objects(scene, a, c)
    warped = np.mean([mask_iou(mapping.mask(a.visible_mask(o)), c.visible_mask(o)) for o in objs])
    unmoved = np.mean([mask_iou(a.visible_mask(o), c.visible_mask(o)) for o in objs])
    assert warped >= 0.8 and warped > unmoved + 0.2, (warped, unmoved)


def test_points_land_on_the_same_object_and_occlusion_is_seen(views):
    scene, (a, _, c) = views
    mapping = FrameMapping.between(a.frame, c.frame)
    # interior points of every object: mapped onto that object in the other view
    for o in _objects(scene, a, c):
        x, y = interior_point(a.visible_mask(o) & (a.frame.depth_m > 0))
        mapped = mapping.points(np.array([[x, y]]))
        assert mapped.visible[0] and mapped.method[0] is MappingMethod.REPROJECTION
        u, v = np.floor(mapped.xy[0] + 0.5).astype(int)
        assert c.object_ids[v, u] == o
    # every 4th pixel of the view: visible exactly when the same surface is seen there (ground truth)
    ys, xs = np.mgrid[8:232:4, 8:312:4]
    xy = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    has_depth = a.frame.depth_m[ys.ravel(), xs.ravel()] > 0
    xy = xy[has_depth]
    mapped = mapping.points(xy)
    src_ids = a.object_ids[xy[:, 1].astype(int), xy[:, 0].astype(int)]
    u = np.clip(np.floor(mapped.xy[:, 0] + 0.5).astype(int), 0, 319)
    v = np.clip(np.floor(mapped.xy[:, 1] + 0.5).astype(int), 0, 239)
    same = c.object_ids[v, u] == src_ids
    checked = c.frame.depth_m[v, u] > 0  # visibility can only be judged where the other view has depth
    hidden = checked & ~same & (c.clean_depth_m[v, u] < 0.9 * c.clean_depth_m.max())
    assert np.mean(mapped.visible[checked & same]) > 0.95
    occluded_truth = hidden & (c.object_ids[v, u] != src_ids)
    assert occluded_truth.sum() > 20  # the orbit makes objects pass in front of others
    assert np.mean(~mapped.visible[occluded_truth]) > 0.6


def test_box_maps_around_the_object(views):
    """The mapped box bounds where the boxed surface really went (true depth, true poses)."""
    scene, (a, _, c) = views
    mapping = FrameMapping.between(a.frame, c.frame)
    for o in _objects(scene, a, c, min_px=400):
        ys, xs = np.nonzero(a.visible_mask(o))
        box = mapping.box(np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float32))
        z = a.clean_depth_m[ys, xs]
        cam = np.stack([(xs - K.cx) * z / K.fx, (ys - K.cy) * z / K.fy, z], 1)
        cam_c = c.frame.pose.inverse().transform(a.frame.pose.transform(cam))
        u, v = K.fx * cam_c[:, 0] / cam_c[:, 2] + K.cx, K.fy * cam_c[:, 1] / cam_c[:, 2] + K.cy
        truth = np.array([u.min(), v.min(), u.max(), v.max()], np.float32)
        inter = np.prod(np.clip(np.minimum(box[2:], truth[2:]) - np.maximum(box[:2], truth[:2]), 0, None))
        union = np.prod(box[2:] - box[:2]) + np.prod(truth[2:] - truth[:2]) - inter
        assert inter / union > 0.7, (o, box, truth)


def test_rotation_homography_without_depth_is_exact_for_a_head_turn():
    scene = make_scene(5)
    eye = scene.target + np.array([0.0, -2.0, 0.0])
    eye[2] = 1.3
    turned = scene.target + np.array([0.4, 0.0, 0.15])
    a, b = render_sequence(scene, (look_at_pose(eye, scene.target), look_at_pose(eye, turned)), K)
    no_depth_a, no_depth_b = replace(a.frame, depth=None), replace(b.frame, depth=None)
    mapping = FrameMapping.between(no_depth_a, no_depth_b)
    assert mapping.method is MappingMethod.ROTATION
    # ground truth: back-project with the true depth, project with the true poses
    ys, xs = np.mgrid[20:220:20, 20:300:20]
    xy = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    z = a.clean_depth_m[ys.ravel(), xs.ravel()]
    keep = z > 0
    xy, z = xy[keep], z[keep]
    cam = np.stack([(xy[:, 0] - K.cx) * z / K.fx, (xy[:, 1] - K.cy) * z / K.fy, z], 1)
    cam_b = b.frame.pose.inverse().transform(a.frame.pose.transform(cam))
    truth = np.stack([K.fx * cam_b[:, 0] / cam_b[:, 2] + K.cx, K.fy * cam_b[:, 1] / cam_b[:, 2] + K.cy], 1)
    mapped = mapping.points(xy)
    assert np.abs(mapped.xy - truth).max() < 0.05
    obj = next(o for o in scene.object_ids if a.visible_mask(o).sum() > 300 and b.visible_mask(o).sum() > 300)
    assert mask_iou(mapping.mask(a.visible_mask(obj)), b.visible_mask(obj)) > 0.9


def test_shift_from_phase_correlation_without_pose():
    scene = make_scene(2)
    (a,) = render_sequence(scene, (orbit_poses(scene, 1)[0],), K, DepthDegradation(), seed=3)
    dx, dy = 9, -5
    moved_rgb = np.roll(a.frame.rgb, (dy, dx), axis=(0, 1))
    src = replace(a.frame, pose=None)
    dst = replace(a.frame, frame_id=1, rgb=moved_rgb, pose=None)
    mapping = FrameMapping.between(src, dst)
    assert mapping.method is MappingMethod.SHIFT
    assert abs(mapping.shift[0] - dx) < 0.5 and abs(mapping.shift[1] - dy) < 0.5
    mapped = mapping.points(np.array([[100.0, 100.0]]))
    assert np.allclose(mapped.xy[0], [100 + dx, 100 + dy], atol=0.5)
    obj = max(scene.object_ids, key=lambda o: a.visible_mask(o).sum())
    truth = np.roll(a.visible_mask(obj), (dy, dx), axis=(0, 1))
    assert mask_iou(mapping.mask(a.visible_mask(obj)), truth) > 0.97


def test_identity_for_the_same_frame(views):
    _, (a, _, _) = views
    mapping = FrameMapping.between(a.frame, a.frame)
    assert mapping.method is MappingMethod.IDENTITY
    m = cv2.circle(np.zeros((240, 320), np.uint8), (100, 80), 20, 1, -1).astype(bool)
    assert np.array_equal(mapping.mask(m), m)
    assert (
        FrameMapping.between(a.frame, replace(a.frame, pose=Pose.identity())).method is MappingMethod.IDENTITY
    )


def test_large_masks_are_warped_on_a_coarser_grid_at_a_small_cost(views):
    """The floor (47k px) warped every pixel, and every 3rd pixel with its outline re-decided at full
    resolution: a ninth of the points for a few points of IoU (the trade-off max_warp_px sets)."""
    scene, (a, b, _) = views
    big = max(range(len(scene.objects)), key=lambda o: a.visible_mask(o).sum())
    mask = a.visible_mask(big)
    truth = b.visible_mask(big)
    full = FrameMapping.between(a.frame, b.frame, MappingConfig(max_warp_px=int(mask.sum()))).mask(mask)
    coarse = FrameMapping.between(a.frame, b.frame, MappingConfig(max_warp_px=int(mask.sum()) // 9)).mask(
        mask
    )
    assert mask_iou(full, truth) > 0.93
    assert mask_iou(coarse, full) > 0.88 and mask_iou(coarse, truth) > mask_iou(full, truth) - 0.1

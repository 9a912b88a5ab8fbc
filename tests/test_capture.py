"""ObjectCapture: TSDF fusion of a tracked object's masked depth into a mesh, with real Open3D."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import open3d as o3d
import pytest
import trimesh

from engine.capture.config import CaptureConfig, CaptureStateError, EmptyCaptureError, NoPoseError
from engine.capture.coverage import bin_directions
from engine.capture.mesh import MESH_FORMATS, CaptureMesh
from engine.capture.render import render_previews
from engine.capture.volume import CaptureState, ObjectCapture
from tests.capture_scenes import capture_sequence


@pytest.fixture(scope="module")
def orbit():
    return capture_sequence(seed=1, n=24)


@pytest.fixture(scope="module")
def captured(orbit):
    scene, oid, frames = orbit
    capture = ObjectCapture(CaptureConfig(progress_every=8))
    capture.start()
    progress = [capture.add(f.frame, f.visible_mask(oid)) for f in frames]
    return progress, capture.stop()


def _distance_to(mesh_vertices: np.ndarray, triangles: np.ndarray, points: np.ndarray) -> np.ndarray:
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(mesh_vertices.astype(np.float32)), o3d.core.Tensor(triangles.astype(np.uint32)))
    return scene.compute_distance(o3d.core.Tensor(points.astype(np.float32))).numpy()


def test_an_orbit_of_masked_frames_gives_the_object_mesh(orbit, captured) -> None:
    scene, oid, frames = orbit
    progress, mesh = captured
    obj = scene.objects[oid]
    assert progress[-1].frames_integrated == 24 and progress[-1].frames_skipped == 0
    # every captured vertex lies on the true object (sensor noise, 5 mm voxels): precision
    d = _distance_to(obj.vertices, obj.triangles, mesh.vertices)
    assert np.mean(d < 0.01) > 0.95, f"{np.mean(d < 0.01):.3f} of the vertices within 1 cm"
    # the visible part of the object is covered: true surface samples near the mesh (recall)
    samples, _ = trimesh.sample.sample_surface(trimesh.Trimesh(obj.vertices, obj.triangles), 4000, seed=0)
    samples = samples[samples[:, 2] > 0.01]  # the face on the floor is never seen
    recall = np.mean(_distance_to(mesh.vertices, mesh.triangles, samples) < 0.01)
    assert recall > 0.85, f"recall {recall:.3f}"
    # the centroid follows the observed surface; colours are the object's, not the floor's
    assert np.linalg.norm(progress[-1].centroid[:2] - obj.center[:2]) < 0.05
    assert np.abs(mesh.colors.mean(0) / 255.0 - obj.albedo).max() < 0.35
    # one connected component: the object alone
    legacy = mesh.to_open3d()
    assert len(legacy.cluster_connected_triangles()[2]) == 1


def test_progress_carries_coverage_and_a_bounded_preview_every_n_frames(orbit, captured) -> None:
    progress, _ = captured
    with_preview = [i for i, p in enumerate(progress) if p.preview is not None]
    assert with_preview == [7, 15, 23]
    preview = progress[-1].preview
    assert 0 < len(preview.points) <= CaptureConfig().preview_max_points and preview.colors.dtype == np.uint8
    cov = progress[-1].coverage
    assert cov.counts.sum() == 24 and len(cov.directions) == 20
    # one circle of cameras 33 degrees above the object: every bin below the horizon is missing
    below = cov.directions[:, 2] < -0.3
    assert not cov.seen[below].any() and cov.seen.sum() >= 4
    assert len(cov.missing()) == 20 - cov.seen.sum() and 0.2 < cov.fraction < 0.8
    small = ObjectCapture(CaptureConfig(preview_max_points=50, progress_every=1))
    small.start()
    _, oid, frames = orbit
    assert len(small.add(frames[0].frame, frames[0].visible_mask(oid)).preview.points) == 50


def test_view_sphere_bins_are_spread_evenly() -> None:
    for n in (12, 20):
        d = bin_directions(n)
        assert d.shape == (n, 3) and np.allclose(np.linalg.norm(d, axis=1), 1)
        nearest = np.sort(d @ d.T, axis=1)[:, -2]  # cosine to the nearest other bin
        assert np.ptp(nearest) < 1e-9


def test_lifecycle_errors_say_what_to_do(orbit) -> None:
    _, oid, frames = orbit
    capture = ObjectCapture()
    with pytest.raises(CaptureStateError, match="start it first"):
        capture.add(frames[0].frame, frames[0].visible_mask(oid))
    capture.start()
    with pytest.raises(CaptureStateError):
        capture.start()
    no_pose = replace(frames[0].frame, pose=None)
    with pytest.raises(NoPoseError, match="pose_source='odometry'"):
        capture.add(no_pose, frames[0].visible_mask(oid))
    empty = np.zeros(frames[0].object_ids.shape, bool)
    assert not capture.add(frames[0].frame, empty).integrated
    with pytest.raises(EmptyCaptureError, match="no frame was integrated"):
        capture.stop()
    assert capture.state is CaptureState.STOPPED
    other = ObjectCapture()
    other.start()
    assert other.cancel().state is CaptureState.CANCELLED
    with pytest.raises(CaptureStateError):
        other.stop()


def test_mesh_files_keep_vertices_and_colours(captured) -> None:
    _, mesh = captured
    for fmt in MESH_FORMATS:
        back = CaptureMesh.decode(mesh.encode(fmt), fmt)
        assert len(back.triangles) == len(mesh.triangles), fmt
        assert np.abs(back.colors.astype(int).mean(0) - mesh.colors.astype(int).mean(0)).max() < 2, fmt
        lo, hi = back.vertices.min(0), back.vertices.max(0)
        assert np.allclose(lo, mesh.vertices.min(0), atol=1e-4) and np.allclose(hi, mesh.vertices.max(0), atol=1e-4)


def test_optional_hole_filling_and_simplification(orbit) -> None:
    _, oid, frames = orbit
    capture = ObjectCapture(CaptureConfig(target_triangles=2000, fill_holes=0.05))
    capture.start()
    for f in frames[::2]:
        capture.add(f.frame, f.visible_mask(oid))
    mesh = capture.stop()
    assert 0 < len(mesh.triangles) <= 2000


def test_three_preview_images_show_the_object_from_different_sides(captured) -> None:
    _, mesh = captured
    images = render_previews(mesh, size=96)
    assert [i.name for i in images] == ["view0", "view1", "view2"]
    for image in images:
        assert image.rgb.shape == (96, 96, 3)
        covered = (image.rgb < 250).any(axis=2).mean()
        assert 0.05 < covered < 0.9  # the object, framed, on a white background
        decoded = cv2.imdecode(np.frombuffer(image.png(), np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == (96, 96, 3)
    assert np.abs(images[0].rgb.astype(int) - images[1].rgb.astype(int)).mean() > 1

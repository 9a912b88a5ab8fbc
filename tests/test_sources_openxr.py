"""OpenXR geometry against hand-computed cases, a world-point round trip through the gaze ray,
and the real pyopenxr start on a machine without a runtime (a clear message, no traceback)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from clients.sources.base import SourceError, SourceOptions
from clients.sources.openxr import OpenXRTracker
from clients.sources.registry import build_source
from clients.sources.xr_geometry import (
    HeadCameraCalibration,
    camera_pose,
    gaze_ray_to_pixel,
    matrix_to_quaternion,
    posef_matrix,
    protocol_camera_pose,
    quaternion_to_matrix,
    read_calibration,
)
from engine.core import CameraIntrinsics

K = CameraIntrinsics(640, 480, 500.0, 500.0, 320.0, 240.0)
S = math.sqrt(0.5)


def yaw(deg: float) -> np.ndarray:
    """Quaternion (x, y, z, w) of a rotation by deg about OpenXR's +Y (up): positive turns left."""
    h = math.radians(deg) / 2
    return np.array([0.0, math.sin(h), 0.0, math.cos(h)])


def test_quaternions_hand_computed() -> None:
    assert np.allclose(quaternion_to_matrix([0, 0, 0, 1]), np.eye(3))
    # 90 degrees about +Y: x -> -z, z -> x
    assert np.allclose(quaternion_to_matrix([0, S, 0, S]), [[0, 0, 1], [0, 1, 0], [-1, 0, 0]])
    # 90 degrees about +X: y -> z, z -> -y
    assert np.allclose(quaternion_to_matrix([S, 0, 0, S]), [[1, 0, 0], [0, 0, -1], [0, 1, 0]])
    # 180 degrees about +Z; not normalised on input
    assert np.allclose(quaternion_to_matrix([0, 0, 2, 0]), np.diag([-1, -1, 1]))
    rng = np.random.default_rng(0)
    for q in rng.normal(size=(50, 4)):
        q = q / np.linalg.norm(q)
        q = q if q[3] >= 0 else -q
        assert np.allclose(matrix_to_quaternion(quaternion_to_matrix(q)), q)


def test_openxr_axes_become_opencv_axes() -> None:
    pose = protocol_camera_pose(np.eye(4))  # OpenXR view at the origin, looking down -Z
    assert np.allclose(pose.matrix, np.diag([1, -1, -1, 1]))
    cam = pose.inverse().transform(np.array([[0.0, 0.0, -1.0], [0.0, 0.5, -1.0], [0.3, 0.0, -1.0]]))
    assert np.allclose(cam, [[0, 0, 1], [0, -0.5, 1], [0.3, 0, 1]])  # forward -> +z, up -> -y, right -> +x
    # Head yawed 90 degrees left and lifted 1.6 m: a point 2 m to the world's -X is straight ahead.
    pose = protocol_camera_pose(posef_matrix(yaw(90), np.array([0.0, 1.6, 0.0])))
    assert np.allclose(pose.inverse().transform(np.array([[-2.0, 1.6, 0.0]])), [[0, 0, 2]])
    assert np.allclose(pose.translation, [0, 1.6, 0])


def test_gaze_ray_to_pixel_hand_computed() -> None:
    pose = protocol_camera_pose(np.eye(4))
    eye = np.zeros(3)
    assert gaze_ray_to_pixel(eye, [0, 0, -1], pose, K) == pytest.approx((320.0, 240.0))
    # 0.2 m up at 1 m ahead: the image's y grows downward, so v = cy - fy * 0.2
    assert gaze_ray_to_pixel(eye, [0, 0.2, -1], pose, K) == pytest.approx((320.0, 240.0 - 100.0))
    assert gaze_ray_to_pixel(eye, [0.2, 0, -1], pose, K) == pytest.approx((320.0 + 100.0, 240.0))
    assert gaze_ray_to_pixel(eye, [0, 0, 1], pose, K) is None  # looking backwards
    assert gaze_ray_to_pixel(eye, [5, 0, -1], pose, K) is None  # outside the image
    # Eye 10 cm left of the camera, looking straight ahead: parallax depends on the distance.
    left = np.array([-0.1, 0.0, 0.0])
    wall = np.full((480, 640), 1.0, np.float32)  # a wall 1 m away: x = -0.1 m -> u = 320 - 50
    assert gaze_ray_to_pixel(left, [0, 0, -1], pose, K, wall) == pytest.approx((270.0, 240.0), abs=1e-6)
    far = np.full((480, 640), 4.0, np.float32)
    assert gaze_ray_to_pixel(left, [0, 0, -1], pose, K, far) == pytest.approx((307.5, 240.0), abs=1e-6)
    # No depth: the fallback distance (2 m)
    assert gaze_ray_to_pixel(left, [0, 0, -1], pose, K) == pytest.approx((295.0, 240.0))


def test_calibration_file(tmp_path: Path) -> None:
    path = tmp_path / "calib.json"
    path.write_text(
        json.dumps(
            {"head_from_camera": {"orientation_xyzw": [0, 0, 0, 1], "position_m": [0.0, -0.05, -0.08]}}
        )
    )
    calib = read_calibration(path)
    # Camera 5 cm below and 8 cm ahead of the head origin: head at the origin -> camera there.
    assert np.allclose(camera_pose(np.eye(4), calib).translation, [0, -0.05, -0.08])
    path.write_text(json.dumps({"head_from_camera": {"matrix": np.eye(4).ravel().tolist()}}))
    assert np.allclose(read_calibration(path).head_from_camera, np.eye(4))
    path.write_text(json.dumps({"head_from_camera": {"matrix": (2 * np.eye(4)).ravel().tolist()}}))
    with pytest.raises(SourceError, match="not a camera-to-head calibration"):
        read_calibration(path)
    with pytest.raises(SourceError, match="not found"):
        read_calibration(tmp_path / "missing.json")


def test_round_trip_world_point_to_gaze_pixel() -> None:
    """A known world point seen by the camera projects to the pixel the gaze ray through it hits."""
    rng = np.random.default_rng(3)
    calib = HeadCameraCalibration(
        posef_matrix(np.array([0.05, -0.03, 0.01, 1.0]), np.array([0.03, -0.06, -0.09]))
    )
    for _ in range(20):
        axis = rng.normal(size=3)
        angle = rng.uniform(-0.6, 0.6)
        q = np.concatenate([axis / np.linalg.norm(axis) * math.sin(angle / 2), [math.cos(angle / 2)]])
        head = posef_matrix(q, rng.uniform(-1, 1, 3) + [0, 1.6, 0])
        pose = camera_pose(head, calib)
        # A point seen by the camera, 0.6 to 3 m away, anywhere in the image
        u, v, z = rng.uniform(40, 600), rng.uniform(40, 440), rng.uniform(0.6, 3.0)
        point_cam = np.array([(u - K.cx) * z / K.fx, (v - K.cy) * z / K.fy, z])
        world = pose.transform(point_cam[None])[0]
        # The eye (head origin + small offset, as an eye tracker reports) looks at it
        eye = head[:3, :3] @ np.array([0.0, 0.0, 0.01]) + head[:3, 3]
        depth = np.full((480, 640), z, np.float32)  # a fronto-parallel surface through the point
        pixel = gaze_ray_to_pixel(eye, world - eye, pose, K, depth)
        assert pixel == pytest.approx((u, v), abs=1e-3)


def test_openxr_without_runtime_fails_with_install_hint() -> None:
    """The real pyopenxr loader on a machine without a runtime (as CI): a SourceError naming it."""
    import xr

    try:
        xr.enumerate_instance_extension_properties()
    except xr.exception.RuntimeUnavailableError:
        pass
    else:
        pytest.skip("an OpenXR runtime is installed here")
    with pytest.raises(SourceError, match=r"no OpenXR runtime.*Monado"):
        OpenXRTracker().start()
    with pytest.raises(SourceError, match=r"no OpenXR runtime"):  # before any camera is touched
        build_source("openxr+realsense", SourceOptions()).start()

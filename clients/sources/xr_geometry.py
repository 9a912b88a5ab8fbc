"""Geometry between an OpenXR headset and the protocol's camera: poses, axes, gaze ray -> pixel.

Conventions:
- OpenXR (spec 2.16 "Coordinate System"): right-handed, +X right, +Y up, -Z forward. An
  `XrPosef` (orientation quaternion x, y, z, w; position in metres) located in a reference
  space maps points from the posed frame into that space.
- The protocol (docs/protocol.md, `pose`): camera-to-world 4x4 with OpenCV camera axes,
  +x right, +y down, +z forward. The protocol does not fix the world's axes; poses from a
  headset use the chosen OpenXR reference space (LOCAL or STAGE) as the world, so world +Y is up.

The only place OpenXR axes become protocol axes is `protocol_camera_pose`. Everything before
it (head pose, camera-to-head calibration, gaze rays) stays in OpenXR axes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clients.sources.base import SourceError
from engine.core import CameraIntrinsics, Pose

XR_VIEW_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])
"""Maps OpenCV camera coordinates to OpenXR view coordinates (and back: it is its own inverse)."""

GAZE_FALLBACK_M = 2.0
"""Distance assumed along the gaze ray when the depth image has no surface on it."""


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """(3, 3) rotation of the unit quaternion q = (x, y, z, w) (OpenXR's XrQuaternionf order)."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(r: np.ndarray) -> np.ndarray:
    """(x, y, z, w) with w >= 0 of a (3, 3) rotation matrix (Shepperd's method)."""
    r = np.asarray(r, dtype=np.float64)
    t = np.trace(r)
    if t > 0:
        s = 2.0 * np.sqrt(1.0 + t)
        q = np.array([(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, s / 4])
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k])
        q = np.zeros(4)
        q[i] = s / 4
        q[j] = (r[j, i] + r[i, j]) / s
        q[k] = (r[k, i] + r[i, k]) / s
        q[3] = (r[k, j] - r[j, k]) / s
    return q if q[3] >= 0 else -q


def posef_matrix(orientation_xyzw: np.ndarray, position: np.ndarray) -> np.ndarray:
    """(4, 4) transform of an OpenXR pose: points of the posed frame -> the space it was located in."""
    m = np.eye(4)
    m[:3, :3] = quaternion_to_matrix(orientation_xyzw)
    m[:3, 3] = position
    return m


def protocol_camera_pose(space_from_xr_camera: np.ndarray) -> Pose:
    """THE conversion from OpenXR to the protocol: a camera's pose in an OpenXR reference space
    (camera frame in OpenXR axes: +X right, +Y up, -Z forward) -> the protocol's camera-to-world
    pose (OpenCV axes: +x right, +y down, +z forward), world = that reference space.

    Flipping y and z of the camera frame is a rotation by 180 degrees about x, so the result is
    still a proper rigid transform.
    """
    return Pose(np.asarray(space_from_xr_camera, dtype=np.float64) @ XR_VIEW_TO_CV)


@dataclass(frozen=True, eq=False)
class HeadCameraCalibration:
    """Where the streamed camera sits on the headset.

    head_from_camera: (4, 4) maps points of the camera frame (OpenXR axes: -Z along the optical
    axis, +Y up in the image) into the OpenXR VIEW space (the head). Identity: the camera at the
    head origin, looking where the head looks.
    """

    head_from_camera: np.ndarray

    @classmethod
    def identity(cls) -> HeadCameraCalibration:
        return cls(np.eye(4))


def read_calibration(path: Path) -> HeadCameraCalibration:
    """Read a camera-to-head calibration JSON file.

    Format (metres; OpenXR axes for both frames, as OpenXR reports poses):
        {"head_from_camera": {"orientation_xyzw": [x, y, z, w], "position_m": [x, y, z]}}
    or {"head_from_camera": {"matrix": [16 numbers, row-major]}}.
    """
    try:
        data = json.loads(Path(path).read_text())
        entry = data["head_from_camera"]
        if "matrix" in entry:
            m = np.asarray(entry["matrix"], dtype=np.float64).reshape(4, 4)
        else:
            m = posef_matrix(
                np.asarray(entry["orientation_xyzw"], float), np.asarray(entry["position_m"], float)
            )
        Pose(m)  # checks it is a rigid transform
    except FileNotFoundError:
        raise SourceError(
            f"calibration file {path} not found (see README, Devices: camera-to-head calibration)"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise SourceError(
            f"{path}: not a camera-to-head calibration ({exc}); expected "
            '{"head_from_camera": {"orientation_xyzw": [x, y, z, w], "position_m": [x, y, z]}}'
        ) from None
    return HeadCameraCalibration(m)


def camera_pose(space_from_head: np.ndarray, calibration: HeadCameraCalibration) -> Pose:
    """The protocol pose of the streamed camera, given the head pose (OpenXR VIEW located in the
    reference space, OpenXR axes) and the camera-to-head calibration."""
    return protocol_camera_pose(np.asarray(space_from_head) @ calibration.head_from_camera)


def gaze_ray_to_pixel(
    origin: np.ndarray,
    direction: np.ndarray,
    pose: Pose,
    intrinsics: CameraIntrinsics,
    depth_m: np.ndarray | None = None,
    fallback_m: float = GAZE_FALLBACK_M,
    near_m: float = 0.1,
    far_m: float = 10.0,
    samples: int = 256,
) -> tuple[float, float] | None:
    """The pixel of the camera image where a gaze ray meets the scene.

    The eyes are not where the camera is, so the pixel depends on how far the user looks: the
    ray (world coordinates, as OpenXR locates the gaze pose: origin, and its -Z axis as
    direction) is marched from near_m to far_m; the first point that is at or behind the depth
    image's surface is the hit (refined linearly between the two samples around the crossing).
    Without depth, or when no surface is crossed, the point fallback_m along the ray is used.

    Args:
        origin, direction: (3,) world coordinates (the protocol's world = the reference space).
        pose: the camera's protocol pose (camera-to-world, OpenCV axes).
        depth_m: (H, W) float metres registered to the image (0 / NaN: no measurement), or None.

    Returns:
        (x, y) pixel, or None when the point is behind the camera or outside the image.
    """
    direction = np.asarray(direction, np.float64) / np.linalg.norm(direction)
    cam_from_world = pose.inverse().matrix
    o = cam_from_world[:3, :3] @ np.asarray(origin, np.float64) + cam_from_world[:3, 3]
    d = cam_from_world[:3, :3] @ direction
    k = intrinsics
    point = None
    if depth_m is not None:
        t = np.geomspace(near_m, far_m, samples)
        pts = o[None] + t[:, None] * d[None]
        z = pts[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = k.fx * pts[:, 0] / z + k.cx
            v = k.fy * pts[:, 1] / z + k.cy
        inside = (z > 0) & (u >= 0) & (u <= k.width - 1) & (v >= 0) & (v <= k.height - 1)
        surface = np.full(samples, np.nan)
        idx = np.flatnonzero(inside)
        surface[idx] = depth_m[np.round(v[idx]).astype(int), np.round(u[idx]).astype(int)]
        gap = z - surface  # > 0: the ray point is behind the measured surface
        valid = np.isfinite(gap) & (surface > 0)
        crossing = np.flatnonzero(valid & (gap >= 0))
        if crossing.size:
            i = int(crossing[0])
            if i > 0 and valid[i - 1] and gap[i - 1] < 0:
                a = gap[i - 1] / (gap[i - 1] - gap[i])  # linear refinement between the two samples
                point = pts[i - 1] + a * (pts[i] - pts[i - 1])
            else:
                point = pts[i]
    if point is None:
        point = o + fallback_m * d
    if point[2] <= 1e-6:
        return None
    x = k.fx * point[0] / point[2] + k.cx
    y = k.fy * point[1] / point[2] + k.cy
    if not (0 <= x < k.width and 0 <= y < k.height):
        return None
    return float(x), float(y)

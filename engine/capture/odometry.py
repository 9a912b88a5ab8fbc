"""Camera poses from RGB-D odometry, for clients that send frames without a pose.

Why a fallback and not the default: a headset or a tracked camera knows its pose better than
frame-to-frame odometry, which drifts (a few mm per frame, more where the view has little
structure). But a plain RGB-D camera has no tracking, and capture needs poses: Open3D's
multi-scale RGB-D odometry chains frame-to-frame motion into camera-to-world poses. The default
method is photometric ("Intensity"): on livingroom1_micro (every 2nd frame) it stayed within
4 mm of the reference trajectory over 14 steps where "Hybrid" drifted 5.5 cm, and on synthetic
orbits around a tabletop object the geometric term slid along the planar floor and walls
(several cm after 8 steps) while Intensity stayed within 1-8 mm. Cost: bench/results/capture.json
("odometry_ms", per 640x480 frame; on a shared 2-core CPU it is the capture's bottleneck).

Not thread-safe: the capture handler calls ``next`` from one job at a time.
"""

from __future__ import annotations

import numpy as np
import open3d as o3d
import open3d.core as o3c

from engine.core import Pose, RGBDFrame


class OdometryPoses:
    """Chains odometry: the first frame's pose is its own (or identity), later ones follow it."""

    def __init__(self, depth_max: float = 3.0, device: o3c.Device | None = None, method: str = "Intensity") -> None:
        self.depth_max = depth_max
        self._method = getattr(o3d.t.pipelines.odometry.Method, method)
        self.device = device or o3c.Device("CPU:0")
        self._previous: o3d.t.geometry.RGBDImage | None = None
        self._pose = np.eye(4)
        self._criteria = [
            o3d.t.pipelines.odometry.OdometryConvergenceCriteria(n) for n in (20, 10, 5)
        ]

    def next(self, frame: RGBDFrame) -> Pose:
        """Camera-to-world pose of `frame` (the previous frame's pose times the odometry step)."""
        if frame.depth_m is None:
            raise ValueError(f"frame {frame.frame_id} has no depth: RGB-D odometry needs depth")
        rgbd = o3d.t.geometry.RGBDImage(
            o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(frame.rgb.astype(np.float32) / 255.0))),
            o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(frame.depth_m))),
        ).to(self.device)
        if self._previous is None:
            self._pose = frame.pose.matrix.copy() if frame.pose is not None else np.eye(4)
        else:
            k = frame.intrinsics
            result = o3d.t.pipelines.odometry.rgbd_odometry_multi_scale(
                rgbd,
                self._previous,
                o3c.Tensor(k.matrix, o3c.float64),
                o3c.Tensor(np.eye(4), o3c.float64),
                1.0,
                self.depth_max,
                self._criteria,
                self._method,
            )
            step = result.transformation.cpu().numpy()  # current camera -> previous camera
            self._pose = self._pose @ step
        self._previous = rgbd
        u, _, vt = np.linalg.svd(self._pose[:3, :3])  # keep the rotation orthonormal as steps accumulate
        self._pose[:3, :3] = u @ vt
        return Pose(self._pose.copy())

"""RGB-D frames with their camera model and pose."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


class FrameError(ValueError):
    """A frame is internally inconsistent (shapes, dtypes, camera model)."""


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole camera model of the colour image (depth is registered to colour).

    Pixel (u, v) with depth z (metres) back-projects to x = (u - cx) * z / fx, y = (v - cy) * z / fy.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        values = (self.fx, self.fy, self.cx, self.cy)
        if self.width <= 0 or self.height <= 0:
            raise FrameError(f"intrinsics size must be positive, got {self.width}x{self.height}")
        if not all(np.isfinite(v) for v in values) or self.fx <= 0 or self.fy <= 0:
            raise FrameError(f"intrinsics need finite fx, fy > 0 and finite cx, cy, got {values}")

    @property
    def matrix(self) -> np.ndarray:
        """3x3 float64 K matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @classmethod
    def from_matrix(cls, k: np.ndarray, width: int, height: int) -> CameraIntrinsics:
        k = np.asarray(k, dtype=np.float64).reshape(3, 3)
        return cls(width, height, float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]))


@dataclass(frozen=True, eq=False)
class Pose:
    """Rigid camera-to-world transform: world_point = R @ camera_point + t.

    Camera axes follow the OpenCV convention (x right, y down, z forward).
    """

    matrix: np.ndarray  # (4, 4) float64

    def __post_init__(self) -> None:
        m = np.asarray(self.matrix, dtype=np.float64)
        if m.shape != (4, 4) or not np.all(np.isfinite(m)):
            raise FrameError(f"pose must be a finite 4x4 matrix, got shape {m.shape}")
        if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
            raise FrameError("pose last row must be [0, 0, 0, 1]")
        r = m[:3, :3]
        if not np.allclose(r @ r.T, np.eye(3), atol=1e-3):
            raise FrameError("pose rotation is not orthonormal")
        object.__setattr__(self, "matrix", m)

    @classmethod
    def identity(cls) -> Pose:
        return cls(np.eye(4))

    @property
    def rotation(self) -> np.ndarray:
        return self.matrix[:3, :3]

    @property
    def translation(self) -> np.ndarray:
        return self.matrix[:3, 3]

    def transform(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 3) camera-frame points to world coordinates."""
        return points @ self.rotation.T + self.translation

    def inverse(self) -> Pose:
        inv = np.eye(4)
        inv[:3, :3] = self.rotation.T
        inv[:3, 3] = -self.rotation.T @ self.translation
        return Pose(inv)


@dataclass(frozen=True, eq=False)
class RGBDFrame:
    """One registered colour + depth capture.

    Attributes:
        frame_id: client-assigned, strictly increasing within a session.
        rgb: (H, W, 3) uint8, RGB order.
        depth: (H, W) uint16 raw sensor units or float32 metres, or None for colour-only
            clients. 0, NaN and inf mean "no measurement".
        depth_scale: raw depth units per metre (1000 for millimetres; 1 for float metres).
        intrinsics: colour camera model; depth is registered to it.
        pose: camera-to-world pose, or None when the client has no tracking.
        capture_ts: capture time in seconds since the epoch, on the client's clock.
    """

    frame_id: int
    rgb: np.ndarray
    depth: np.ndarray | None
    intrinsics: CameraIntrinsics
    depth_scale: float = 1000.0
    pose: Pose | None = None
    capture_ts: float = 0.0

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise FrameError(f"rgb must be (H, W, 3) uint8, got {self.rgb.shape} {self.rgb.dtype}")
        h, w = self.rgb.shape[:2]
        if (self.intrinsics.width, self.intrinsics.height) != (w, h):
            raise FrameError(
                f"intrinsics are for {self.intrinsics.width}x{self.intrinsics.height} "
                f"but the colour image is {w}x{h}"
            )
        if self.depth is not None:
            if self.depth.shape != (h, w):
                raise FrameError(f"depth is {self.depth.shape[::-1]} but colour is {w}x{h}: register depth to colour")
            if self.depth.dtype not in (np.uint16, np.float32):
                raise FrameError(f"depth must be uint16 or float32, got {self.depth.dtype}")
            if not (np.isfinite(self.depth_scale) and self.depth_scale > 0):
                raise FrameError(f"depth_scale must be a positive number, got {self.depth_scale}")

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.rgb.shape[0], self.rgb.shape[1]

    @cached_property
    def depth_m(self) -> np.ndarray | None:
        """(H, W) float32 depth in metres with every invalid measurement (0, NaN, inf, < 0) set to 0."""
        if self.depth is None:
            return None
        with np.errstate(invalid="ignore"):
            d = self.depth.astype(np.float32) / np.float32(self.depth_scale)
            d[~np.isfinite(d) | (d < 0)] = 0.0
        return d

    def has_valid_depth(self) -> bool:
        return self.depth_m is not None and bool(np.any(self.depth_m > 0))

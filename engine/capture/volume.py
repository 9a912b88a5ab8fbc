"""ObjectCapture: fuse a tracked object's masked depth + colour into a TSDF, one frame at a time.

Why a TSDF (Open3D's tensor VoxelBlockGrid): it averages depth noise over many views, fills the
gaps one view leaves, and gives a watertight-ish surface by marching cubes; the voxel block hash
keeps memory proportional to the object's surface, not to a bounding volume. Only the object's
pixels are integrated (its tracked mask filters the depth), so the grid holds the object alone.

Lifecycle: ``start()`` -> ``add(frame, mask, pose)`` per tracked frame -> ``stop()`` (the mesh) or
``cancel()``; ``status()`` at any time. The object is not thread-safe: one call at a time. The
session's handler (engine/capture/handler.py) runs ``add`` and ``stop`` on its worker pool and
awaits each before the next, so the grid is owned by whichever job is running; everything the
event loop needs comes back as the returned (frozen) values.

Per frame, O(mask bounding box): erode the mask, drop flying pixels at depth edges, crop depth
and colour to the mask's bounding box (the intrinsics shift with it), then Open3D allocates the
blocks the masked depth touches and integrates them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

import cv2
import numpy as np
import open3d as o3d
import open3d.core as o3c

from engine.capture.config import (
    CaptureConfig,
    CaptureStateError,
    EmptyCaptureError,
    NoPoseError,
)
from engine.capture.coverage import Coverage, view_bin
from engine.capture.mesh import CaptureMesh, postprocess
from engine.core import CameraIntrinsics, Pose, RGBDFrame
from engine.voxel_keys import voxel_keys


class CaptureState(StrEnum):
    IDLE = "idle"  # built, not started
    CAPTURING = "capturing"
    STOPPED = "stopped"  # mesh extracted
    CANCELLED = "cancelled"


@dataclass(frozen=True, eq=False)
class Preview:
    """Down-sampled points of the object so far (world frame).

    points: (N, 3) float32 metres; colors: (N, 3) uint8 RGB; N <= CaptureConfig.preview_max_points.
    """

    points: np.ndarray
    colors: np.ndarray


@dataclass(frozen=True, eq=False)
class CaptureProgress:
    """Where a capture stands after a call.

    Attributes:
        state: see CaptureState.
        frames_integrated: frames fused into the TSDF.
        frames_skipped: frames given but not fused (no depth under the mask, empty mask).
        integrated: whether the frame of this call was fused.
        centroid: (3,) float64 world centroid of the object's observed surface, None before
            the first integrated frame.
        coverage: views per direction around the centroid.
        preview: present every ``progress_every`` integrated frames (and on request), else None.
        integrate_ms: wall time of this call's integration (0 when skipped).
        blocks: voxel blocks allocated (memory grows with them).
    """

    state: CaptureState
    frames_integrated: int
    frames_skipped: int
    integrated: bool
    centroid: np.ndarray | None
    coverage: Coverage
    preview: Preview | None = None
    integrate_ms: float = 0.0
    blocks: int = 0


@dataclass(frozen=True, eq=False)
class _Totals:
    """Running sums behind the centroid and the coverage (replaced, never mutated)."""

    point_sum: np.ndarray = field(default_factory=lambda: np.zeros(3))
    point_count: int = 0
    camera_centers: tuple[tuple[float, float, float], ...] = ()
    integrated: int = 0
    skipped: int = 0


_PREVIEW_MAX_VOXELS = 200_000  # ~2 m^2 of surface at 1 cm: more than any object of a capture


@dataclass(frozen=True, eq=False)
class _PreviewCloud:
    """The observed object points, one per preview voxel (latest observation wins).

    Why not the TSDF's own points: extracting them scans every block (~0.4 s for a 60 cm object
    on a CPU) while this costs a sort of the frame's sampled points (~1 ms).
    keys: (M,) int64 sorted voxel keys; points: (M, 3) float32; colors: (M, 3) uint8.
    """

    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    colors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.uint8))

    def merged(self, points: np.ndarray, colors: np.ndarray, voxel: float) -> _PreviewCloud:
        if len(points) == 0 or len(self.keys) >= _PREVIEW_MAX_VOXELS:
            return self
        keys = voxel_keys(points, voxel)
        all_keys = np.concatenate([keys, self.keys])  # new first: np.unique keeps the first index
        uniq, first = np.unique(all_keys, return_index=True)
        pts = np.concatenate([points.astype(np.float32), self.points])[first]
        cols = np.concatenate([colors, self.colors])[first]
        return _PreviewCloud(uniq, pts, cols)


def open3d_device(name: str) -> o3c.Device:
    """The Open3D device for a config value ("auto": CUDA:0 when usable, else CPU:0)."""
    if name == "auto":
        return o3c.Device("CUDA:0" if o3c.cuda.is_available() else "CPU:0")
    return o3c.Device(name)


def masked_depth(frame: RGBDFrame, mask: np.ndarray, config: CaptureConfig) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """The object's depth: (crop (h, w) float32 metres, 0 elsewhere; bbox (x0, y0, x1, y1)), or None if empty.

    The mask is eroded by ``mask_erode_px`` (kept as is when erosion would empty it) and pixels
    on a depth edge (a 4-neighbour nearer or farther by more than ``depth_edge_ratio`` * depth) are
    dropped: flying pixels and mask bleed sit exactly there.
    """
    if frame.depth is None:
        return None
    mask = np.asarray(mask, bool)
    h, w = frame.size
    if mask.shape != (h, w):
        raise ValueError(f"mask is {mask.shape[::-1]} but the frame is {w}x{h}: give the mask in the frame's pixels")
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    pad = config.mask_erode_px + 1
    y0, y1 = max(rows[0] - pad, 0), min(rows[-1] + 1 + pad, h)
    x0, x1 = max(cols[0] - pad, 0), min(cols[-1] + 1 + pad, w)
    m = mask[y0:y1, x0:x1].astype(np.uint8)
    if config.mask_erode_px > 0:
        eroded = cv2.erode(m, np.ones((3, 3), np.uint8), iterations=config.mask_erode_px)
        if eroded.any():
            m = eroded
    with np.errstate(invalid="ignore"):  # depth in metres on the crop only (O(mask box), not O(frame))
        d = frame.depth[y0:y1, x0:x1].astype(np.float32) / np.float32(frame.depth_scale)
        keep = (m > 0) & np.isfinite(d) & (d > 0) & (d < config.depth_max)
    d = np.where(keep, d, np.float32(0))
    if config.depth_edge_ratio > 0:
        p = np.pad(d, 1, mode="edge")
        limit = config.depth_edge_ratio * d
        for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
            nb = p[dy : dy + d.shape[0], dx : dx + d.shape[1]]
            keep &= np.abs(nb - d) <= limit  # also drops pixels next to a hole (nb = 0): edge of the data
    if np.count_nonzero(keep) < config.min_valid_pixels:
        return None
    return np.where(keep, d, np.float32(0)).astype(np.float32), (int(x0), int(y0), int(x1), int(y1))


class ObjectCapture:
    """One object's TSDF capture. See the module docstring for the lifecycle and threading."""

    def __init__(self, config: CaptureConfig | None = None) -> None:
        self.config = config or CaptureConfig()
        self.device = open3d_device(self.config.device)
        self._grid: o3d.t.geometry.VoxelBlockGrid | None = None
        self._state = CaptureState.IDLE
        self._totals = _Totals()
        self._coverage = Coverage.empty(self.config.coverage_bins)
        self._cloud = _PreviewCloud()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> CaptureProgress:
        if self._state is not CaptureState.IDLE:
            raise CaptureStateError(f"capture is {self._state}; start a new capture for another object")
        c = self.config
        self._grid = o3d.t.geometry.VoxelBlockGrid(
            attr_names=("tsdf", "weight", "color"),
            attr_dtypes=(o3c.float32, o3c.float32, o3c.float32),
            attr_channels=((1), (1), (3)),
            voxel_size=c.voxel_size,
            block_resolution=c.block_resolution,
            block_count=c.block_count,
            device=self.device,
        )
        self._state = CaptureState.CAPTURING
        return self.status()

    def add(self, frame: RGBDFrame, mask: np.ndarray, pose: Pose | None = None, want_preview: bool | None = None) -> CaptureProgress:
        """Fuse the object's pixels of one frame.

        Args:
            frame: the RGB-D frame (depth registered to colour).
            mask: (H, W) bool, the tracked object's mask in this frame's pixels.
            pose: camera-to-world pose of this frame; None uses ``frame.pose``.
            want_preview: force (True) or suppress (False) the preview; None: every
                ``progress_every`` integrated frames.

        Raises:
            NoPoseError: neither ``pose`` nor ``frame.pose`` is given.
            CaptureStateError: the capture is not running.
        """
        if self._state is not CaptureState.CAPTURING or self._grid is None:
            raise CaptureStateError(f"capture is {self._state}, not capturing: start it first")
        pose = pose if pose is not None else frame.pose
        if pose is None:
            raise NoPoseError(
                f"frame {frame.frame_id} has no camera pose; capture fuses views in a world frame: send the "
                "headset/camera pose with every frame, or start the capture with pose_source='odometry'"
            )
        t0 = time.perf_counter()
        found = masked_depth(frame, mask, self.config)
        if found is None:
            self._totals = _replace(self._totals, skipped=self._totals.skipped + 1)
            return self.status(integrated=False)
        depth, (x0, y0, x1, y1) = found
        if not self._integrate(depth, np.ascontiguousarray(frame.rgb[y0:y1, x0:x1]), frame.intrinsics, x0, y0, pose):
            self._totals = _replace(self._totals, skipped=self._totals.skipped + 1)
            return self.status(integrated=False)
        points, colors = _sample_points(depth, frame.rgb, frame.intrinsics, x0, y0, pose)
        self._cloud = self._cloud.merged(points, colors, self.config.preview_voxel)
        t = self._totals
        centers = (*t.camera_centers, tuple(float(v) for v in pose.translation))
        self._totals = _Totals(t.point_sum + points.sum(axis=0), t.point_count + len(points), centers, t.integrated + 1, t.skipped)
        centroid = self._totals.point_sum / self._totals.point_count
        if self._totals.integrated % self.config.progress_every == 1 or self.config.progress_every == 1:
            self._coverage = self._coverage.recount(centroid, np.asarray(centers))
        else:
            self._coverage = self._coverage.with_view(view_bin(self._coverage.directions, centroid, pose.translation))
        ms = (time.perf_counter() - t0) * 1e3
        due = self._totals.integrated % self.config.progress_every == 0
        preview = self.preview() if (want_preview if want_preview is not None else due) else None
        return self.status(integrated=True, preview=preview, integrate_ms=ms)

    def stop(self) -> CaptureMesh:
        """Marching cubes, the object's component, optional holes/simplification. Ends the capture.

        Raises:
            EmptyCaptureError: no frame was integrated (or nothing passed the weight threshold).
        """
        if self._state is not CaptureState.CAPTURING or self._grid is None:
            raise CaptureStateError(f"capture is {self._state}, not capturing: nothing to stop")
        grid, self._grid = self._grid, None
        self._state = CaptureState.STOPPED
        if self._totals.integrated == 0:
            raise EmptyCaptureError(
                "no frame was integrated: the tracked object had no valid depth under its mask; "
                "move closer or check the depth stream"
            )
        legacy = grid.extract_triangle_mesh(weight_threshold=self.config.weight_threshold).to_legacy()
        return postprocess(legacy, self.config)

    def cancel(self) -> CaptureProgress:
        """Drop the grid; nothing is kept."""
        self._grid = None
        self._state = CaptureState.CANCELLED
        return self.status()

    def status(self, integrated: bool = False, preview: Preview | None = None, integrate_ms: float = 0.0) -> CaptureProgress:
        t = self._totals
        centroid = t.point_sum / t.point_count if t.point_count else None
        blocks = int(self._grid.hashmap().size()) if self._grid is not None else 0
        return CaptureProgress(
            self._state, t.integrated, t.skipped, integrated, centroid, self._coverage, preview, integrate_ms, blocks
        )

    @property
    def state(self) -> CaptureState:
        return self._state

    # -- work ----------------------------------------------------------------------------------

    def preview(self) -> Preview:
        """The object so far: observed points, one per ``preview_voxel``, at most preview_max_points
        (an even stride over the voxels beyond it, so the whole object stays visible)."""
        points, colors = self._cloud.points, self._cloud.colors
        if len(points) > self.config.preview_max_points:
            keep = np.linspace(0, len(points) - 1, self.config.preview_max_points).astype(np.int64)
            points, colors = points[keep], colors[keep]
        return Preview(points.copy(), colors.copy())

    def _integrate(
        self, depth: np.ndarray, rgb: np.ndarray, k: CameraIntrinsics, x0: int, y0: int, pose: Pose
    ) -> bool:
        """Integrate one masked depth crop; False when its pixels touch no voxel block (too sparse)."""
        assert self._grid is not None
        c = self.config
        intrinsic = o3c.Tensor(
            [[k.fx, 0.0, k.cx - x0], [0.0, k.fy, k.cy - y0], [0.0, 0.0, 1.0]], o3c.float64
        )
        extrinsic = o3c.Tensor(pose.inverse().matrix, o3c.float64)
        depth_img = o3d.t.geometry.Image(o3c.Tensor(depth)).to(self.device)
        color_img = o3d.t.geometry.Image(o3c.Tensor(rgb.astype(np.float32) / 255.0)).to(self.device)
        try:
            blocks = self._grid.compute_unique_block_coordinates(
                depth_img, intrinsic, extrinsic, 1.0, c.depth_max, float(c.trunc_voxels)
            )
        except RuntimeError as exc:  # Open3D samples the depth with a stride: a sliver may touch nothing
            if "No block is touched" in str(exc):
                return False
            raise
        self._grid.integrate(blocks, depth_img, color_img, intrinsic, extrinsic, 1.0, c.depth_max, float(c.trunc_voxels))
        return True


def _sample_points(
    depth: np.ndarray, rgb: np.ndarray, k: CameraIntrinsics, x0: int, y0: int, pose: Pose, stride: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """World points (N, 3) float64 and colours (N, 3) uint8 of every stride-th valid depth pixel of the crop."""
    sub = depth[::stride, ::stride]
    v, u = np.nonzero(sub > 0)
    z = sub[v, u].astype(np.float64)
    u = u * stride + x0
    v = v * stride + y0
    cam = np.stack([(u - k.cx) * z / k.fx, (v - k.cy) * z / k.fy, z], axis=1)
    return pose.transform(cam), rgb[v, u]


def _replace(t: _Totals, **changes: object) -> _Totals:
    from dataclasses import replace

    return replace(t, **changes)

"""Map prompts and masks between two views of one scene (the current frame and a keyframe).

Why: the image encoder runs on keyframes only, so a prompt given on the newest frame must be
moved into the keyframe's pixels before the decoder sees it, and the decoded mask moved back to
the frame the user looked at. With RGB-D and a tracked pose this is geometry, not guesswork.

Methods, best first (`FrameMapping.between` picks the best the pair of frames allows):

- IDENTITY: the same frame; nothing moves.
- REPROJECTION: both frames have a pose and the source pixel has depth: back-project with the
  source depth, move by the relative pose, project with the target intrinsics. Exact up to depth
  noise, and the only method that handles parallax. A projected point whose target depth is
  clearly nearer is occluded there (``MappedPoints.visible`` is False).
- ROTATION: both poses, but no depth at that pixel: the infinite homography K_t R K_s^-1.
  Exact for a pure head rotation; off by about baseline * f / z pixels under translation.
- SHIFT: no pose: one global 2D translation from phase correlation of small grey images
  (cv2.phaseCorrelate), for colour-only clients that move slowly.

Masks are mapped by a forward warp of their pixels (REPROJECTION: with the source depth, holes in
it filled by the mask's median depth), splatted into the target and closed with a kernel as wide
as the local magnification. Where the target has depth, each pixel of that region is checked the
other way round (back-project with the target depth into the source): it stays in the mask only
when it lands on the source mask at an agreeing depth, so occluders and background seen through
the object's silhouette are cut at their true edges. Pixels without target depth keep the warp.

Coordinates: pixels (x right, y down) of each frame's own colour image; poses camera-to-world.
Cost: points O(N); masks O(mask pixels + the mapped mask's bounding box), never O(frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np

from engine.core import RGBDFrame


class MappingMethod(StrEnum):
    """How a prompt or mask went from one frame's pixels to another's (wire names)."""

    IDENTITY = "identity"
    REPROJECTION = "reprojection"
    ROTATION = "rotation"
    SHIFT = "shift"


@dataclass(frozen=True)
class MappingConfig:
    """Tolerances of the mapping.

    Attributes:
        depth_window_px: a point's depth is the median valid depth in a (2r+1)^2 window around it
            (depth is often missing exactly on an edge or a dark spot).
        depth_rel_tol, depth_abs_tol_m: two depths of one surface agree when they differ by at
            most max(depth_rel_tol * z, depth_abs_tol_m). 4% at 2 m is ~15 sigma of Kinect v1
            noise and below the step to what lies behind a tabletop object.
        shift_width_px: width of the grey images phase-correlated for SHIFT.
        min_shift_response: phase-correlation peaks below this are not trusted (no shift).
        max_warp_px: masks with more pixels are reprojected on a coarser grid (every s-th pixel,
            s = ceil(sqrt(area / max_warp_px))) and their outline re-decided at full resolution
            where the target has depth, which bounds a warp to ~10 ms; measured on a 47k-pixel
            floor at s = 3 it costs ~8 points of IoU against ground truth (tests/test_mapping.py).
            40k px is 13 % of a 640x480 frame: objects stay exact, walls and floors go coarse.
    """

    depth_window_px: int = 2
    depth_rel_tol: float = 0.04
    depth_abs_tol_m: float = 0.02
    shift_width_px: int = 160
    min_shift_response: float = 0.05
    max_warp_px: int = 40_000

    def tolerance(self, z: np.ndarray) -> np.ndarray:
        return np.maximum(self.depth_rel_tol * z, self.depth_abs_tol_m)


@dataclass(frozen=True, eq=False)
class MappedPoints:
    """Points in the target's pixels.

    Attributes:
        xy: (N, 2) float32 target pixels (clipped into the image where visible).
        visible: (N,) bool, inside the target image and not hidden behind something nearer.
        method: per point, the method used (REPROJECTION falls back to ROTATION without depth).
    """

    xy: np.ndarray
    visible: np.ndarray
    method: tuple[MappingMethod, ...]


@dataclass(frozen=True, eq=False)
class FrameMapping:
    """From `source` pixels to `target` pixels. Build with `FrameMapping.between`.

    Attributes:
        method: the best method the pair allows (see the module docstring).
        relative: (4, 4) float64 source-camera -> target-camera transform, or None without poses.
        shift: (dx, dy) pixels for SHIFT, else None.
    """

    source: RGBDFrame
    target: RGBDFrame
    method: MappingMethod
    relative: np.ndarray | None = None
    shift: tuple[float, float] | None = None
    config: MappingConfig = MappingConfig()

    @classmethod
    def between(
        cls, source: RGBDFrame, target: RGBDFrame, config: MappingConfig = MappingConfig()
    ) -> FrameMapping:
        if source is target or (source.frame_id == target.frame_id and source.size == target.size):
            return cls(source, target, MappingMethod.IDENTITY, config=config)
        if source.pose is not None and target.pose is not None:
            relative = target.pose.inverse().matrix @ source.pose.matrix
            method = MappingMethod.REPROJECTION if source.depth_m is not None else MappingMethod.ROTATION
            return cls(source, target, method, relative, config=config)
        return cls(
            source, target, MappingMethod.SHIFT, shift=_phase_shift(source, target, config), config=config
        )

    def inverse(self) -> FrameMapping:
        """The mapping from target back to source (same method choice, swapped frames)."""
        return FrameMapping.between(self.target, self.source, self.config)

    # ------------------------------------------------------------------------------- points

    def points(self, xy: np.ndarray) -> MappedPoints:
        """Map (N, 2) source pixels; see MappedPoints."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        n = len(xy)
        th, tw = self.target.size
        if self.method is MappingMethod.IDENTITY:
            return MappedPoints(xy.astype(np.float32), _inside(xy, th, tw), (MappingMethod.IDENTITY,) * n)
        if self.method is MappingMethod.SHIFT:
            out = xy + np.asarray(self.shift or (0.0, 0.0))
            return MappedPoints(out.astype(np.float32), _inside(out, th, tw), (MappingMethod.SHIFT,) * n)
        out = _apply_homography(self._rotation_homography(), xy)
        methods = [MappingMethod.ROTATION] * n
        visible = _inside(out, th, tw)
        z_src = _point_depths(self.source.depth_m, xy, self.config.depth_window_px)
        has = z_src > 0
        if has.any():
            cam_t = transform_points(
                self.relative, backproject(xy[has], z_src[has], self.source.intrinsics.matrix)
            )
            uv, ok = project(cam_t, self.target.intrinsics.matrix)
            out[has] = uv
            vis = ok & _inside(uv, th, tw)
            vis[vis] &= ~self._occluded(uv[vis], cam_t[vis, 2])
            visible[has] = vis
            for i in np.flatnonzero(has):
                methods[i] = MappingMethod.REPROJECTION
        return MappedPoints(out.astype(np.float32), visible, tuple(methods))

    def box(self, box: np.ndarray) -> np.ndarray | None:
        """Map an (x0, y0, x1, y1) box: its corners moved at the depth of what it encloses.

        The corners of a box usually lie on the background, so they travel at the median depth
        of the box's central half (the object's). Returns the target box clipped to the image,
        or None when it leaves the image.
        """
        x0, y0, x1, y1 = np.asarray(box, np.float64).reshape(4)
        corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]])
        if (
            self.method in (MappingMethod.REPROJECTION, MappingMethod.ROTATION)
            and self.source.depth_m is not None
        ):
            depth = self.source.depth_m
            cx0, cx1 = int((3 * x0 + x1) / 4), int(np.ceil((x0 + 3 * x1) / 4)) + 1
            cy0, cy1 = int((3 * y0 + y1) / 4), int(np.ceil((y0 + 3 * y1) / 4)) + 1
            window = depth[max(cy0, 0) : cy1, max(cx0, 0) : cx1]
            valid = window[window > 0]
            if valid.size:
                z = np.full(4, float(np.median(valid)))
                uv, ok = project(
                    transform_points(self.relative, backproject(corners, z, self.source.intrinsics.matrix)),
                    self.target.intrinsics.matrix,
                )
                return _clip_box(uv, self.target.size) if ok.all() else None
        return _clip_box(self.points(corners).xy.astype(np.float64), self.target.size)

    # ------------------------------------------------------------------------------- masks

    def mask(self, mask: np.ndarray, rough: bool = False) -> np.ndarray:
        """Map an (H_s, W_s) bool source mask to an (H_t, W_t) bool target mask (new array).

        rough: for masks nobody will lift or clean (the alternatives next to the selected one):
        a quarter of the point budget and no full-resolution outline, so at most a few ms.
        """
        mask = np.asarray(mask, bool)
        th, tw = self.target.size
        if self.method is MappingMethod.IDENTITY:
            return mask.copy()
        if not mask.any():
            return np.zeros((th, tw), bool)
        if self.method is MappingMethod.SHIFT:
            dx, dy = self.shift or (0.0, 0.0)
            m = np.float32([[1, 0, dx], [0, 1, dy]])
            return cv2.warpAffine(mask.view(np.uint8), m, (tw, th), flags=cv2.INTER_NEAREST) > 0
        depth = self.source.depth_m
        if depth is None or not (depth[mask] > 0).any():
            h = self._rotation_homography()
            return cv2.warpPerspective(mask.view(np.uint8), h, (tw, th), flags=cv2.INTER_NEAREST) > 0
        source = _View(depth, self.source.intrinsics.matrix, self.source.size)
        target = _View(self.target.depth_m, self.target.intrinsics.matrix, self.target.size)
        budget = self.config.max_warp_px // 4 if rough else self.config.max_warp_px
        stride = int(np.ceil(np.sqrt(np.count_nonzero(mask) / max(budget, 1))))
        if stride <= 1:
            return _reproject_mask(mask, source, target, self.relative, self.config)
        # A large mask (a wall, a floor): warp it on a grid `stride` times coarser, so the cost
        # stays O(max_warp_px); its outline is then stride / 2 pixels off at most.
        small = _reproject_mask(
            mask[::stride, ::stride],
            source.strided(stride),
            target.strided(stride),
            self.relative,
            self.config,
        )
        rows = np.minimum((np.arange(th) + stride // 2) // stride, small.shape[0] - 1)  # nearest grid point
        cols = np.minimum((np.arange(tw) + stride // 2) // stride, small.shape[1] - 1)
        out = small[rows[:, None], cols[None, :]]
        if target.depth is None or rough:
            return out
        # Re-decide the blocky outline at full resolution: only a band of `stride` pixels around it.
        kernel = np.ones((2 * stride + 1, 2 * stride + 1), np.uint8)
        m8 = out.view(np.uint8)
        band = (cv2.dilate(m8, kernel) > 0) & ~(cv2.erode(m8, kernel, borderType=cv2.BORDER_REPLICATE) > 0)
        rows_b, cols_b = np.nonzero(band & (target.depth > 0))
        decided, value = _look_back(rows_b, cols_b, mask, source, target, self.relative, self.config)
        out[rows_b[decided], cols_b[decided]] = value[decided]
        return out

    def _occluded(self, uv: np.ndarray, z: np.ndarray) -> np.ndarray:
        """(N,) bool: the target sees something clearly nearer than z at uv."""
        d = self.target.depth_m
        if d is None or len(uv) == 0:
            return np.zeros(len(uv), bool)
        seen = _point_depths(d, uv, self.config.depth_window_px)
        return (seen > 0) & (seen < z - self.config.tolerance(z))

    def _rotation_homography(self) -> np.ndarray:
        r = self.relative[:3, :3]
        return self.target.intrinsics.matrix @ r @ np.linalg.inv(self.source.intrinsics.matrix)


# ------------------------------------------------------------------------------- mask reprojection


@dataclass(frozen=True, eq=False)
class _View:
    """What a mask warp needs of one frame: depth (0 = none) or None, K, (H, W)."""

    depth: np.ndarray | None
    k: np.ndarray
    size: tuple[int, int]

    def strided(self, s: int) -> _View:
        """Every s-th pixel in each direction: pixel x of this view is x / s of the strided one."""
        k = self.k.copy()
        k[:2] /= s
        h, w = self.size
        depth = self.depth[::s, ::s] if self.depth is not None else None
        return _View(depth, k, (-(-h // s), -(-w // s)))


def _reproject_mask(
    mask: np.ndarray, source: _View, target: _View, relative: np.ndarray, config: MappingConfig
) -> np.ndarray:
    """Forward warp of the mask's pixels with the source depth, closed, checked back (module docstring)."""
    th, tw = target.size
    ys, xs = np.nonzero(mask)
    z = source.depth[ys, xs]
    valid = z > 0
    z = np.where(valid, z, np.float32(np.median(z[valid])))
    xy = np.stack([xs, ys], 1).astype(np.float64)
    cam_t = transform_points(relative, backproject(xy, z.astype(np.float64), source.k))
    uv, ok = project(cam_t, target.k)
    ui, vi = np.floor(uv[:, 0] + 0.5).astype(np.int64), np.floor(uv[:, 1] + 0.5).astype(np.int64)
    ok &= (ui >= 0) & (ui < tw) & (vi >= 0) & (vi < th)
    if not ok.any():
        return np.zeros((th, tw), bool)
    ui, vi = ui[ok], vi[ok]
    # Magnification: how many target pixels one source pixel covers (closing kernel radius).
    mag = float(np.median(target.k[0, 0] * z[ok] / (source.k[0, 0] * np.maximum(cam_t[ok, 2], 1e-6))))
    radius = int(np.clip(np.ceil(mag), 1, 8))
    r0, r1 = max(int(vi.min()) - radius - 1, 0), min(int(vi.max()) + radius + 2, th)
    c0, c1 = max(int(ui.min()) - radius - 1, 0), min(int(ui.max()) + radius + 2, tw)
    crop = np.zeros((r1 - r0, c1 - c0), np.uint8)
    crop[vi - r0, ui - c0] = 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    crop = cv2.morphologyEx(crop, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    region = crop > 0
    if target.depth is not None:
        region = _check_back(region, (r0, c0), mask, source, target, relative, config)
    out = np.zeros((th, tw), bool)
    out[r0:r1, c0:c1] = region
    return out


def _check_back(
    region: np.ndarray,
    origin: tuple[int, int],
    mask: np.ndarray,
    source: _View,
    target: _View,
    relative: np.ndarray,
    config: MappingConfig,
) -> np.ndarray:
    """Decide the region's pixels (and a one-pixel ring) that have target depth by `_look_back`;
    the others keep the forward warp."""
    r0, c0 = origin
    h, w = region.shape
    near = cv2.dilate(region.view(np.uint8), np.ones((3, 3), np.uint8)) > 0
    d_t = target.depth[r0 : r0 + h, c0 : c0 + w]
    rows, cols = np.nonzero(near & (d_t > 0))
    decided, value = _look_back(rows + r0, cols + c0, mask, source, target, relative, config)
    out = region.copy()
    out[rows[decided], cols[decided]] = value[decided]
    return out


def _look_back(
    rows: np.ndarray,
    cols: np.ndarray,
    mask: np.ndarray,
    source: _View,
    target: _View,
    relative: np.ndarray,
    config: MappingConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """For target pixels with depth: ((N,) decided, (N,) in the mask), by looking them up in the source.

    A pixel is in when its back-projected point lands on the source mask with agreeing source
    depth; out when it lands outside the mask, behind a farther source surface (it sees something
    the object does not cover) or outside the source view. When the source sees something nearer
    there (the point was hidden in the source) or has no depth, it is undecided.
    """
    if rows.size == 0:
        return np.zeros(0, bool), np.zeros(0, bool)
    xy = np.stack([cols, rows], 1).astype(np.float64)
    cam_s = transform_points(
        np.linalg.inv(relative), backproject(xy, target.depth[rows, cols].astype(np.float64), target.k)
    )
    uv, ok = project(cam_s, source.k)
    sh, sw = mask.shape
    ui, vi = np.floor(uv[:, 0] + 0.5).astype(np.int64), np.floor(uv[:, 1] + 0.5).astype(np.int64)
    ok &= (ui >= 0) & (ui < sw) & (vi >= 0) & (vi < sh)
    decided = ~ok
    value = np.zeros(rows.size, bool)
    idx = np.flatnonzero(ok)
    z_expected = cam_s[idx, 2]
    z_seen = source.depth[vi[idx], ui[idx]]
    tol = config.tolerance(z_expected)
    agree = (z_seen > 0) & (np.abs(z_seen - z_expected) <= tol)
    farther = (z_seen > 0) & (z_seen > z_expected + tol)
    decided[idx] = agree | farther
    value[idx] = agree & mask[vi[idx], ui[idx]]
    return decided, value


# ------------------------------------------------------------------------------- helpers


def _inside(xy: np.ndarray, h: int, w: int) -> np.ndarray:
    return (
        np.isfinite(xy).all(1) & (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)
    )


def _point_depths(depth: np.ndarray | None, xy: np.ndarray, r: int) -> np.ndarray:
    """(N,) median valid depth in a (2r+1)^2 window around each pixel; 0 where there is none."""
    out = np.zeros(len(xy), np.float64)
    if depth is None:
        return out
    h, w = depth.shape
    for i, (x, y) in enumerate(xy):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        c, row = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        if not (0 <= c < w and 0 <= row < h):
            continue
        window = depth[max(row - r, 0) : row + r + 1, max(c - r, 0) : c + r + 1]
        valid = window[window > 0]
        if valid.size:
            out[i] = float(np.median(valid))
    return out


def backproject(xy: np.ndarray, z: np.ndarray, k: np.ndarray) -> np.ndarray:
    x = (xy[:, 0] - k[0, 2]) * z / k[0, 0]
    y = (xy[:, 1] - k[1, 2]) * z / k[1, 1]
    return np.stack([x, y, z], 1)


def transform_points(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3) points through a 4x4 rigid transform (column by column: a (N,3)x(3,3) matmul is slow)."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    out = np.empty_like(points)
    for i in range(3):
        out[:, i] = x * m[i, 0] + y * m[i, 1] + z * m[i, 2] + m[i, 3]
    return out


def project(points: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((N, 2) pixels, (N,) bool in front of the camera)."""
    z = points[:, 2]
    ok = z > 1e-3
    zs = np.where(ok, z, 1.0)
    uv = np.stack([k[0, 0] * points[:, 0] / zs + k[0, 2], k[1, 1] * points[:, 1] / zs + k[1, 2]], 1)
    return uv, ok


def _apply_homography(h: np.ndarray, xy: np.ndarray) -> np.ndarray:
    p = np.concatenate([xy, np.ones((len(xy), 1))], 1) @ h.T
    with np.errstate(divide="ignore", invalid="ignore"):
        return p[:, :2] / p[:, 2:3]


def _clip_box(corners: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    h, w = size
    if not np.isfinite(corners).all():
        return None
    x0, y0 = np.clip(corners.min(0), 0, [w - 1, h - 1])
    x1, y1 = np.clip(corners.max(0), 0, [w - 1, h - 1])
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return np.array([x0, y0, x1, y1], np.float32)


def _grey(frame: RGBDFrame, width: int) -> np.ndarray:
    h, w = frame.size
    scale = min(1.0, width / w)
    grey = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        grey = cv2.resize(
            grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
    return grey.astype(np.float32)


def _phase_shift(source: RGBDFrame, target: RGBDFrame, config: MappingConfig) -> tuple[float, float]:
    """Global (dx, dy) in target pixels that moves source content onto the target; (0, 0) if unsure."""
    if source.size != target.size:
        return 0.0, 0.0
    a, b = _grey(source, config.shift_width_px), _grey(target, config.shift_width_px)
    window = cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(a, b, window)
    if not np.isfinite(response) or response < config.min_shift_response:
        return 0.0, 0.0
    scale = source.size[1] / a.shape[1]
    return float(dx * scale), float(dy * scale)

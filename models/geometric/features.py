"""Per-frame geometric features: where surfaces break.

From a registered RGB-D image this computes, for every pixel, whether it sits on
  * a depth discontinuity (the far side of a jump; flying pixels included),
  * a convex or a concave normal crease (LCCP's sign test on smoothed normals),
  * a colour step (Sobel on a blurred image).
These are the barriers the label maps (regions.py) are grown between. Everything is vectorised
(cv2 filters + numpy); no per-pixel Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models.geometric.config import GeometricConfig
from models.geometric.kernels import crease_ridges


@dataclass(frozen=True, eq=False)
class GeometricFeatures:
    """Edge evidence of one frame. All arrays (H, W).

    Attributes:
        depth: float32 metres, 0 where there is no measurement.
        valid: bool, depth measured.
        depth_edge: bool, pixel lies on the far side of a depth discontinuity with a 4-neighbour.
        convex: bool, convex normal crease (a box's edge, a ridge).
        concave: bool, concave normal crease (where an object meets the floor, a wall meets a wall).
        colour_step: uint8, colour step strength in 8-bit units (0 = flat colour).
        has_depth: False when the frame had no usable depth (colour-only fallback).
        points: (H, W, 3) float32 camera-frame points (zeros where invalid), None without depth.
        normals: (H, W, 3) float32 unit normals facing the camera (zeros where undefined),
            None without depth.
        jump_x: (H, W-1) bool depth jump between (v, u) and (v, u+1); None without depth.
        jump_y: (H-1, W) bool depth jump between (v, u) and (v+1, u); None without depth.
        rgb: (H, W, 3) uint8 the colour image the features were computed from.
    """

    depth: np.ndarray
    valid: np.ndarray
    depth_edge: np.ndarray
    convex: np.ndarray
    concave: np.ndarray
    colour_step: np.ndarray
    has_depth: bool
    points: np.ndarray | None = None
    normals: np.ndarray | None = None
    jump_x: np.ndarray | None = None
    jump_y: np.ndarray | None = None
    rgb: np.ndarray | None = None


def colour_steps(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) uint8 colour step: max over channels of (|Sx| + |Sy|) / 4.

    A clean vertical step of D grey levels gives about D. The small Gaussian blur (on top of the
    encoder's area downsampling) keeps sensor noise (sigma ~ 3 levels) well below the thresholds.
    """
    blur = cv2.GaussianBlur(rgb, (3, 3), 0.8)
    gx = cv2.Sobel(blur, cv2.CV_16S, 1, 0, ksize=3)
    gy = cv2.Sobel(blur, cv2.CV_16S, 0, 1, ksize=3)
    mag = cv2.addWeighted(
        cv2.convertScaleAbs(gx, alpha=0.25), 1.0, cv2.convertScaleAbs(gy, alpha=0.25), 1.0, 0
    )
    c0, c1, c2 = cv2.split(mag)
    return cv2.max(cv2.max(c0, c1), c2)


def depth_jumps(
    depth: np.ndarray, valid: np.ndarray, cfg: GeometricConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depth discontinuities between 4-neighbours.

    A pair jumps when its depth step exceeds
        jump_abs_m + z (jump_rel + jump_quad z) + jump_slope * min(|step before|, |step after|),
    z the nearer depth. The last term makes the test relative to the surface's own slope along
    the line: a floor or a table top seen at a grazing angle steps by several centimetres per
    pixel (more at the working resolution) yet is one surface, while at an occlusion the step
    spikes above the steps on at least one side (the occluder's, which faces the camera).

    Returns:
        edge: (H, W) bool, the far pixel of every jumping pair. Marking only the far side keeps the
            nearer (occluding) object whole, and still closes a 4-connected barrier around it.
        jump_x: (H, W-1) bool, pair (v, u)-(v, u+1) jumps.
        jump_y: (H-1, W) bool, pair (v, u)-(v+1, u) jumps.
    """
    edge = np.zeros(depth.shape, bool)
    jumps = []
    for axis, a, b, ea, eb in (
        (1, depth[:, :-1], depth[:, 1:], edge[:, :-1], edge[:, 1:]),
        (0, depth[:-1], depth[1:], edge[:-1], edge[1:]),
    ):
        near = np.minimum(a, b)
        diff = a - b
        step = np.abs(diff)
        step[near <= 0] = 0.0  # steps into holes say nothing about the surface's slope
        # smaller of the neighbouring steps along the same line (the pair's own step if none)
        slope = step.copy()
        if axis == 1:
            np.minimum(slope[:, 1:], step[:, :-1], out=slope[:, 1:])
            np.minimum(slope[:, :-1], step[:, 1:], out=slope[:, :-1])
        else:
            np.minimum(slope[1:], step[:-1], out=slope[1:])
            np.minimum(slope[:-1], step[1:], out=slope[:-1])
        tau = cfg.jump_abs_m + near * (cfg.jump_rel + cfg.jump_quad * near) + cfg.jump_slope * slope
        jump = (step > tau) & (near > 0)
        ea |= jump & (diff > 0)
        eb |= jump & (diff <= 0)
        jumps.append(jump)
    return edge, jumps[0], jumps[1]


def normal_creases(
    depth: np.ndarray,
    valid: np.ndarray,
    jump_x: np.ndarray,
    jump_y: np.ndarray,
    camera_matrix: np.ndarray,
    cfg: GeometricConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Convex and concave creases from edge-aware smoothed normals.

    Tangents are forward differences of the back-projected points, box-filtered over a k x k
    window (k = cfg.normal_window), skipping differences that cross a depth jump or a hole, so
    normals near an object's silhouette come from the object alone. The normal is tv x tu (facing
    the camera). A pixel is a crease when the normals s = (k + 1) // 2 pixels to either side
    (horizontally or vertically) differ by more than the angle threshold; the sign of
    (n_a - n_b) . (x_a - x_b) tells convex (> 0) from concave (< 0) (Stein et al., "Object
    partitioning using local convexity", CVPR 2014). Pairs straddling a depth jump are not
    compared (their normals belong to different surfaces; the jump already separates them).

    The angle stays above threshold over about 1.4 k pixels across a crease, so only its ridge
    (non-maximum suppression along the comparison axis) is kept, dilated by one pixel; short
    isolated pieces (noise peaks) are dropped. Gaps a ridge may still have are bridged later by
    the object graph (graph.py), which decides between whole patches, not pixels.

    Depth noise grows with z² while a pixel's metric size grows with z, so angular noise grows
    with z: beyond cfg.crease_noise_z_m the squared normal difference is divided by
    (z / crease_noise_z_m)², i.e. thresholds rise in proportion to depth.

    Args:
        depth: (h, w) float32 metres, 0 = invalid. valid: (h, w) bool.
        jump_x: (h, w-1) bool, jump_y: (h-1, w) bool depth discontinuities between neighbours.
        camera_matrix: (3, 3) K at this resolution.
    Returns (convex, concave) (h, w) bool, normals (h, w, 3) float32 (zero where undefined) and
    points (h, w, 3) float32 camera-frame coordinates.
    """
    h, w = depth.shape
    fx, fy, cx, cy = camera_matrix[0, 0], camera_matrix[1, 1], camera_matrix[0, 2], camera_matrix[1, 2]
    ray_x = ((np.arange(w, dtype=np.float32) - np.float32(cx)) / np.float32(fx))[None, :]
    ray_y = ((np.arange(h, dtype=np.float32) - np.float32(cy)) / np.float32(fy))[:, None]
    px, py = depth * ray_x, depth * ray_y

    ok_x = np.zeros((h, w), np.float32)
    ok_x[:, :-1] = valid[:, 1:] & valid[:, :-1] & ~jump_x
    ok_y = np.zeros((h, w), np.float32)
    ok_y[:-1] = valid[1:] & valid[:-1] & ~jump_y
    k = (cfg.normal_window, cfg.normal_window)
    tangents = []
    for ok, axis in ((ok_x, 1), (ok_y, 0)):
        for c in (px, py, depth):
            d = np.zeros((h, w), np.float32)
            if axis == 1:
                np.subtract(c[:, 1:], c[:, :-1], out=d[:, :-1])
            else:
                np.subtract(c[1:], c[:-1], out=d[:-1])
            d *= ok
            tangents.append(cv2.boxFilter(d, -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT))
    ux, uy, uz, vx, vy, vz = tangents
    nx, ny, nz = vy * uz - vz * uy, vz * ux - vx * uz, vx * uy - vy * ux
    norm = cv2.magnitude(cv2.magnitude(nx, ny), nz)
    # A normal exists wherever its window had valid differences, even on an invalid pixel: an
    # isolated dropout must not punch a gap into a crease line.
    good = norm > 1e-20
    inv = np.float32(1.0) / np.maximum(norm, np.float32(1e-20))
    nx, ny, nz = nx * inv, ny * inv, nz * inv
    z_scale = np.maximum(depth * np.float32(1.0 / cfg.crease_noise_z_m), np.float32(1.0))
    inv_scale2 = np.float32(1.0) / (z_scale * z_scale)

    # Jumps counted along each axis: a pair straddles a discontinuity when the counts differ.
    cum_x = np.zeros((h, w), np.int32)
    np.cumsum(jump_x, axis=1, out=cum_x[:, 1:])
    cum_y = np.zeros((h, w), np.int32)
    np.cumsum(jump_y, axis=0, out=cum_y[1:])

    thr_convex = np.float32(2 - 2 * np.cos(np.deg2rad(cfg.convex_deg)))
    thr_concave = np.float32(2 - 2 * np.cos(np.deg2rad(cfg.concave_deg)))
    s = (cfg.normal_window + 1) // 2
    # the per-pixel comparison, sign test and ridge suppression (kernels.crease_ridges)
    convex, concave = crease_ridges(
        nx, ny, nz, good, inv_scale2, cum_x, cum_y, px, py, depth, s, thr_convex, thr_concave
    )
    convex &= valid
    concave &= valid
    # Thicken the 1-pixel ridges so they stay closed barriers for 4-connected components, and
    # drop short isolated pieces: noise peaks, not creases (a crease is a line).
    kernel = np.ones((3, 3), np.uint8)
    convex = cv2.dilate(convex.view(np.uint8), kernel)
    concave = cv2.dilate(concave.view(np.uint8), kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(convex | concave, connectivity=8, ltype=cv2.CV_32S)
    keep_lab = stats[:, cv2.CC_STAT_AREA] >= cfg.crease_min_px
    keep_lab[0] = False
    long_enough = keep_lab[labels]
    points = cv2.merge([px, py, depth])
    normals = cv2.merge([nx, ny, nz])
    normals[~good] = 0.0
    return convex.view(bool) & long_enough, concave.view(bool) & long_enough, normals, points


def downsample_depth(depth: np.ndarray, valid: np.ndarray, factor: int) -> np.ndarray:
    """(H, W) float32 metres -> (H/f, W/f) float32, averaging only valid samples.

    A coarse pixel with fewer than half of its samples valid becomes 0 (no measurement). Averaging
    divides iid sensor noise by up to `factor` before normals are estimated.
    """
    if factor == 1:
        return depth
    h, w = depth.shape
    size = (w // factor, h // factor)
    crop = (slice(0, size[1] * factor), slice(0, size[0] * factor))
    total = cv2.resize(depth[crop], size, interpolation=cv2.INTER_AREA)
    count = cv2.resize(valid[crop].astype(np.float32), size, interpolation=cv2.INTER_AREA)
    out = np.zeros_like(total)
    np.divide(total, count, out=out, where=count >= 0.5)
    return out


def compute_features(
    rgb: np.ndarray, depth_m: np.ndarray | None, camera_matrix: np.ndarray | None, cfg: GeometricConfig
) -> GeometricFeatures:
    """All edge evidence of one frame, at the given image's resolution.

    The encoder calls this on a downsampled frame (cfg.work_downsample): averaging lowers depth
    noise before normals are estimated, and every array is smaller.

    Args:
        rgb: (H, W, 3) uint8 RGB.
        depth_m: (H, W) float32 metres, 0 = no measurement; None (or all zero) for colour only.
        camera_matrix: (3, 3) K of this resolution; None assumes a Kinect-like focal length
            scaled to the width and the principal point at the centre (creases depend on K
            only weakly).
        cfg: thresholds.
    """
    h, w = rgb.shape[:2]
    steps = colour_steps(rgb)
    if depth_m is None or not np.any(depth_m > 0):
        zeros = np.zeros((h, w), bool)
        depth = np.zeros((h, w), np.float32)
        return GeometricFeatures(depth, zeros, zeros, zeros, zeros, steps, False, rgb=rgb)
    depth = np.ascontiguousarray(depth_m, dtype=np.float32)
    valid = depth > 0
    if camera_matrix is None:
        camera_matrix = default_camera_matrix(w, h, cfg)
    edge, jump_x, jump_y = depth_jumps(depth, valid, cfg)
    convex, concave, normals, points = normal_creases(
        depth, valid, jump_x, jump_y, np.asarray(camera_matrix, np.float64), cfg
    )
    return GeometricFeatures(
        depth, valid, edge, convex, concave, steps, True, points, normals, jump_x, jump_y, rgb
    )


def default_camera_matrix(width: int, height: int, cfg: GeometricConfig) -> np.ndarray:
    """(3, 3) Kinect-like K for a frame sent without intrinsics."""
    f = cfg.default_focal_px_at_640 * width / 640.0
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]], np.float64)

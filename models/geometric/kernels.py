"""The geometric encoder's per-pixel loops, compiled with numba.

Why: these steps make a decision per pixel from a handful of neighbours (the first core pixel
along each axis, the normals a few pixels to either side, the patch a pixel adds to). In NumPy
each becomes a dozen full-image passes with temporaries; as one compiled loop they run 4-10x
faster, and `nogil=True` lets an encode run on a worker thread without stalling the event loop
that receives video and data-channel messages.

Each kernel reproduces the NumPy formulation it replaced operation for operation (same float32
arithmetic, same summation order, same tie-breaking), so label maps are unchanged bit for bit;
tests/test_geometric_kernels.py checks every kernel against a plain NumPy reference.

Kernels are compiled on first use and cached next to this file (numba's `cache=True`);
`warm_up()` compiles them ahead of the first frame (the encoder calls it when it is built).
"""

from __future__ import annotations

import numba
import numpy as np

_JIT = {"cache": True, "nogil": True}


@numba.njit(**_JIT)
def snap_kernel(
    labels: np.ndarray,
    seeds: np.ndarray,
    band: np.ndarray,
    points: np.ndarray,
    normals: np.ndarray,
    radius: int,
) -> np.ndarray:
    """bands.snap_to_planes: re-decide band pixels near a label change by point-to-plane distance.

    For every band pixel with a label change within its (2 radius + 1)² box: the first core pixel
    (seed with a normal) along each axis (right, left, down, up; at most `radius` away) offers its
    label; the one whose tangent plane passes closest to the pixel's point wins (first on ties).
    """
    h, w = labels.shape
    out = labels.copy()
    # integral image of "label differs from the left or upper neighbour" (box test in O(1))
    integral = np.zeros((h + 1, w + 1), np.int32)
    for v in range(h):
        row = 0
        for u in range(w):
            lab = labels[v, u]
            if (u > 0 and lab != labels[v, u - 1]) or (v > 0 and lab != labels[v - 1, u]):
                row += 1
            integral[v + 1, u + 1] = integral[v, u + 1] + row
    for v in range(h):
        for u in range(w):
            if not band[v, u]:
                continue
            v0, v1 = max(v - radius, 0), min(v + radius + 1, h)
            u0, u1 = max(u - radius, 0), min(u + radius + 1, w)
            if integral[v1, u1] - integral[v0, u1] - integral[v1, u0] + integral[v0, u0] == 0:
                continue
            px, py, pz = points[v, u, 0], points[v, u, 1], points[v, u, 2]
            best = np.float32(np.inf)
            for dv, du in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                for s in range(1, radius + 1):
                    qv, qu = v + dv * s, u + du * s
                    if qv < 0 or qv >= h or qu < 0 or qu >= w:
                        break
                    if seeds[qv, qu] and normals[qv, qu, 2] != 0:
                        d = abs(
                            normals[qv, qu, 0] * (px - points[qv, qu, 0])
                            + normals[qv, qu, 1] * (py - points[qv, qu, 1])
                            + normals[qv, qu, 2] * (pz - points[qv, qu, 2])
                        )
                        if d < best:
                            best = d
                            out[v, u] = labels[qv, qu]
                        break
    return out


@numba.njit(**_JIT)
def patch_sums(
    patch: np.ndarray, seeds: np.ndarray, points: np.ndarray, normals: np.ndarray, rgb: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """graph.objects_and_regions: per patch, sums over its core pixels that have a normal.

    Returns float64 (count (n,), normal sum (n, 3), point sum (n, 3), sum of |p|² (n,), colour
    sum over every other pixel in both directions (n, 3)), accumulated in raster order as
    np.bincount does; |p|² is computed in float32 like the NumPy expression it replaces.
    """
    h, w = patch.shape
    count = np.zeros(n, np.float64)
    normal = np.zeros((n, 3), np.float64)
    centre = np.zeros((n, 3), np.float64)
    sq = np.zeros(n, np.float64)
    colour = np.zeros((n, 3), np.float64)
    for v in range(h):
        for u in range(w):
            if not seeds[v, u] or normals[v, u, 2] == 0:
                continue
            i = patch[v, u]
            count[i] += 1.0
            x, y, z = points[v, u, 0], points[v, u, 1], points[v, u, 2]
            for k in range(3):
                normal[i, k] += normals[v, u, k]
            centre[i, 0] += x
            centre[i, 1] += y
            centre[i, 2] += z
            sq[i] += x * x + y * y + z * z
    for v in range(0, h, 2):
        for u in range(0, w, 2):
            i = patch[v, u]
            for k in range(3):
                colour[i, k] += rgb[v, u, k]
    return count, normal, centre, sq, colour


@numba.njit(**_JIT)
def crease_ridges(
    nx: np.ndarray,
    ny: np.ndarray,
    nz: np.ndarray,
    good: np.ndarray,
    inv_scale2: np.ndarray,
    cum_x: np.ndarray,
    cum_y: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
    s: int,
    thr_convex: np.float32,
    thr_concave: np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """features.normal_creases: convex and concave crease ridges (one pixel wide, before dilation).

    Along each axis, a pixel compares the normals s pixels to either side (pairs straddling a
    depth jump or lacking a normal score 0): squared difference scaled by inv_scale2, kept where
    it is a local maximum along that axis (non-maximum suppression) above the threshold of its
    LCCP sign, (n_a - n_b) . (x_a - x_b) > 0 convex.
    """
    h, w = nx.shape
    convex = np.zeros((h, w), np.bool_)
    concave = np.zeros((h, w), np.bool_)
    thr_low = min(thr_convex, thr_concave)
    diff2 = np.zeros((h, w), np.float32)
    for axis in range(2):
        diff2[:] = 0
        dv, du = (0, s) if axis == 1 else (s, 0)
        for v in range(dv, h - dv):
            for u in range(du, w - du):
                va, ua, vb, ub = v - dv, u - du, v + dv, u + du
                same = cum_x[va, ua] == cum_x[vb, ub] if axis == 1 else cum_y[va, ua] == cum_y[vb, ub]
                if good[va, ua] and good[vb, ub] and same:
                    a = nx[va, ua] - nx[vb, ub]
                    b = ny[va, ua] - ny[vb, ub]
                    c = nz[va, ua] - nz[vb, ub]
                    diff2[v, u] = (a * a + b * b + c * c) * inv_scale2[v, u]
        for v in range(dv, h - dv):
            for u in range(du, w - du):
                here = diff2[v, u]
                if not here > thr_low:
                    continue
                if axis == 1:
                    if u == 0 or u == w - 1 or here < diff2[v, u - 1] or here < diff2[v, u + 1]:
                        continue
                elif here < diff2[max(v - 1, 0), u] or here < diff2[min(v + 1, h - 1), u]:
                    continue
                va, ua, vb, ub = v - dv, u - du, v + dv, u + du
                sign = (
                    (nx[va, ua] - nx[vb, ub]) * (px[va, ua] - px[vb, ub])
                    + (ny[va, ua] - ny[vb, ub]) * (py[va, ua] - py[vb, ub])
                    + (nz[va, ua] - nz[vb, ub]) * (pz[va, ua] - pz[vb, ub])
                )
                if sign > 0:
                    if here > thr_convex:
                        convex[v, u] = True
                elif sign <= 0 and here > thr_concave:
                    concave[v, u] = True
    return convex, concave


@numba.njit(**_JIT)
def boundary_pairs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where two different labels (both > 0) touch: flat indices (into the (h, w) image) of the
    left pixel of every such horizontal pair and of the upper pixel of every vertical pair, in
    raster order (what np.nonzero of the pairwise test gives, without the full-image temporaries).
    """
    h, w = labels.shape
    n_x = 0
    n_y = 0
    for v in range(h):
        for u in range(w):
            a = labels[v, u]
            if a <= 0:
                continue
            if u + 1 < w and labels[v, u + 1] != a and labels[v, u + 1] > 0:
                n_x += 1
            if v + 1 < h and labels[v + 1, u] != a and labels[v + 1, u] > 0:
                n_y += 1
    first_x = np.empty(n_x, np.int64)
    first_y = np.empty(n_y, np.int64)
    i_x = 0
    for v in range(h):
        for u in range(w - 1):
            a, b = labels[v, u], labels[v, u + 1]
            if a != b and a > 0 and b > 0:
                first_x[i_x] = v * w + u
                i_x += 1
    i_y = 0
    for v in range(h - 1):
        for u in range(w):
            a, b = labels[v, u], labels[v + 1, u]
            if a != b and a > 0 and b > 0:
                first_y[i_y] = v * w + u
                i_y += 1
    return first_x, first_y


@numba.njit(**_JIT)
def plane_counts(xyz: np.ndarray, normal: np.ndarray, d: np.ndarray, threshold: float) -> np.ndarray:
    """support.ransac_plane's hypothesis scores: for every plane j, how many points lie within
    threshold of it (|pts @ normal[j] + d[j]| < threshold), with xyz = pts.T (3, n) contiguous.

    Why: NumPy scores all hypotheses at once through an (n_points, n_planes) float64 matrix and
    three more of its size (~4 MB each, fresh pages every call); here each distance lives in a
    register, and the coordinate rows (not the (n, 3) rows) let the loop run in SIMD lanes.
    The sum is x nx + y ny + z nz + d left to right without FMA (numba does not contract without
    fastmath); BLAS may fuse, so single distances can differ in the last bit (<= 1e-15 m) and a
    count only for a point that close to the threshold: on the real frames the counts are equal
    (tests/test_geometric_support_speed.py compares with the old NumPy code).
    """
    x, y, z = xyz[0], xyz[1], xyz[2]
    m = normal.shape[0]
    counts = np.zeros(m, np.int64)
    for j in range(m):
        nx, ny, nz, dj = normal[j, 0], normal[j, 1], normal[j, 2], d[j]
        c = 0
        for i in range(x.shape[0]):
            c += abs(x[i] * nx + y[i] * ny + z[i] * nz + dj) < threshold
        counts[j] = c
    return counts


@numba.njit(**_JIT)
def plane_distance(xyz: np.ndarray, plane: np.ndarray) -> np.ndarray:
    """|a x + b y + c z + d| of every point (xyz (3, n) float64, plane (4,)): support_mask's
    per-plane distances in one pass instead of a matrix-vector product, an add and an abs, each
    with its own (n,) temporary. Same arithmetic as plane_counts (last-bit note there)."""
    x, y, z = xyz[0], xyz[1], xyz[2]
    a, b, c, d = plane[0], plane[1], plane[2], plane[3]
    out = np.empty(x.shape[0], np.float64)
    for i in range(x.shape[0]):
        out[i] = abs(x[i] * a + y[i] * b + z[i] * c + d)
    return out


@numba.njit(**_JIT)
def plane_facing(normals: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """|normals @ axis| in float32 (normals (n, 3) float32, axis (3,) float32): how squarely each
    pixel faces a plane (support_mask), without the product's and the abs's temporaries. The
    products are summed left to right in float32; BLAS's sgemv may fuse multiply-adds on some
    CPUs, so it can differ from `normals @ axis` by an ulp (the support_mask reference test in
    tests/test_geometric_support_speed.py checks the masks)."""
    a, b, c = axis[0], axis[1], axis[2]
    out = np.empty(normals.shape[0], np.float32)
    for i in range(normals.shape[0]):
        out[i] = abs(normals[i, 0] * a + normals[i, 1] * b + normals[i, 2] * c)
    return out


@numba.njit(**_JIT)
def band_inliers(
    dist: np.ndarray,
    band: np.ndarray,
    floor: float,
    free: np.ndarray,
    facing: np.ndarray,
    undefined: np.ndarray,
    cos_max: np.float32,
    explained: float,
) -> np.ndarray:
    """One plane's support candidates (support_mask), (n,) uint8, in one pass instead of seven
    full-length NumPy operations: free pixels within min(floor, band) of the plane that face it
    (facing >= cos_max, compared in float32 as NumPy does, or an undefined normal; facing of
    size 0 = no normals). Pixels within `explained` of the plane are taken off `free` (in place)."""
    n = dist.shape[0]
    has_normals = facing.shape[0] == n
    inl = np.zeros(n, np.uint8)
    for i in range(n):
        d = dist[i]
        if free[i]:
            t = floor if floor <= band[i] else band[i]
            if d < t and (not has_normals or facing[i] >= cos_max or undefined[i]):
                inl[i] = 1
            if d < explained:
                free[i] = False
    return inl


def warm_up() -> None:
    """Compile (or load from the cache) every kernel now, on tiny inputs."""
    labels = np.zeros((4, 4), np.int32)
    flags = np.zeros((4, 4), np.bool_)
    xyz = np.zeros((4, 4, 3), np.float32)
    plane = np.zeros((4, 4), np.float32)
    cum = np.zeros((4, 4), np.int32)
    snap_kernel(labels, flags, flags, xyz, xyz, 1)
    boundary_pairs(labels)
    plane_counts(np.zeros((3, 4)), np.zeros((2, 3)), np.zeros(2), 1.0)
    plane_distance(np.zeros((3, 4)), np.zeros(4))
    plane_facing(np.zeros((4, 3), np.float32), np.zeros(3, np.float32))
    zeros = np.zeros(4)
    band_inliers(
        zeros, zeros, 1.0, np.ones(4, np.bool_), np.zeros(4, np.float32), flags.ravel(), np.float32(1), 1.0
    )
    band_inliers(
        zeros, zeros, 1.0, np.ones(4, np.bool_), np.zeros(0, np.float32), flags.ravel(), np.float32(1), 1.0
    )
    patch_sums(labels, flags, xyz, xyz, np.zeros((4, 4, 3), np.uint8), 1)
    one = np.float32(1)
    crease_ridges(plane, plane, plane, flags, plane, cum, cum, plane, plane, plane, 1, one, one)

"""The compiled / restructured support path equals the NumPy code it replaced (support.py,
objects.py). Each reference below is that code as it was before the speed-up; inputs are random
and the working-resolution features of a noisy synthetic RGB-D frame (what the encoder feeds it).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from clients.sources.synthetic import DepthDegradation, make_scene, render_frame
from models.geometric import GeometricConfig
from models.geometric.features import compute_features, downsample_depth
from models.geometric.kernels import band_inliers, plane_counts, plane_distance, plane_facing
from models.geometric.objects import _merge_by_colour
from models.geometric.regions import components_with_areas
from models.geometric.support import ransac_plane, support_mask

# ----------------------------------------------------------------------------- NumPy references


def ransac_plane_reference(pts, threshold, iterations, rng):
    n = len(pts)
    tri = rng.integers(0, n, (iterations, 3))
    p0, p1, p2 = pts[tri[:, 0]], pts[tri[:, 1]], pts[tri[:, 2]]
    normal = np.cross(p1 - p0, p2 - p0)
    norm = np.linalg.norm(normal, axis=1)
    ok = norm > 1e-9
    normal = normal[ok] / norm[ok, None]
    d = -np.sum(normal * p0[ok], axis=1)
    if normal.size == 0:
        return np.array([0.0, 0.0, 1.0, -float(np.median(pts[:, 2]))])
    counts = (np.abs(pts @ normal.T + d) < threshold).sum(axis=0)
    best = int(np.argmax(counts))
    inl = pts[np.abs(pts @ normal[best] + d[best]) < threshold]
    centre = inl.mean(axis=0)
    _, _, vt = np.linalg.svd(inl - centre, full_matrices=False)
    nrm = vt[2]
    return np.array([*nrm, -float(nrm @ centre)])


def support_mask_reference(points, valid, cfg, normals=None):
    h, w = valid.shape
    flat = np.flatnonzero(valid.ravel())
    on = np.zeros(h * w, bool)
    fringe = np.zeros(h * w, bool)
    if flat.size < 100:
        return on.reshape(h, w), fringe.reshape(h, w)
    pts = points.reshape(-1, 3)[flat].astype(np.float64)
    z = pts[:, 2]
    band = cfg.support_band_m + cfg.support_band_quad * z * z
    sample = np.arange(0, flat.size, cfg.support_stride)
    free = np.ones(flat.size, bool)
    rng = np.random.default_rng(0)
    accepted = 0
    kernel = np.ones((5, 5), np.uint8)
    nrm = None if normals is None else normals.reshape(-1, 3)[flat]
    undefined = None if nrm is None else ~(nrm != 0).any(axis=1)
    cos_max = float(np.cos(np.radians(cfg.support_normal_deg)))
    cos_grow = float(np.cos(np.radians(cfg.support_grow_deg)))
    near_kernel = np.ones((cfg.support_fringe_px, cfg.support_fringe_px), np.uint8)
    for _ in range(2 * cfg.support_max_planes):
        idx = sample[free[sample]]
        if idx.size > cfg.support_max_sample:  # hypotheses are scored on a bounded subsample
            idx = idx[np.linspace(0, idx.size - 1, cfg.support_max_sample).astype(np.int64)]
        if idx.size < 50 or accepted >= cfg.support_max_planes:
            break
        a = ransac_plane_reference(pts[idx], cfg.support_ransac_m, cfg.support_iterations, rng)
        dist = np.abs(pts @ a[:3] + a[3])
        # the band follows the plane's own noise: 3 x the RMS residual of its RANSAC inliers
        # (a clean depth map gets a thin band, a noisy sensor a wide one), within [min, band]
        core = dist[idx] < cfg.support_ransac_m
        rms = float(np.sqrt(np.mean(dist[idx][core] ** 2))) if core.any() else cfg.support_ransac_m
        thr = np.clip(3.0 * rms, cfg.support_band_min_m, band)
        inl = free & (dist < thr)
        facing = None
        if nrm is not None:
            facing = np.abs(nrm @ a[:3].astype(np.float32))
            inl &= (facing >= cos_max) | undefined
        free &= ~(dist < cfg.support_ransac_m)  # explained either way: do not fit them again
        img = np.zeros(h * w, np.uint8)
        img[flat[inl]] = 1
        # plane inliers in the middle of an object (a box's face parallel to the table) are
        # specks or thin lines, not a support: an opening keeps only broad plane areas
        img = cv2.morphologyEx(img.reshape(h, w), cv2.MORPH_OPEN, kernel)
        _, lab, stats, _ = cv2.connectedComponentsWithStats(img, connectivity=8, ltype=cv2.CV_32S)
        areas = stats[:, cv2.CC_STAT_AREA].copy()
        areas[0] = 0
        if areas.max() < cfg.support_min_frac * flat.size:
            continue
        keep = areas >= cfg.support_piece_frac * flat.size
        keep[0] = False
        piece = keep[lab]
        if nrm is not None and cfg.support_grow_m > 0:
            # a real table is not a plane to a few millimetres (sensor warp at range): grow the
            # piece over connected pixels facing the same way within support_grow_m of it
            like = np.zeros(h * w, np.uint8)
            close = (dist < cfg.support_grow_m) & (facing >= cos_grow) & (free | inl)
            like[flat[close]] = 1
            like = like.reshape(h, w) | piece.view(np.uint8)
            _, grown, _, _ = cv2.connectedComponentsWithStats(like, connectivity=4, ltype=cv2.CV_32S)
            hit = np.zeros(int(grown.max()) + 1, bool)
            hit[grown[piece]] = True
            hit[0] = False
            piece = hit[grown]
        on |= piece.ravel()
        near = cv2.dilate(piece.view(np.uint8), near_kernel).view(bool).ravel()
        fringe[flat[dist < cfg.support_fringe * thr]] |= near[flat[dist < cfg.support_fringe * thr]]
        free &= ~inl
        accepted += 1
    on = on.reshape(h, w) & valid
    return on, fringe.reshape(h, w) & valid & ~on


def merge_by_colour_reference(objects, owner, rgb, max_lab):
    n_ids = len(owner)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)
    flat = objects.ravel()
    sel = flat > 0
    if not sel.any():
        return objects
    # medians per label: sort by label, take the middle of each run
    order = np.argsort(flat[sel], kind="stable")
    ids = flat[sel][order]
    cols = lab[sel][order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], ids.size]
    colour = np.zeros((n_ids, 3))
    for s, e in zip(starts, ends, strict=True):
        colour[ids[s]] = np.median(cols[s:e], axis=0)
    pairs = []
    for a, b in ((objects[:, 1:], objects[:, :-1]), (objects[1:], objects[:-1])):
        m = (a != b) & (a > 0) & (b > 0)
        pairs.append(np.stack([np.minimum(a[m], b[m]), np.maximum(a[m], b[m])], 1))
    pairs = np.unique(np.concatenate(pairs), axis=0)
    parent = np.arange(n_ids)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    close = np.linalg.norm(colour[pairs[:, 0]] - colour[pairs[:, 1]], axis=1) < max_lab
    close &= owner[pairs[:, 0]] == owner[pairs[:, 1]]
    for a, b in pairs[close]:
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    used = np.unique(objects)
    root = np.arange(n_ids)
    root[used] = [find(int(i)) for i in used]
    return root[objects]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def frame_features():
    """Working-resolution features of a noisy synthetic RGB-D frame (as the encoder computes them)."""
    frame = render_frame(make_scene(3, n_objects=6), degradation=DepthDegradation(), seed=3).frame
    cfg = GeometricConfig()
    f = cfg.work_downsample
    h, w = frame.size
    rgb = cv2.resize(frame.rgb, (w // f, h // f), interpolation=cv2.INTER_AREA)
    depth = downsample_depth(frame.depth_m, frame.depth_m > 0, f)
    k = frame.intrinsics.matrix.copy()
    k[:2] /= f
    return compute_features(rgb, depth, k, cfg), rgb, cfg


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plane_counts_equal_the_matrix_product(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pts = rng.normal(0, 1, (3000, 3))
    normal = rng.normal(0, 1, (50, 3))
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    d = rng.normal(0, 0.5, 50)
    want = (np.abs(pts @ normal.T + d) < 0.3).sum(axis=0)
    assert want.min() > 0 and want.max() < len(pts)  # both sides of the threshold are taken
    np.testing.assert_array_equal(plane_counts(np.ascontiguousarray(pts.T), normal, d, 0.3), want)


def test_ransac_plane_equals_the_numpy_reference_on_a_real_frame(frame_features) -> None:
    feats, _, cfg = frame_features
    pts = feats.points[feats.valid].astype(np.float64)
    for start in range(3):  # three subsamples, each its own seeded draw
        sub = pts[start :: cfg.support_stride][: cfg.support_max_sample]
        got = ransac_plane(sub, cfg.support_ransac_m, cfg.support_iterations, np.random.default_rng(start))
        want = ransac_plane_reference(
            sub, cfg.support_ransac_m, cfg.support_iterations, np.random.default_rng(start)
        )
        np.testing.assert_array_equal(got, want)


def test_plane_distance_is_the_matrix_product_to_the_last_bit() -> None:
    rng = np.random.default_rng(4)
    pts = rng.normal(0, 2, (5000, 3))
    plane = np.array([0.6, 0.0, 0.8, -1.5])
    want = np.abs(pts @ plane[:3] + plane[3])
    np.testing.assert_allclose(plane_distance(np.ascontiguousarray(pts.T), plane), want, rtol=0, atol=1e-14)


@pytest.mark.parametrize("with_normals", [False, True])
def test_support_mask_equals_the_numpy_reference_on_a_real_frame(frame_features, with_normals: bool) -> None:
    feats, _, cfg = frame_features
    normals = feats.normals if with_normals else None
    got = support_mask(feats.points, feats.valid, cfg, normals)
    want = support_mask_reference(feats.points, feats.valid, cfg, normals)
    assert want[0].sum() > 1000  # the frame has a support (the test sees the whole path)
    for g, r in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, r)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_merge_by_colour_equals_the_numpy_reference(seed: int) -> None:
    """Random blocky labels (even and odd label sizes, so both median cases occur), two clusters,
    colours in a few shades so that some neighbours merge and some do not."""
    rng = np.random.default_rng(seed)
    h, w = 60, 80
    objects = np.kron(rng.integers(0, 40, (6, 8)), np.ones((10, 10), np.int64))
    objects[rng.random((h, w)) < 0.05] = 0
    owner = np.r_[0, rng.integers(1, 3, 40)]
    shade = rng.integers(0, 4, 40) * 30
    rgb = np.clip(shade[objects][..., None] + rng.integers(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
    want = merge_by_colour_reference(objects, owner, rgb, 20.0)
    assert len(np.unique(want)) < len(np.unique(objects))  # some labels merged
    np.testing.assert_array_equal(_merge_by_colour(objects, owner, rgb, 20.0), want)


def test_plane_facing_equals_the_float32_product(frame_features) -> None:
    feats, _, _ = frame_features
    normals = feats.normals.reshape(-1, 3)
    axis = np.array([0.3, -0.8, 0.52], np.float32)
    got = plane_facing(normals, axis)
    # the same float32 sum, left to right, without BLAS (whose sgemv fuses multiply-adds on some CPUs)
    by_hand = normals[:, 0] * axis[0] + normals[:, 1] * axis[1] + normals[:, 2] * axis[2]
    np.testing.assert_array_equal(got, np.abs(by_hand))
    np.testing.assert_allclose(got, np.abs(normals @ axis), rtol=0, atol=1e-6)


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("seed", [0, 1])
def test_components_with_areas_equal_opencv_stats(connectivity: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = cv2.GaussianBlur(rng.random((120, 160)).astype(np.float32), (0, 0), 2) > 0.5
    n, labels, areas = components_with_areas(mask, connectivity)
    n_ref, labels_ref, stats, _ = cv2.connectedComponentsWithStats(
        mask.view(np.uint8), connectivity=connectivity, ltype=cv2.CV_32S
    )
    assert n == n_ref > 10
    np.testing.assert_array_equal(labels, labels_ref)
    np.testing.assert_array_equal(areas, stats[:, cv2.CC_STAT_AREA])


@pytest.mark.parametrize("with_normals", [False, True])
def test_band_inliers_equal_the_numpy_steps(with_normals: bool) -> None:
    rng = np.random.default_rng(5)
    n = 5000
    dist = np.abs(rng.normal(0, 0.01, n))
    band = 0.008 + 0.004 * rng.uniform(0.5, 4, n) ** 2
    free = rng.random(n) < 0.8
    facing = rng.random(n).astype(np.float32) if with_normals else np.zeros(0, np.float32)
    undefined = rng.random(n) < 0.1
    cos_max = float(np.cos(np.radians(35.0)))
    floor = 0.012
    want = free & (dist < np.minimum(floor, band))
    if with_normals:
        want &= (facing >= cos_max) | undefined
    want_free = free & ~(dist < 0.01)
    got_free = free.copy()
    got = band_inliers(dist, band, floor, got_free, facing, undefined, np.float32(cos_max), 0.01)
    assert 0 < want.sum() < n
    np.testing.assert_array_equal(got.view(bool), want)
    np.testing.assert_array_equal(got_free, want_free)


def test_opencv_lab_is_per_pixel_so_a_row_of_the_labelled_pixels_gives_the_same_colours() -> None:
    """_merge_by_colour converts only the labelled pixels, as one row; that is the same as
    converting the image only if OpenCV's 8-bit Lab ignores the layout: all 2^24 colours."""
    every = np.arange(1 << 24, dtype=np.uint32).view(np.uint8).reshape(-1, 4)[:, :3].copy()
    square = cv2.cvtColor(every.reshape(4096, 4096, 3), cv2.COLOR_RGB2LAB).reshape(-1, 3)
    rows = cv2.cvtColor(every.reshape(256, 65536, 3), cv2.COLOR_RGB2LAB).reshape(-1, 3)
    np.testing.assert_array_equal(rows, square)
    pick = every[np.random.default_rng(0).integers(0, 1 << 24, 50000)]
    np.testing.assert_array_equal(
        cv2.cvtColor(pick[None], cv2.COLOR_RGB2LAB)[0],
        cv2.cvtColor(pick.reshape(250, 200, 3), cv2.COLOR_RGB2LAB).reshape(-1, 3),
    )

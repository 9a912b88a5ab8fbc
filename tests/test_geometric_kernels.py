"""The numba kernels of the geometric encoder equal the NumPy formulations they replaced, bit for bit.

Each reference below is the vectorised NumPy code the encoder used before the loop was compiled
(models/geometric/kernels.py). Inputs are random (every branch taken many times) and, for the
snap and the patch sums, also the real intermediate maps of an encoded synthetic RGB-D frame.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from clients.sources.synthetic import DepthDegradation, make_scene, render_frame
from models.geometric import GeometricConfig
from models.geometric import regions as regions_module
from models.geometric.features import compute_features, downsample_depth
from models.geometric.graph import _patches
from models.geometric.kernels import boundary_pairs, crease_ridges, patch_sums, snap_kernel, warm_up

# ----------------------------------------------------------------------------- NumPy references


def _first_core_reference(core: np.ndarray, axis: int, forward: bool) -> np.ndarray:
    n = core.shape[axis]
    coord = np.arange(n, dtype=np.int32)
    coord = np.broadcast_to(coord[None, :] if axis == 1 else coord[:, None], core.shape)
    marked = np.full(core.shape, 10**6 if forward else -(10**6), np.int32)
    np.copyto(marked, coord, where=core)
    if forward:
        rev = (slice(None), slice(None, None, -1)) if axis == 1 else (slice(None, None, -1), slice(None))
        return np.minimum.accumulate(marked[rev], axis=axis)[rev]
    return np.maximum.accumulate(marked, axis=axis)


def snap_reference(labels, seeds, band, points, normals, radius):
    change = np.zeros(labels.shape, bool)
    change[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    change[1:] |= labels[1:] != labels[:-1]
    h, w = labels.shape
    near = np.zeros_like(change)
    for v, u in zip(*np.nonzero(change), strict=True):
        near[max(v - radius, 0) : v + radius + 1, max(u - radius, 0) : u + radius + 1] = True
    flat_idx = np.flatnonzero(band & near)
    if flat_idx.size == 0:
        return labels.copy()
    rows, cols = np.divmod(flat_idx, w)
    core = seeds & (normals[..., 2] != 0)
    cand = np.full((4, flat_idx.size), -1, np.int64)
    for k, (axis, forward) in enumerate(((1, True), (1, False), (0, True), (0, False))):
        first = _first_core_reference(core, axis, forward).ravel()[flat_idx].astype(np.int64)
        pos = cols if axis == 1 else rows
        found = np.abs(first - pos) <= radius
        cand[k, found] = (rows[found] * w + first[found]) if axis == 1 else (first[found] * w + cols[found])
    has = cand >= 0
    q = cand[has]
    pixel = np.broadcast_to(flat_idx, cand.shape)[has]
    nrm, pts = normals.reshape(-1, 3), points.reshape(-1, 3)
    dist = np.full(cand.shape, np.inf, np.float32)
    dist[has] = np.abs(np.einsum("ij,ij->i", nrm[q], pts[pixel] - pts[q]))
    best = np.argmin(dist, axis=0)
    decided = np.isfinite(dist[best, np.arange(flat_idx.size)])
    flat_labels = labels.ravel()
    best_lab = flat_labels[flat_idx].copy()
    best_lab[decided] = flat_labels[cand[best[decided], np.flatnonzero(decided)]]
    out = labels.copy()
    out.ravel()[flat_idx] = best_lab
    return out


def patch_sums_reference(patch, seeds, points, normals, rgb, n):
    use = np.flatnonzero(seeds.ravel() & (normals[..., 2] != 0).ravel())
    ids = patch.ravel()[use]
    pts = points.reshape(-1, 3)[use].T
    nrm = normals.reshape(-1, 3)[use].T
    count = np.bincount(ids, minlength=n).astype(np.float64)
    normal = np.stack([np.bincount(ids, nrm[k], n) for k in range(3)], 1)
    centre = np.stack([np.bincount(ids, p, n) for p in pts], 1)
    sq = np.bincount(ids, pts[0] * pts[0] + pts[1] * pts[1] + pts[2] * pts[2], n)
    sub, sub_rgb = patch[::2, ::2].ravel(), rgb[::2, ::2].reshape(-1, 3)
    colour = np.stack([np.bincount(sub, sub_rgb[:, k], n) for k in range(3)], 1)
    return count, normal, centre, sq, colour


def crease_reference(nx, ny, nz, good, inv_scale2, cum_x, cum_y, px, py, pz, s, thr_convex, thr_concave):
    h, w = nx.shape
    thr_low = min(thr_convex, thr_concave)
    convex, concave = np.zeros(h * w, bool), np.zeros(h * w, bool)
    flat_n, flat_p = (nx.ravel(), ny.ravel(), nz.ravel()), (px.ravel(), py.ravel(), pz.ravel())
    for axis, cum, a, b, c in (
        (1, cum_x, np.s_[:, : w - 2 * s], np.s_[:, 2 * s :], np.s_[:, s : w - s]),
        (0, cum_y, np.s_[: h - 2 * s, :], np.s_[2 * s :, :], np.s_[s : h - s, :]),
    ):
        dnx, dny, dnz = nx[a] - nx[b], ny[a] - ny[b], nz[a] - nz[b]
        diff2 = np.zeros((h, w), np.float32)
        diff2[c] = (dnx * dnx + dny * dny + dnz * dnz) * inv_scale2[c]
        diff2[c] *= good[a] & good[b] & (cum[a] == cum[b])
        idx = np.flatnonzero(diff2 > thr_low)
        step = s if axis == 1 else s * w
        ia, ib = idx - step, idx + step
        sign = sum((n[ia] - n[ib]) * (p[ia] - p[ib]) for n, p in zip(flat_n, flat_p, strict=True))
        d2, one = diff2.ravel(), 1 if axis == 1 else w
        here = d2[idx]
        ridge = (here >= d2[np.maximum(idx - one, 0)]) & (here >= d2[np.minimum(idx + one, h * w - 1)])
        if axis == 1:
            col = idx % w
            ridge &= (col > 0) & (col < w - 1)
        convex[idx[ridge & (sign > 0) & (here > thr_convex)]] = True
        concave[idx[ridge & (sign <= 0) & (here > thr_concave)]] = True
    return convex.reshape(h, w), concave.reshape(h, w)


def boundary_pairs_reference(labels):
    h, w = labels.shape
    out = []
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
        rows, cols = np.nonzero((a != b) & (a > 0) & (b > 0))
        out.append(rows * w + cols)
    return tuple(out)


# ----------------------------------------------------------------------------- inputs


def _unit_normals(rng: np.random.Generator, h: int, w: int, smooth: bool) -> np.ndarray:
    n = rng.standard_normal((h, w, 3)).astype(np.float32)
    if smooth:  # piecewise-constant patches with noise: creases between them, flat inside
        blocks = np.repeat(np.repeat(n[::8, ::8], 8, 0), 8, 1)[:h, :w]
        n = blocks + 0.05 * rng.standard_normal((h, w, 3)).astype(np.float32)
    n /= np.linalg.norm(n, axis=2, keepdims=True)
    n[..., 2] = -np.abs(n[..., 2])
    return np.ascontiguousarray(n)


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
    return compute_features(rgb, depth, k, cfg), cfg


def test_warm_up_compiles_every_kernel() -> None:
    warm_up()
    for kernel in (snap_kernel, patch_sums, crease_ridges, boundary_pairs):
        assert kernel.signatures, f"{kernel.__name__} was not compiled"


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("smooth", [False, True])
def test_crease_ridges_equal_the_numpy_reference(seed: int, smooth: bool) -> None:
    rng = np.random.default_rng(seed)
    h, w = 61, 83
    n = _unit_normals(rng, h, w, smooth)
    nx, ny, nz = (np.ascontiguousarray(n[..., k]) for k in range(3))
    px, py, pz = (rng.uniform(0.2, 4.0, (h, w)).astype(np.float32) for _ in range(3))
    good = rng.random((h, w)) > 0.1
    inv_scale2 = rng.uniform(0.3, 1.0, (h, w)).astype(np.float32)
    cum_x = np.cumsum(rng.random((h, w)) > 0.97, axis=1).astype(np.int32)
    cum_y = np.cumsum(rng.random((h, w)) > 0.97, axis=0).astype(np.int32)
    thr_convex = np.float32(2 - 2 * np.cos(np.deg2rad(40)))
    thr_concave = np.float32(2 - 2 * np.cos(np.deg2rad(35)))
    for s in (1, 3):
        args = (nx, ny, nz, good, inv_scale2, cum_x, cum_y, px, py, pz, s, thr_convex, thr_concave)
        got, want = crease_ridges(*args), crease_reference(*args)
        assert want[0].any() and want[1].any(), "the inputs must produce both kinds of crease"
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("seed", [0, 1])
def test_snap_equals_the_numpy_reference_on_random_maps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = 57, 71
    labels = (np.repeat(np.repeat(rng.integers(1, 6, (8, 10)), 8, 0), 8, 1)[:h, :w]).astype(np.int32)
    seeds = rng.random((h, w)) > 0.4
    band = ~seeds & (rng.random((h, w)) > 0.2)
    points = rng.uniform(0.5, 3.0, (h, w, 3)).astype(np.float32)
    normals = _unit_normals(rng, h, w, smooth=False)
    normals[rng.random((h, w)) > 0.9] = 0.0  # pixels without a normal are never planes
    for radius in (1, 6):
        want = snap_reference(labels, seeds, band, points, normals, radius)
        assert (want != labels).any(), "the inputs must move some band pixels"
        np.testing.assert_array_equal(snap_kernel(labels, seeds, band, points, normals, radius), want)


def test_snap_and_patch_sums_equal_the_numpy_references_on_a_real_frame(frame_features) -> None:
    f, cfg = frame_features
    core = f.valid & ~f.depth_edge & ~f.concave & (f.colour_step < cfg.colour_step)
    n, labels = regions_module._components(core)
    seeds = labels > 0
    labels = regions_module.reassign(labels, f.valid & ~seeds, cfg.reassign_max_px)
    band = f.valid & ~seeds & (labels > 0)
    want = snap_reference(labels, seeds, band, f.points, f.normals, cfg.band_radius_px)
    assert (want != labels).sum() > 50
    got = snap_kernel(labels, seeds, band, f.points, f.normals, cfg.band_radius_px)
    np.testing.assert_array_equal(got, want)

    n_patch, patch, _ = _patches(got, int(got.max()) + 1, cfg.cell_px)
    for a, b in zip(
        patch_sums(patch, seeds, f.points, f.normals, f.rgb, n_patch),
        patch_sums_reference(patch, seeds, f.points, f.normals, f.rgb, n_patch),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("seed", [0, 1])
def test_boundary_pairs_equal_numpy_nonzero(seed: int, frame_features) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, (37, 53)).astype(np.int32)  # zeros included: never a pair
    f, cfg = frame_features
    parts = regions_module.build_work_labels(f, cfg, 8, 1000).part  # labels that touch
    for case in (labels, parts, np.zeros((5, 7), np.int32), np.ones((1, 9), np.int32)):
        got, want = boundary_pairs(case), boundary_pairs_reference(case)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)
    assert boundary_pairs(labels)[0].size > 100 and boundary_pairs(parts)[1].size > 100

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
from models.geometric.kernels import plane_counts
from models.geometric.support import ransac_plane

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
    np.testing.assert_array_equal(plane_counts(pts, normal, d, 0.3), want)


def test_ransac_plane_equals_the_numpy_reference_on_a_real_frame(frame_features) -> None:
    feats, _, cfg = frame_features
    pts = feats.points[feats.valid].astype(np.float64)
    for start in range(3):  # three subsamples, each its own seeded draw
        sub = pts[start :: cfg.support_stride][: cfg.support_max_sample]
        got = ransac_plane(sub, cfg.support_ransac_m, cfg.support_iterations, np.random.default_rng(start))
        want = ransac_plane_reference(sub, cfg.support_ransac_m, cfg.support_iterations, np.random.default_rng(start))
        np.testing.assert_array_equal(got, want)

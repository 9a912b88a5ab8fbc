"""Working-resolution label maps -> full-resolution ones with depth-true silhouettes.

Nearest-neighbour upsampling by a factor f leaves every boundary up to f - 1 pixels off. Where
the boundary is a depth discontinuity that error is visible (a rim of wall on the object or a bite
out of it) and it biases the 3D lift, so each full-resolution pixel next to a label change is
re-decided: it switches to a nearby label (within f pixels along the 4 axes) when that label's
pixel is closer in depth by more than half the depth-jump threshold. Boundaries on creases or
colour (no depth difference) keep the upsampled position.
"""

from __future__ import annotations

import cv2
import numpy as np

from models.geometric.config import GeometricConfig


def upsample_nearest(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w) int32 -> (height, width) int32, nearest neighbour."""
    if labels.shape == (height, width):
        return labels
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)


def refine_by_depth(
    labels: np.ndarray, depth: np.ndarray, near_edge: np.ndarray, reach: int, cfg: GeometricConfig
) -> np.ndarray:
    """Move label boundaries onto depth discontinuities.

    Args:
        labels: (H, W) int32 upsampled labels, 0 = none.
        depth: (H, W) float32 metres, 0 = invalid (invalid pixels are left as they are).
        near_edge: (H, W) bool, pixels near a depth edge found at the working resolution; only
            those are re-decided (elsewhere boundaries have no depth step to snap to).
        reach: how far (pixels) to look for the other side's label, >= the upsampling factor.
        cfg: depth-jump threshold parameters.
    Returns a refined copy.
    """
    h, w = labels.shape
    horiz = labels[:, :-1] != labels[:, 1:]
    vert = labels[:-1] != labels[1:]
    change = np.zeros((h, w), bool)
    change[:, :-1] |= horiz
    change[:, 1:] |= horiz
    change[:-1] |= vert
    change[1:] |= vert
    change &= near_edge
    change &= depth > 0
    rows, cols = np.nonzero(change)
    if rows.size == 0:
        return labels
    pad = reach
    lab = np.pad(labels, pad)
    dep = np.pad(depth, pad)
    wp = w + 2 * pad
    idx = (rows + pad) * wp + cols + pad
    flat_lab, flat_dep = lab.ravel(), dep.ravel()
    own_lab = flat_lab[idx]
    own_dep = flat_dep[idx]
    best_same = np.full(idx.size, np.inf, np.float32)
    best_other = np.full(idx.size, np.inf, np.float32)
    other_lab = np.zeros(idx.size, np.int32)
    for d in range(1, reach + 1):
        for off in (d, -d, d * wp, -d * wp):
            nb_lab = flat_lab[idx + off]
            nb_dep = flat_dep[idx + off]
            cost = np.abs(nb_dep - own_dep)
            cost[(nb_lab == 0) | (nb_dep <= 0)] = np.inf
            same = nb_lab == own_lab
            np.minimum(best_same, np.where(same, cost, np.inf), out=best_same)
            better = ~same & (cost < best_other)
            best_other[better] = cost[better]
            other_lab[better] = nb_lab[better]
    margin = 0.5 * (cfg.jump_abs_m + own_dep * (cfg.jump_rel + cfg.jump_quad * own_dep))
    switch = (other_lab > 0) & (best_other + margin < best_same)
    out = labels.copy()
    out.ravel()[rows[switch] * w + cols[switch]] = other_lab[switch]
    return out

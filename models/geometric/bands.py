"""Edge-band pixels go to the surface whose local plane they lie on.

Edges are bands a few pixels wide (a crease's normals change over the whole smoothing window; a
depth edge drags a flying pixel with it). Handing band pixels to the nearest component splits a
band down its middle, which on a small object is a visible rim of floor or a bite out of it.
Instead, each band pixel looks along the four axes for the first core pixel of each side
(up to `radius` pixels) and joins the one whose tangent plane (that core pixel's point and
normal) passes closest to its own 3D point. At a concave contact the object's face plane and
the floor plane meet exactly at the contact line; at a depth edge the background plane is far
from a foreground point: both boundaries land where the geometry puts them.
"""

from __future__ import annotations

import numpy as np

_DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0))


def snap_to_planes(
    labels: np.ndarray,
    seeds: np.ndarray,
    band: np.ndarray,
    points: np.ndarray,
    normals: np.ndarray,
    radius: int,
) -> np.ndarray:
    """Re-decide band pixels by point-to-plane distance.

    Args:
        labels: (h, w) int32 labels after nearest re-assignment (every band pixel labelled).
        seeds: (h, w) bool core pixels (their label and normal are trusted).
        band: (h, w) bool pixels to re-decide.
        points: (h, w, 3) float32 camera-frame points; normals: (h, w, 3) float32 unit normals
            (zero where undefined: such core pixels are not used as planes).
        radius: how far along each axis to look for a core pixel.
    Returns the re-decided (h, w) int32 labels (a copy).
    """
    h, w = labels.shape
    rows, cols = np.nonzero(band)
    if rows.size == 0:
        return labels
    pad = radius
    wp = w + 2 * pad
    lab = np.pad(labels * seeds, pad).ravel()
    good = np.pad(seeds & (normals[..., 2] != 0), pad).ravel()
    pts = np.pad(points, ((pad, pad), (pad, pad), (0, 0))).reshape(-1, 3)
    nrm = np.pad(normals, ((pad, pad), (pad, pad), (0, 0))).reshape(-1, 3)
    idx = (rows + pad) * wp + cols + pad
    own = pts[idx]
    best = np.full(idx.size, np.inf, np.float32)
    best_lab = labels[rows, cols].copy()
    for dy, dx in _DIRECTIONS:
        step = dy * wp + dx
        hit = np.zeros(idx.size, np.int64)  # flat index of the first core pixel, 0 = none yet
        for d in range(1, radius + 1):
            q = idx + d * step
            new = (hit == 0) & good[q]
            hit[new] = q[new]
        found = hit > 0
        q = hit[found]
        dist = np.abs(np.sum(nrm[q] * (own[found] - pts[q]), axis=1))
        sel = np.flatnonzero(found)
        better = dist < best[sel]
        best[sel[better]] = dist[better]
        best_lab[sel[better]] = lab[q[better]]
    out = labels.copy()
    out[rows, cols] = best_lab
    return out

"""Edge-band pixels go to the surface whose local plane they lie on.

Edges are bands a few pixels wide (a crease's normals change over the whole smoothing window; a
depth edge drags a flying pixel with it). Handing band pixels to the nearest component splits a
band down its middle, which on a small object is a visible rim of floor or a bite out of it.
Instead, each band pixel looks along the four axes for the first core pixel on each side
(up to `radius` pixels away) and joins the one whose tangent plane (that core pixel's normal
through its point) passes closest to its own 3D point. At a concave contact the object's face
plane and the floor plane meet exactly at the contact line; at a depth edge the background plane
is far from a foreground point: both boundaries land where the geometry puts them.
"""

from __future__ import annotations

import cv2
import numpy as np

_NONE = np.int16(30000)


def _first_core(core: np.ndarray, axis: int, forward: bool) -> np.ndarray:
    """(h, w) int16: coordinate along `axis` of the first core pixel at or after (forward) or at
    or before each pixel; far out of range (|value| >= 30000) where there is none. One
    cumulative scan, O(h w)."""
    n = core.shape[axis]
    coord = np.arange(n, dtype=np.int16)
    coord = np.broadcast_to(coord[None, :] if axis == 1 else coord[:, None], core.shape)
    marked = np.full(core.shape, _NONE if forward else -_NONE, np.int16)
    np.copyto(marked, coord, where=core)
    if forward:
        rev = (slice(None), slice(None, None, -1)) if axis == 1 else (slice(None, None, -1), slice(None))
        return np.minimum.accumulate(marked[rev], axis=axis)[rev]
    return np.maximum.accumulate(marked, axis=axis)


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
    if max(labels.shape) >= 30000:
        raise ValueError(f"snap_to_planes supports images up to 29999 pixels a side, got {labels.shape}")
    # Only pixels near a label change have a decision to make.
    change = np.zeros(labels.shape, bool)
    change[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    change[1:] |= labels[1:] != labels[:-1]
    near = cv2.dilate(change.view(np.uint8), np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)).view(bool)
    h, w = labels.shape
    flat_idx = np.flatnonzero(band & near)
    if flat_idx.size == 0:
        return labels
    rows, cols = np.divmod(flat_idx, w)
    core = seeds & (normals[..., 2] != 0)
    # flat index of the first core pixel along each of the four axes (-1: none within radius)
    cand = np.full((4, flat_idx.size), -1, np.int64)
    for k, (axis, forward) in enumerate(((1, True), (1, False), (0, True), (0, False))):
        first = _first_core(core, axis, forward).ravel()[flat_idx].astype(np.int64)
        pos = cols if axis == 1 else rows
        found = np.abs(first - pos) <= radius
        cand[k, found] = (rows[found] * w + first[found]) if axis == 1 else (first[found] * w + cols[found])
    has = cand >= 0
    q = cand[has]
    pixel = np.broadcast_to(flat_idx, cand.shape)[has]
    nrm = normals.reshape(-1, 3)
    pts = points.reshape(-1, 3)
    dist = np.full(cand.shape, np.inf, np.float32)
    at_q = np.take(pts, q, axis=0)  # np.take: several times faster than row fancy-indexing
    dist[has] = np.abs(np.einsum("ij,ij->i", np.take(nrm, q, axis=0), np.take(pts, pixel, axis=0) - at_q))
    best = np.argmin(dist, axis=0)
    decided = np.isfinite(dist[best, np.arange(flat_idx.size)])
    flat_labels = labels.ravel()
    best_lab = flat_labels[flat_idx].copy()
    best_lab[decided] = flat_labels[cand[best[decided], np.flatnonzero(decided)]]
    out = labels.copy()
    out.ravel()[flat_idx] = best_lab
    return out

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

import numpy as np

from models.geometric.kernels import snap_kernel


def snap_to_planes(
    labels: np.ndarray,
    seeds: np.ndarray,
    band: np.ndarray,
    points: np.ndarray,
    normals: np.ndarray,
    radius: int,
) -> np.ndarray:
    """Re-decide band pixels by point-to-plane distance (the loop is kernels.snap_kernel).

    Only band pixels with a label change within `radius` pixels have a decision to make; each
    looks along the four axes for the first core pixel (a seed with a normal) up to `radius`
    away and takes the label of the one whose tangent plane lies closest to its own point.

    Args:
        labels: (h, w) int32 labels after nearest re-assignment (every band pixel labelled).
        seeds: (h, w) bool core pixels (their label and normal are trusted).
        band: (h, w) bool pixels to re-decide.
        points: (h, w, 3) float32 camera-frame points; normals: (h, w, 3) float32 unit normals
            (zero where undefined: such core pixels are not used as planes).
        radius: how far along each axis to look for a core pixel.
    Returns the re-decided (h, w) int32 labels (a copy).
    """
    return snap_kernel(
        np.ascontiguousarray(labels, np.int32),
        np.ascontiguousarray(seeds, bool),
        np.ascontiguousarray(band, bool),
        np.ascontiguousarray(points, np.float32),
        np.ascontiguousarray(normals, np.float32),
        int(radius),
    )

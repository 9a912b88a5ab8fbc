"""Which viewing directions around the object have been seen: a coarse view sphere.

Why: a user walking around an object cannot see the holes of a mesh that is not built yet. The
direction from the object's centroid to each integrating camera falls in one of 12 or 20 bins
(the vertices of an icosahedron or a dodecahedron: evenly spread directions); bins with no view
are where to walk next. Directions are in the world frame of the poses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_PHI = (1.0 + 5.0**0.5) / 2.0


def bin_directions(n: int) -> np.ndarray:
    """(n, 3) float64 unit vectors: icosahedron (n=12) or dodecahedron (n=20) vertices."""
    if n == 12:
        v = [(0, s1, s2 * _PHI) for s1 in (-1, 1) for s2 in (-1, 1)]
        v = v + [(s1, s2 * _PHI, 0) for s1 in (-1, 1) for s2 in (-1, 1)]
        v = v + [(s2 * _PHI, 0, s1) for s1 in (-1, 1) for s2 in (-1, 1)]
    elif n == 20:
        v = [(a, b, c) for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)]
        v = v + [(0, s1 / _PHI, s2 * _PHI) for s1 in (-1, 1) for s2 in (-1, 1)]
        v = v + [(s1 / _PHI, s2 * _PHI, 0) for s1 in (-1, 1) for s2 in (-1, 1)]
        v = v + [(s2 * _PHI, 0, s1 / _PHI) for s1 in (-1, 1) for s2 in (-1, 1)]
    else:
        raise ValueError(f"view sphere bins must be 12 or 20, got {n}")
    d = np.asarray(v, np.float64)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def view_bin(directions: np.ndarray, centroid: np.ndarray, camera_center: np.ndarray) -> int | None:
    """Index of the bin nearest to the direction centroid -> camera, or None when they coincide."""
    d = np.asarray(camera_center, np.float64) - np.asarray(centroid, np.float64)
    norm = float(np.linalg.norm(d))
    if norm < 1e-9:
        return None
    return int(np.argmax(directions @ (d / norm)))


@dataclass(frozen=True, eq=False)
class Coverage:
    """Views per bin so far.

    Attributes:
        directions: (B, 3) float64 unit vectors of the bins (world frame, from the centroid).
        counts: (B,) int64 integrated frames whose camera fell in each bin.
    """

    directions: np.ndarray
    counts: np.ndarray

    @classmethod
    def empty(cls, n: int) -> Coverage:
        return cls(bin_directions(n), np.zeros(n, np.int64))

    def with_view(self, index: int | None) -> Coverage:
        if index is None:
            return self
        counts = self.counts.copy()
        counts[index] += 1
        return Coverage(self.directions, counts)

    def recount(self, centroid: np.ndarray, camera_centers: np.ndarray) -> Coverage:
        """Counts of all camera centres (N, 3) around a (moved) centroid."""
        counts = np.zeros(len(self.directions), np.int64)
        for c in np.asarray(camera_centers, np.float64).reshape(-1, 3):
            i = view_bin(self.directions, centroid, c)
            if i is not None:
                counts[i] += 1
        return Coverage(self.directions, counts)

    @property
    def seen(self) -> np.ndarray:
        """(B,) bool."""
        return self.counts > 0

    @property
    def fraction(self) -> float:
        """Share of bins with at least one view (1.0 = seen from every direction)."""
        return float(self.seen.mean())

    def missing(self) -> np.ndarray:
        """(M, 3) directions still unseen: walk there (some, e.g. below a table top, cannot be reached)."""
        return self.directions[~self.seen]

"""The depth snap's pixel-growing loop, compiled with numba.

Why: `clean._snap_to_depth` decides pixel by pixel whether a candidate joins the region (its
valid depth matches that of one of its 8 neighbours already in it), for one removal pass and up
to `snap_radius_px` growth steps. In NumPy each step gathers an (n, 8) block of neighbour indices
and depths with half a dozen temporaries, plus padded copies of the region and depth; as one
compiled loop over the candidates it costs a few operations per candidate, and `nogil=True` lets
mask cleaning run on a worker thread without holding the GIL.

The kernel reproduces the NumPy formulation it replaced operation for operation (same float32
arithmetic for the tolerance and the depth difference, same synchronous steps, same early exit),
so cleaned masks are unchanged bit for bit; tests/test_mask_clean_kernels.py checks it against
the NumPy reference on random and real masks.

Kernels are compiled on first use and cached next to this file (numba's `cache=True`). The first
call in a process costs ~0.3 s with the cache (numba's start-up, nothing when another kernel ran
before) and ~2 s without; `warm_up()` pays that ahead of the first prompt for a caller that wants
to (the geometric encoder's own warm-up already covers numba's start-up).
"""

from __future__ import annotations

import numba
import numpy as np

_JIT = {"cache": True, "nogil": True}


@numba.njit(**_JIT)
def grow_region(
    region: np.ndarray,
    depth: np.ndarray,
    candidates: np.ndarray,
    steps: int,
    rel_tol: np.float32,
    abs_tol: np.float32,
) -> int:
    """Grow `region` ((h, w) uint8 0/1, modified in place) into `candidates` (flat indices into it, int64).

    A step adds every candidate not in the region whose valid depth d matches the valid depth nd
    of one of its 8 neighbours in the region, |nd - d| <= max(rel_tol * d, abs_tol) in float32,
    judged against the region as it was before the step (the accepted pixels are set after all
    were judged). Pixels outside the image are not in the region. Runs up to `steps` steps and
    stops after the first that adds nothing; returns the number of steps that added pixels.
    """
    h, w = region.shape
    todo = np.empty(candidates.size, np.int64)
    n = 0
    for k in candidates:
        if region[k // w, k % w] == 0:
            todo[n] = k
            n += 1
    accepted = np.zeros(n, np.bool_)
    grown = 0
    for _ in range(steps):
        added = False
        for i in range(n):
            y, x = todo[i] // w, todo[i] % w
            d = depth[y, x]
            ok = False
            if d > 0:
                tol = rel_tol * d
                if tol < abs_tol:
                    tol = abs_tol
                for yy in range(max(y - 1, 0), min(y + 2, h)):
                    for xx in range(max(x - 1, 0), min(x + 2, w)):
                        if region[yy, xx] == 0 or (yy == y and xx == x):
                            continue
                        nd = depth[yy, xx]
                        if nd > 0 and abs(nd - d) <= tol:
                            ok = True
                            break
                    if ok:
                        break
            accepted[i] = ok
            added |= ok
        if not added:
            break
        # set the accepted pixels; the rest stay candidates for the next step
        m = 0
        for i in range(n):
            k = todo[i]
            if accepted[i]:
                region[k // w, k % w] = 1
            else:
                todo[m] = k
                m += 1
        n = m
        grown += 1
    return grown


def warm_up() -> None:
    """Compile (or load from the cache) every kernel now, on tiny inputs."""
    region = np.zeros((4, 4), np.uint8)
    region[1, 1] = 1
    depth = np.ones((4, 4), np.float32)
    grow_region(region, depth, np.arange(16), 1, np.float32(0.02), np.float32(0.01))

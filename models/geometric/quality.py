"""Per-label quality scores: how much a label's outline looks like a real object boundary.

There is no learned IoU head, so the score is an honest heuristic, computed once per frame for
every label of every level (the decoder only looks them up):

    score = boundary_support * size_prior, in [0, 1]

boundary_support is the mean, over the label's outline (pixel pairs where the label changes),
of the strongest evidence at that pair:
    depth discontinuity 1.0 > concave crease 0.9 > convex crease 0.6 > colour step 0.5
    > image border 0.1 > nothing 0.0 (a cut made only by band re-assignment or the object
    graph); boundaries along sensor holes are left out (no evidence either way).
An object standing free is outlined by depth edges and its concave contact (score near 1); a box
face is partly outlined by convex creases (lower); the floor or a wall runs into the image border
(lower still).

size_prior penalises tiny masks (noise: below min_frac of the image, falling as sqrt) and huge
ones (floors, walls, "everything touching": from 1 at 25 % of the image down to 0.1 at 90 %).
It is not a calibrated IoU; it ranks the three granularities of one prompt sensibly.
"""

from __future__ import annotations

import cv2
import numpy as np

from models.geometric.features import GeometricFeatures
from models.geometric.kernels import boundary_pairs

WEIGHT_DEPTH = 100
WEIGHT_CONCAVE = 90
WEIGHT_CONVEX = 60
WEIGHT_COLOUR = 50
WEIGHT_BORDER = 10


def evidence_map(f: GeometricFeatures, colour_step: int) -> np.ndarray:
    """(h, w) uint8 0..100: strongest edge evidence at or next to each pixel (3x3 max)."""
    ev = np.zeros(f.colour_step.shape, np.uint8)
    ev[f.colour_step >= colour_step] = WEIGHT_COLOUR
    ev[f.convex] = WEIGHT_CONVEX
    ev[f.concave] = WEIGHT_CONCAVE
    ev[f.depth_edge] = WEIGHT_DEPTH
    return cv2.dilate(ev, np.ones((3, 3), np.uint8))


def level_scores(
    part: np.ndarray, luts: tuple[np.ndarray, ...], evidence: np.ndarray, min_frac: float = 0.002
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Scores and areas of every label of every level, from the part map.

    Coarser levels are LUTs over part labels, and their boundaries are a subset of the part
    boundaries, so the boundary pixel pairs are found once and relabelled per level.

    Args:
        part: (h, w) int32 part labels, 0 = none.
        luts: per level, (n_part,) int32 level label of every part label (np.arange for parts).
        evidence: (h, w) uint8 evidence_map.
    Returns (scores, areas): per level, (n_level,) float32 scores in 0..1 (index 0 scores 0)
    and (n_level,) float64 areas in pixels of this map.
    """
    h, w = part.shape
    flat_part, flat_ev = part.ravel(), evidence.ravel()
    # a boundary with a sensor hole (label 0) says nothing either way: it does not count
    first_x, first_y = boundary_pairs(np.ascontiguousarray(part, np.int32))
    ia, ib = np.concatenate([first_x, first_y]), np.concatenate([first_x + 1, first_y + w])
    la, lb = flat_part[ia], flat_part[ib]
    wgt = np.maximum(flat_ev[ia], flat_ev[ib]).astype(np.float64)
    border = np.concatenate([part[0], part[-1], part[1:-1, 0], part[1:-1, -1]])
    part_area = np.bincount(part.ravel(), minlength=len(luts[0])).astype(np.float64)

    scores, areas = [], []
    for lut in luts:
        n = int(lut.max()) + 1
        a, b = lut[la], lut[lb]
        cut = a != b
        a, b, w = a[cut], b[cut], wgt[cut]
        sums = np.bincount(a, w, n) + np.bincount(b, w, n)
        counts = (np.bincount(a, minlength=n) + np.bincount(b, minlength=n)).astype(np.float64)
        edge = np.bincount(lut[border], minlength=n)
        sums += edge * WEIGHT_BORDER
        counts += edge
        support = np.where(counts > 0, sums / np.maximum(counts, 1) / 100.0, 0.0)
        area = np.bincount(lut, part_area, n)
        frac = area / part.size
        small = np.sqrt(np.clip(frac / min_frac, 0.0, 1.0))
        large = np.interp(frac, [0.25, 0.9], [1.0, 0.1])
        score = (support * small * large).astype(np.float32)
        score[0] = 0.0
        scores.append(score)
        areas.append(area)
    return tuple(scores), tuple(areas)


def prefer_clusters(
    scores: tuple[np.ndarray, ...],
    part_to_object: np.ndarray,
    part_to_region: np.ndarray,
    is_cluster: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """Rank an object cluster (support.py) above its parts and its region.

    A cluster is what stands on a support without a depth jump inside: on real data it is the
    object far more often than any piece of it (the drill with its handle, the bottle with its
    cap), so its score is raised to at least 0.55 + 0.45 s, and its parts' and region's scores
    are halved (the region of a cluster is the same mask). Labels off clusters keep their score.
    """
    part_s, obj_s, reg_s = (s.copy() for s in scores)
    obj_s[is_cluster] = np.maximum(obj_s[is_cluster], 0.55 + 0.45 * obj_s[is_cluster])
    in_cluster = is_cluster[part_to_object]
    part_s[in_cluster] *= 0.5
    reg_of_cluster = np.unique(part_to_region[in_cluster])
    reg_s[reg_of_cluster[reg_of_cluster > 0]] *= 0.5
    part_s[0] = obj_s[0] = reg_s[0] = 0.0
    return part_s, obj_s, reg_s

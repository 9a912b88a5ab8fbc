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


def label_scores(labels: np.ndarray, n: int, evidence: np.ndarray, min_frac: float = 0.002) -> np.ndarray:
    """(n,) float32 score of every label of an (h, w) int32 map (index 0, 'no label', scores 0)."""
    sums = np.zeros(n, np.float64)
    counts = np.zeros(n, np.float64)
    for a, b, ea, eb in (
        (labels[:, :-1], labels[:, 1:], evidence[:, :-1], evidence[:, 1:]),
        (labels[:-1], labels[1:], evidence[:-1], evidence[1:]),
    ):
        diff = a != b
        la, lb = a[diff], b[diff]
        wgt = np.maximum(ea[diff], eb[diff]).astype(np.float64)
        # a boundary with a sensor hole says nothing either way: it does not count
        known = ((la != 0) & (lb != 0)).astype(np.float64)
        for lab in (la, lb):
            sums += np.bincount(lab, weights=wgt * known, minlength=n)
            counts += np.bincount(lab, weights=known, minlength=n)
    border = np.concatenate([labels[0], labels[-1], labels[1:-1, 0], labels[1:-1, -1]])
    border_count = np.bincount(border, minlength=n)
    sums += border_count * WEIGHT_BORDER
    counts += border_count
    support = np.where(counts > 0, sums / np.maximum(counts, 1) / 100.0, 0.0)

    frac = np.bincount(labels.ravel(), minlength=n) / labels.size
    small = np.sqrt(np.clip(frac / min_frac, 0.0, 1.0))
    large = np.interp(frac, [0.25, 0.9], [1.0, 0.1])
    score = support * small * large
    score[0] = 0.0
    return score.astype(np.float32)

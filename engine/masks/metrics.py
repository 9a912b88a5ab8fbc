"""How close a mask is to the truth: region IoU and the boundary F-score of DAVIS.

Why both: IoU is dominated by the object's interior and barely moves when a boundary is off by
two pixels; the boundary F-score (Perazzi et al. 2016, the DAVIS "F" measure) scores exactly that,
which is what mask cleaning changes. Both are O(frame) and meant for tests and benchmarks, not
the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class BoundaryScore:
    """Boundary precision (share of predicted boundary pixels near the true boundary), recall
    (share of true boundary pixels near the predicted one) and their harmonic mean f, in 0..1."""

    precision: float
    recall: float
    f: float


def mask_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two (H, W) masks (bool, or any dtype with 0 = outside), in 0..1.

    The project's one IoU. Both empty scores 1.0: an absent object predicted absent is a perfect
    answer (the DAVIS J convention), and a benchmark must not punish it. Callers for which an
    empty pair means "nothing to compare" (tracking's agreement checks) test `.any()` first.

    Raises:
        ValueError: the masks are not 2D or differ in shape.
    """
    p, t = _pair(pred, truth)
    union = np.count_nonzero(p | t)
    return 1.0 if union == 0 else np.count_nonzero(p & t) / union


def boundary(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool one-pixel inner boundary: mask pixels with a 4-neighbour outside the mask.

    The image border counts as outside, as in DAVIS's seg2bmap.
    """
    m = np.ascontiguousarray(np.asarray(mask) != 0).view(np.uint8)
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    inner = cv2.erode(m, cross, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (m > 0) & (inner == 0)


def boundary_f_score(pred: np.ndarray, truth: np.ndarray, tolerance_px: float = 2.0) -> BoundaryScore:
    """DAVIS boundary F-measure with a match tolerance in pixels (Euclidean distance).

    A predicted boundary pixel is correct when a true boundary pixel lies within tolerance_px,
    and vice versa for recall. DAVIS uses ceil(0.008 * image diagonal) (7 px at 640x480); 2 px
    is stricter and resolves the few-pixel boundary errors of SAM. Both empty scores 1.
    """
    p, t = _pair(pred, truth)
    bp, bt = boundary(p), boundary(t)
    n_p, n_t = int(bp.sum()), int(bt.sum())
    if n_p == 0 and n_t == 0:
        return BoundaryScore(1.0, 1.0, 1.0)
    if n_p == 0 or n_t == 0:
        return BoundaryScore(0.0, 0.0, 0.0)
    to_truth = cv2.distanceTransform((~bt).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    to_pred = cv2.distanceTransform((~bp).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    precision = float(np.count_nonzero(to_truth[bp] <= tolerance_px)) / n_p
    recall = float(np.count_nonzero(to_pred[bt] <= tolerance_px)) / n_t
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return BoundaryScore(precision, recall, f)


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred) != 0, np.asarray(truth) != 0
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"masks must be 2D and the same shape, got {p.shape} and {t.shape}")
    return p, t

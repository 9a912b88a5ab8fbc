"""Segment everything: a point grid through the decoder, filtered and de-duplicated as SAM does.

This is segment-anything's automatic mask generator (`SamAutomaticMaskGenerator`, one crop
layer) over our decoder interface, so it works with every backend:

1. a regular grid of `points_per_side`^2 positive points (cell centres, SAM's `build_point_grid`);
2. the points go through the decoder `points_per_batch` at a time (`predict_prompts`: one
   `predict_batch` call for backends that have it), each with multimask output;
3. every candidate mask is kept only if its predicted IoU >= `pred_iou_thresh` and its stability
   score >= `stability_score_thresh`; the stability score is the IoU of the mask thresholded at
   +offset and -offset on the logits (on the decoder's low-resolution logits when it returns
   them; a label-map decoder without logits returns binary masks, whose stability is 1);
4. exact duplicates are merged (the geometric decoder returns the same label for every grid point
   on one surface), then box non-maximum suppression (OpenCV's `cv2.dnn.NMSBoxes`) at
   `box_nms_thresh` keeps the best-scoring mask among overlapping ones.

Masks come back in the embedding's pixels, best first. Memory stays bounded: kept masks are
stored bit-packed and de-duplicated as the batches go.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np

from models.interfaces import ImageEmbedding, MaskPrediction, PromptDecoder, PromptInput, predict_prompts

SAM_PRED_IOU_THRESH = 0.88
"""SAM's automatic mask generator default, for decoders without a calibrated threshold."""


@dataclass(frozen=True)
class EverythingConfig:
    """SAM's automatic mask generator defaults (points_per_side 32, IoU 0.88 unless the decoder has
    its own, stability 0.95, NMS 0.7).

    Attributes:
        points_per_side: grid side; points_per_side^2 prompts.
        points_per_batch: prompts per decoder call.
        pred_iou_thresh: minimum model-predicted mask quality; None: the decoder's own calibrated
            threshold (`everything_iou_thresh`, with its `everything_min_area_px`) when it has
            one, else SAM's 0.88. A model whose scores are not SAM's predicted IoU (the geometric
            default's are a boundary heuristic) needs its own, measured on real frames.
        stability_score_thresh: minimum stability score.
        stability_score_offset: logit offset of the stability score.
        box_nms_thresh: IoU of two masks' boxes above which the lower-scoring one is dropped.
        min_mask_area_px: masks smaller than this are dropped (0 keeps all, as SAM's default).
        max_masks: at most this many masks are returned (best first).
    """

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float | None = None
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    min_mask_area_px: int = 0
    max_masks: int = 256

    def __post_init__(self) -> None:
        if not 1 <= self.points_per_side <= 128:
            raise ValueError(f"points_per_side must be in 1..128, got {self.points_per_side}")
        if self.points_per_batch < 1 or self.max_masks < 1 or self.min_mask_area_px < 0:
            raise ValueError("points_per_batch and max_masks must be >= 1, min_mask_area_px >= 0")
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"EverythingConfig.{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True, eq=False)
class EverythingMasks:
    """The kept masks, best first.

    Attributes:
        masks: (M, H, W) bool in the embedding's pixels.
        scores: (M,) float32 predicted IoU; stability: (M,) float32 stability scores.
        boxes: (M, 4) float32 x0, y0, x1, y1 (inclusive pixel bounds).
        point_xy: (M, 2) float32 the grid point that produced each mask.
        candidates: masks the decoder returned in all (before any filter).
    """

    masks: np.ndarray
    scores: np.ndarray
    stability: np.ndarray
    boxes: np.ndarray
    point_xy: np.ndarray
    candidates: int


def point_grid(points_per_side: int, height: int, width: int) -> np.ndarray:
    """(n*n, 2) float32 xy pixels at the centres of an n x n grid of cells (SAM's build_point_grid)."""
    offset = 1.0 / (2 * points_per_side)
    side = np.linspace(offset, 1 - offset, points_per_side)
    xs, ys = np.meshgrid(side * width, side * height)
    return np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)


def stability_scores(prediction: MaskPrediction, offset: float = 1.0, threshold: float = 0.0) -> np.ndarray:
    """(K,) IoU of each mask at logit threshold +offset vs -offset (1.0 without logits)."""
    k = len(prediction.scores)
    logits = prediction.low_res_logits
    if logits is None or len(logits) != k:
        return np.ones(k, np.float32)
    flat = np.asarray(logits, np.float32).reshape(k, -1)
    inter = (flat > threshold + offset).sum(1)
    union = (flat > threshold - offset).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0).astype(np.float32)


def mask_box(mask: np.ndarray) -> np.ndarray:
    """(4,) float32 x0, y0, x1, y1 of a non-empty bool mask (inclusive bounds)."""
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], np.float32)


def segment_everything(
    decoder: PromptDecoder, embedding: ImageEmbedding, config: EverythingConfig = EverythingConfig()
) -> EverythingMasks:
    """All masks of one embedded image; see the module docstring."""
    h, w = embedding.original_size
    grid = point_grid(config.points_per_side, h, w)
    iou_thresh, min_area = config.pred_iou_thresh, config.min_mask_area_px
    if iou_thresh is None:
        iou_thresh = float(getattr(decoder, "everything_iou_thresh", SAM_PRED_IOU_THRESH))
        min_area = max(min_area, int(getattr(decoder, "everything_min_area_px", 0)))
    kept: dict[bytes, int] = {}  # digest of the packed mask -> index into the lists below
    packed: list[np.ndarray] = []
    scores: list[float] = []
    stability: list[float] = []
    boxes: list[np.ndarray] = []
    points: list[np.ndarray] = []
    candidates = 0
    one = np.ones(1, np.int32)
    for start in range(0, len(grid), config.points_per_batch):
        batch = grid[start : start + config.points_per_batch]
        prompts = [PromptInput(p[None, :], one, multimask=True) for p in batch]
        for point, pred in zip(batch, predict_prompts(decoder, embedding, prompts), strict=True):
            candidates += len(pred.scores)
            stab = stability_scores(pred, config.stability_score_offset)
            areas = pred.masks.reshape(len(pred.scores), -1).sum(1)
            ok = (pred.scores >= iou_thresh) & (stab >= config.stability_score_thresh)
            ok &= (areas > 0) & (areas >= min_area)
            for k in np.flatnonzero(ok):
                bits = np.packbits(pred.masks[k])
                key = hashlib.blake2b(bits.tobytes(), digest_size=16).digest()
                score = float(pred.scores[k])
                if key in kept:
                    i = kept[key]
                    if score > scores[i]:
                        scores[i], stability[i], points[i] = score, float(stab[k]), point
                    continue
                kept[key] = len(packed)
                packed.append(bits)
                scores.append(score)
                stability.append(float(stab[k]))
                boxes.append(mask_box(pred.masks[k]))
                points.append(point)
    if not packed:
        empty = np.zeros((0,), np.float32)
        return EverythingMasks(
            np.zeros((0, h, w), bool),
            empty,
            empty,
            np.zeros((0, 4), np.float32),
            np.zeros((0, 2), np.float32),
            candidates,
        )
    order = _nms(np.stack(boxes), np.asarray(scores, np.float32), config.box_nms_thresh)[: config.max_masks]
    masks = np.stack([np.unpackbits(packed[i], count=h * w).reshape(h, w).astype(bool) for i in order])
    return EverythingMasks(
        masks,
        np.asarray(scores, np.float32)[order],
        np.asarray(stability, np.float32)[order],
        np.stack(boxes)[order],
        np.stack(points)[order],
        candidates,
    )


def _nms(boxes: np.ndarray, scores: np.ndarray, iou_thresh: float) -> np.ndarray:
    """Indices kept by greedy box NMS, best score first (cv2.dnn.NMSBoxes on x, y, w, h boxes)."""
    xywh = [[float(b[0]), float(b[1]), float(b[2] - b[0] + 1), float(b[3] - b[1] + 1)] for b in boxes]
    # NMSBoxes drops scores not above its (non-negative) score threshold; shift so that none is.
    keep = np.asarray(cv2.dnn.NMSBoxes(xywh, (scores + 1.0).tolist(), 0.0, iou_thresh), np.int64).reshape(-1)
    return keep[np.argsort(-scores[keep], kind="stable")]

"""Shared parity checks for the model tests: our ONNX Runtime decoder vs a reference predictor."""

from __future__ import annotations

import numpy as np

from engine.masks.metrics import mask_iou
from models.interfaces import PromptInput

MAX_LOGIT_DIFF = 1e-3
MIN_MASK_IOU = 0.99


def parity_prompts(height: int, width: int) -> list[PromptInput]:
    """Points, background points, a box, box + point, single and multi mask, in original pixels."""
    rng = np.random.default_rng(7)
    pts = rng.uniform([0, 0], [width - 1, height - 1], size=(8, 2)).astype(np.float32)
    box = np.array([width * 0.2, height * 0.25, width * 0.7, height * 0.8], np.float32)
    return [
        PromptInput(pts[:1], np.array([1], np.int32), multimask=True),
        PromptInput(pts[:1], np.array([1], np.int32), multimask=False),
        PromptInput(pts[:3], np.array([1, 0, 1], np.int32), multimask=False),
        PromptInput(pts, np.array([1, 1, 0, 1, 0, 1, 1, 0], np.int32), multimask=True),
        PromptInput(box=box, multimask=False),
        PromptInput(pts[:1], np.array([1], np.int32), box=box, multimask=True),
    ]


def assert_parity(ours, ref_masks, ref_scores, ref_low, label: str = "") -> dict[str, float]:
    """Our MaskPrediction vs the reference's (masks (K,H,W) bool, scores (K,), low-res logits)."""
    assert ours.masks.shape == ref_masks.shape, (label, ours.masks.shape, ref_masks.shape)
    assert ours.masks.dtype == bool
    diff = float(np.abs(ours.low_res_logits - ref_low).max())
    score_diff = float(np.abs(ours.scores - ref_scores).max())
    ious = [mask_iou(a, b) for a, b in zip(ours.masks, ref_masks, strict=True)]
    assert diff <= MAX_LOGIT_DIFF, f"{label}: max |logit diff| {diff}"
    assert score_diff <= MAX_LOGIT_DIFF, f"{label}: max |score diff| {score_diff}"
    assert min(ious) >= MIN_MASK_IOU, f"{label}: mask IoU {ious}"
    return {"logit_diff": diff, "score_diff": score_diff, "min_iou": min(ious)}

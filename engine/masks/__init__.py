"""Masks after the decoder: cleaning (islands, holes, depth edges) and quality measures.

`clean`: `clean_mask(mask, depth_m, anchor_xy, config)` and its three steps.
`metrics`: IoU and the DAVIS boundary F-score, for tests and benchmarks.
"""

from engine.masks.clean import MaskCleanConfig, clean_mask, fill_holes, remove_islands, snap_to_depth
from engine.masks.metrics import BoundaryScore, boundary, boundary_f_score, mask_iou

__all__ = [
    "BoundaryScore",
    "MaskCleanConfig",
    "boundary",
    "boundary_f_score",
    "clean_mask",
    "fill_holes",
    "mask_iou",
    "remove_islands",
    "snap_to_depth",
]

"""What the geometric encoder hands the decoder: three label maps and a score per label."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.geometric.config import GRANULARITIES

BACKEND = "geometric"


@dataclass(frozen=True, eq=False)
class LabelMaps:
    """Payload of an ImageEmbedding(backend="geometric").

    Attributes:
        labels: (part, object, region) maps, each (H, W) int32 at the encoded image's full
            resolution; 0 = no label (a depth hole with nothing to go by). They nest: pixels
            with one part label share one object label and one region label.
        scores: per level, (n_level,) float32 quality of every label (quality.py), index 0 = 0.
        areas: per level, (n_level,) float32 label areas in full-resolution pixels (estimated
            at the working resolution).
        valid_depth: (H, W) bool, the frame had a depth measurement there (all False without depth).
        has_depth: False when the frame came without usable depth (colour-only labels).
    """

    labels: tuple[np.ndarray, np.ndarray, np.ndarray]
    scores: tuple[np.ndarray, np.ndarray, np.ndarray]
    areas: tuple[np.ndarray, np.ndarray, np.ndarray]
    valid_depth: np.ndarray
    has_depth: bool
    granularity: tuple[str, ...] = GRANULARITIES

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return self.labels[0].shape

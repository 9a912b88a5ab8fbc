"""What the geometric encoder hands the decoder: a part map, two look-up tables and scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.geometric.config import GRANULARITIES

BACKEND = "geometric"


@dataclass(frozen=True, eq=False)
class LabelMaps:
    """Payload of an ImageEmbedding(backend="geometric").

    The three granularities nest exactly, so they are stored as one full-resolution part map and
    a look-up table per level from part label to that level's label (object and region maps
    would cost two full-frame gathers per frame; a prompt only ever needs one or two labels).

    Attributes:
        part: (H, W) int32 part labels at the encoded image's resolution; 0 = no label (no depth
            and no colour patch to go by).
        luts: per level ("part", "object", "region"), (n_part,) int32 label of every part label
            at that level (identity for parts; index 0 maps to 0).
        scores: per level, (n_level,) float32 quality of every label (quality.py), index 0 = 0.
        areas: per level, (n_level,) float32 label areas in pixels of the encoded image.
        valid_depth: (H, W) bool, the frame had a depth measurement there (all False without depth).
        has_depth: False when the frame came without usable depth (colour-only labels).
        support: the label maps of the support path (support.py: objects as clusters standing on
            a support), kept beside these LCCP maps when the model is a hybrid
            (GeometricConfig.hybrid); the decoder picks per click between the two.
    """

    part: np.ndarray
    luts: tuple[np.ndarray, np.ndarray, np.ndarray]
    scores: tuple[np.ndarray, np.ndarray, np.ndarray]
    areas: tuple[np.ndarray, np.ndarray, np.ndarray]
    valid_depth: np.ndarray
    has_depth: bool
    granularity: tuple[str, ...] = GRANULARITIES
    support: LabelMaps | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return self.part.shape

    def label_at(self, level: int, row: int, col: int) -> int:
        """Label of pixel (row, col) at `level` (0 part, 1 object, 2 region)."""
        return int(self.luts[level][self.part[row, col]])

    def level_map(self, level: int) -> np.ndarray:
        """(H, W) int32 label map of `level` (materialised on demand: O(H W))."""
        return self.luts[level][self.part]

    def mask(self, level: int, labels: np.ndarray) -> np.ndarray:
        """(H, W) bool union of `labels` (ints) at `level`."""
        chosen = np.zeros(len(self.scores[level]), bool)
        chosen[np.asarray(labels, np.int64)] = True
        chosen[0] = False
        return chosen[self.luts[level]][self.part]

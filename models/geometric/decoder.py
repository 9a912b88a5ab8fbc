"""The geometric prompt decoder: a prompt becomes a choice of labels in precomputed maps.

All per-frame work happened in the encoder, so a prediction costs a few label look-ups and one
comparison per returned mask (O(H W) vectorised, well under a millisecond at 640x480).

Prompt semantics (SAM-like):
  * positive points select the label under them at each granularity; a point on a depth hole
    first snaps to the nearest valid-depth pixel within cfg.snap_radius_px;
  * negative points veto: a label containing a negative point is replaced by the positive
    point's label at the next finer granularity (region -> object -> part), or dropped;
  * a box selects, per granularity, the labels with at least cfg.box_fill of their area inside
    it (or the one label covering most of it);
  * a mask prompt selects the labels at least cfg.mask_fill covered by it (or the most covered);
  * all selections are united. Scores are the area-weighted mean of the selected labels'
    quality (quality.py), times the fraction of the mask inside the box when there is one.
"""

from __future__ import annotations

import numpy as np

from models.geometric.config import GRANULARITIES, GeometricConfig
from models.geometric.embedding import BACKEND, LabelMaps
from models.interfaces import ImageEmbedding, MaskPrediction, ModelError, PromptInput


class GeometricDecoder:
    """PromptDecoder of the weight-free default model; pure function of (embedding, prompt)."""

    name = BACKEND

    def __init__(self, config: GeometricConfig | None = None) -> None:
        self.config = config or GeometricConfig()
        # segment everything (engine/everything.py) keeps masks scoring at least this, of at
        # least this many pixels, unless the client asks for its own threshold
        self.everything_iou_thresh = self.config.everything_iou_thresh
        self.everything_min_area_px = self.config.everything_min_area_px

    def predict(self, embedding: ImageEmbedding, prompt: PromptInput) -> MaskPrediction:
        """Masks for one prompt.

        Args:
            embedding: from GeometricEncoder.encode.
            prompt: point_coords (N, 2) float32 xy pixels, point_labels (N,) int32 (1 object,
                0 background), box (4,) x0 y0 x1 y1 or None, mask (H, W) bool or None.
        Returns MaskPrediction with masks (3, H, W) bool ordered part, object, region and their
        scores (3,) float32, or the single best (1, H, W) when prompt.multimask is False.
        """
        if embedding.backend != BACKEND or not isinstance(embedding.data, LabelMaps):
            raise ModelError(
                f"geometric decoder got an embedding from backend {embedding.backend!r}; "
                "encode the frame with the geometric encoder of the same model"
            )
        maps: LabelMaps = embedding.data
        h, w = maps.size
        coords = np.asarray(prompt.point_coords, np.float32).reshape(-1, 2)
        point_labels = np.asarray(prompt.point_labels).reshape(-1)
        if coords.shape[0] != point_labels.shape[0]:
            raise ModelError(f"{coords.shape[0]} points but {point_labels.shape[0]} point labels")
        if coords.shape[0] == 0 and prompt.box is None and prompt.mask is None:
            raise ModelError("the prompt needs at least one point, a box or a mask")
        if prompt.mask is not None and prompt.mask.shape != (h, w):
            raise ModelError(f"mask prompt is {prompt.mask.shape[::-1]} but the encoded image is {w}x{h}")

        pos = [self._snap(maps, x, y) for (x, y), lab in zip(coords, point_labels, strict=True) if lab == 1]
        neg = [self._snap(maps, x, y) for (x, y), lab in zip(coords, point_labels, strict=True) if lab != 1]
        box = self._box(prompt.box, h, w)
        mask_prompt = None if prompt.mask is None else np.asarray(prompt.mask, bool)
        masks, scores = self._masks(maps, pos, neg, box, mask_prompt)
        if maps.support is not None and box is None and mask_prompt is None:
            # the hybrid rule was chosen for clicks; boxes and mask prompts (the tracker's) keep
            # the LCCP answer they were tuned on (bench.capture)
            masks, scores = self._hybrid(masks, scores, *self._masks(maps.support, pos, neg, None, None))
        if not prompt.multimask:
            best = int(np.argmax(scores))
            return MaskPrediction(masks[best : best + 1], scores[best : best + 1], (GRANULARITIES[best],))
        return MaskPrediction(masks, scores, GRANULARITIES)

    def _masks(self, maps: LabelMaps, pos, neg, box, mask_prompt) -> tuple[np.ndarray, np.ndarray]:
        """((3, H, W) bool part, object, region masks, (3,) float32 scores) of one label map set."""
        # Which part labels each returned mask takes (a bit per mask), then one gather over the
        # part map renders all masks at once.
        n_part = len(maps.luts[0])
        bits = np.zeros(n_part, np.uint8)
        scores = np.zeros(len(GRANULARITIES), np.float32)
        for level in range(len(GRANULARITIES)):
            chosen = self._point_labels(maps, level, pos, neg)
            if box is not None:
                chosen += self._box_labels(maps, level, box, neg)
            if mask_prompt is not None:
                chosen += self._mask_labels(maps, level, mask_prompt, neg)
            parts, scores[level] = self._select(maps, chosen)
            bits[parts] |= np.uint8(1 << level)
        bits[0] = 0
        code = bits[maps.part]
        masks = np.stack([(code & np.uint8(1 << level)) > 0 for level in range(len(GRANULARITIES))])
        if box is not None:
            r0, r1, c0, c1 = box
            for level in range(len(GRANULARITIES)):
                n = int(masks[level].sum())
                scores[level] *= float(masks[level, r0:r1, c0:c1].sum()) / n if n else 0.0
        return masks, scores

    def _hybrid(
        self, masks: np.ndarray, scores: np.ndarray, s_masks: np.ndarray, s_scores: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pick between the LCCP answer and the support path's object (GeometricConfig.hybrid).

        The support object wins when the LCCP mask the click selected lies inside it (at least
        cfg.hybrid_inside) and covers at most cfg.hybrid_ratio of it: then the LCCP mask was a
        piece of the object (a box's printed face, a drill without its handle) and the cluster
        completes it. Otherwise (the LCCP mask reaches outside the cluster, or the cluster is
        about the same size) the LCCP answer stands: on synthetic scenes it is the better one
        (the support band takes an object's base; a box on a box is one cluster). Returned:
        part = the LCCP mask, object = the support object, region = its cluster, in that case.
        """
        cfg = self.config
        best = int(np.argmax(scores))
        d, obj = masks[best], s_masks[1]
        n_d, n_s = int(d.sum()), int(obj.sum())
        if n_d == 0 or n_s == 0:
            return masks, scores
        inside = float(np.count_nonzero(d & obj)) / n_d
        if inside < cfg.hybrid_inside or n_d > cfg.hybrid_ratio * n_s:
            return masks, scores
        top = max(float(scores[best]), float(s_scores[1]))
        out_scores = np.array([0.5 * scores[best], top, 0.5 * s_scores[2]], np.float32)
        return np.stack([d, obj, s_masks[2] | obj]), out_scores

    # ------------------------------------------------------------------ prompt -> labels

    def _snap(self, maps: LabelMaps, x: float, y: float) -> tuple[int, int]:
        """(row, col) of the prompt point, moved onto valid depth when it fell on a hole."""
        h, w = maps.size
        col = int(np.clip(np.floor(x + 0.5), 0, w - 1))
        row = int(np.clip(np.floor(y + 0.5), 0, h - 1))
        if not maps.has_depth or (maps.valid_depth[row, col] and maps.part[row, col] > 0):
            return row, col
        r = self.config.snap_radius_px
        r0, r1, c0, c1 = max(0, row - r), min(h, row + r + 1), max(0, col - r), min(w, col + r + 1)
        ok = maps.valid_depth[r0:r1, c0:c1] & (maps.part[r0:r1, c0:c1] > 0)
        rr, cc = np.nonzero(ok)
        if rr.size == 0:
            return row, col  # nothing measured nearby: use whatever (colour) label is there
        d2 = (rr + r0 - row) ** 2 + (cc + c0 - col) ** 2
        i = int(np.argmin(d2))
        return int(rr[i] + r0), int(cc[i] + c0)

    @staticmethod
    def _vetoed(maps: LabelMaps, level: int, label: int, neg: list[tuple[int, int]]) -> bool:
        return any(maps.label_at(level, r, c) == label for r, c in neg)

    def _point_labels(self, maps: LabelMaps, level: int, pos, neg) -> list[tuple[int, int]]:
        chosen = []
        for r, c in pos:
            for lev in range(level, -1, -1):
                label = maps.label_at(lev, r, c)
                if label == 0:
                    continue
                if not self._vetoed(maps, lev, label, neg):
                    chosen.append((lev, label))
                    break
        return chosen

    @staticmethod
    def _box(box: np.ndarray | None, h: int, w: int) -> tuple[int, int, int, int] | None:
        if box is None:
            return None
        x0, y0, x1, y1 = np.asarray(box, np.float64).reshape(4)
        if not (x1 > x0 and y1 > y0):
            raise ModelError(f"box must have x1 > x0 and y1 > y0, got {tuple(box)}")
        c0, r0 = int(np.clip(np.floor(x0), 0, w - 1)), int(np.clip(np.floor(y0), 0, h - 1))
        c1, r1 = int(np.clip(np.ceil(x1), c0 + 1, w)), int(np.clip(np.ceil(y1), r0 + 1, h))
        return r0, r1, c0, c1

    @staticmethod
    def _per_level(maps: LabelMaps, level: int, part_counts: np.ndarray) -> np.ndarray:
        """Pixel counts per part label -> per label of `level`."""
        lut = maps.luts[level]
        return np.bincount(lut, part_counts[: len(lut)], minlength=len(maps.scores[level]))

    def _box_labels(self, maps: LabelMaps, level: int, box, neg) -> list[tuple[int, int]]:
        r0, r1, c0, c1 = box
        inside = np.bincount(maps.part[r0:r1, c0:c1].ravel(), minlength=len(maps.luts[0]))
        return self._fill_choice(maps, level, self._per_level(maps, level, inside), self.config.box_fill, neg)

    def _mask_labels(self, maps: LabelMaps, level: int, mask: np.ndarray, neg) -> list[tuple[int, int]]:
        covered = np.bincount(maps.part[mask], minlength=len(maps.luts[0]))
        return self._fill_choice(
            maps, level, self._per_level(maps, level, covered), self.config.mask_fill, neg
        )

    def _fill_choice(
        self, maps: LabelMaps, level: int, counts: np.ndarray, fill: float, neg
    ) -> list[tuple[int, int]]:
        """Labels whose area is at least `fill` covered by counts, else the most covered one."""
        counts = counts.astype(np.float64)
        counts[0] = 0.0
        frac = counts / np.maximum(maps.areas[level], 1.0)
        picked = np.flatnonzero((frac >= fill) & (counts > 0))
        if picked.size == 0 and counts.max() > 0:
            picked = np.array([int(np.argmax(counts))])
        return [(level, int(lab)) for lab in picked if not self._vetoed(maps, level, int(lab), neg)]

    # ------------------------------------------------------------------ labels -> mask

    @staticmethod
    def _select(maps: LabelMaps, chosen: list[tuple[int, int]]) -> tuple[np.ndarray, np.float32]:
        """(bool (n_part,) parts making up the chosen labels, area-weighted mean score)."""
        parts = np.zeros(len(maps.luts[0]), bool)
        total, weighted = 0.0, 0.0
        for lev, label in dict.fromkeys(chosen):
            parts |= maps.luts[lev] == label
            area = float(maps.areas[lev][label])
            total += area
            weighted += area * float(maps.scores[lev][label])
        return parts, np.float32(weighted / total if total > 0 else 0.0)

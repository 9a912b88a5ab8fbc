"""Voice text -> a ranking of candidate masks by CLIP similarity, gaze proximity and predicted IoU.

Why: a spoken phrase ("the mug") says *what*, a glance says *where*, and the decoder's predicted
IoU says how clean a mask is. None of them alone picks the right mask: the decoder's three
multimask outputs around a gaze point are part, object and region of whatever the eye landed on,
and segment-everything returns every object in view. So each candidate gets one score that adds
the three, and the highest wins. The text itself is encoded by the client's words -> CLIP text
tower (cached per phrase in the encoder); this module only needs its (D,) embedding.

The formula (`TextRankConfig` defaults), for K candidate masks m_1..m_K:

    similarity_k = <t, v_k>                       cosine of the phrase's CLIP embedding t and the
                                                  CLIP image embedding v_k of m_k's masked crop
    text_k       = softmax_k(similarity_k / T)    T = 0.01, CLIP's own learned logit scale (100):
                                                  the probability that crop k is what the phrase
                                                  names, among these K candidates
    gaze_k       = exp(-theta_k^2 / (2 sigma^2))  theta_k: visual angle between the gaze (or click)
                                                  point and the nearest pixel of m_k, 0 inside it;
                                                  sigma = 1.5 deg
    iou_k        = clip(predicted IoU_k, 0, 1)
    score_k      = 1.0 * text_k + 0.5 * gaze_k + 0.25 * iou_k

Why these numbers:
- text weight 1: the words are the user's explicit choice. Raw CLIP cosines of different crops
  differ by a few hundredths, too little to add to anything; at CLIP's logit scale they become a
  distribution over the candidates where a clearly better crop gets most of the mass.
- gaze weight 0.5, sigma 1.5 deg: headset eye trackers are accurate to about 1-1.5 deg, so a mask
  within that of the gaze is "looked at". A mask theta away loses 0.5 * (1 - exp(-theta^2 / 2
  sigma^2)) against one under the gaze: 0.20 at 1.5 deg, 0.43 at 3 deg, 0.5 (all of it) beyond
  about 5 deg. A glance therefore overrides a text preference of up to ~0.4 (text probability
  0.7 vs 0.3) for an object 3 deg away, but not a confident one (0.95 vs 0.05). Angles, not
  pixels, so the numbers hold for any camera (`GazeGeometry`, as the fixation detector uses).
- IoU weight 0.25: a tie-break between candidates the text and gaze cannot tell apart (two mugs;
  nested masks of one object); its spread over plausible masks (0.8..1) moves a score by 0.05.
- With no gaze or click point the gaze term is absent (None), not 0: then
  score_k = text_k + 0.25 * iou_k, and "the mug" alone picks the best mug in view.

Masked crops (`masked_crop`): the square around the mask's box, grown by `context` (10 %) of the
box's longer side on every side, with every pixel outside the mask set to CLIP's normalisation mean
colour (123, 117, 104), i.e. grey rather than blurred. Why grey: after CLIP's normalisation those
pixels are exactly 0, the least informative input, so the embedding describes the mask's own
pixels and silhouette. A blurred background keeps the colours and blobs of the neighbours: the
nested part / object / region masks of one point would all show the whole object (sharp or
blurred), so the phrase could not tell them apart, and a small mask next to a big red object
would inherit "red". The cost is a known domain gap for CLIP (grey-filled crops are unusual
images); the margin keeps the silhouette readable against the grey. Why square: CLIP's
preprocessing resizes the short side and centre-crops, which would cut the ends off an elongated
mask (a table, a shelf); the square crop is padded with the same grey beyond the image border.

Everything here is a pure function of its inputs (arrays in, arrays out); the image encoder is
passed in (`models.interfaces.TextImageEncoder`), all crops go to it in one batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.core import MaskRanking
from engine.fusion.gaze import GazeGeometry
from models.interfaces import TextImageEncoder

CLIP_MEAN_RGB = (123, 117, 104)
"""OpenAI CLIP's normalisation mean (0.4815, 0.4578, 0.4082) x 255: zero after preprocessing."""


@dataclass(frozen=True)
class TextRankConfig:
    """Weights and crop settings of the text ranking (the module docstring says why).

    Attributes:
        text_weight, gaze_weight, iou_weight: the weights of the three terms (>= 0).
        temperature: T of the softmax over CLIP cosine similarities (CLIP's logit scale is 1/T).
        gaze_sigma_deg: visual angle at which the gaze term has fallen to exp(-1/2) = 0.61.
        context: margin around the mask's box, as a fraction of its longer side, on every side.
        background: RGB colour that replaces every pixel outside the mask in a crop.
        max_candidates: at most this many masks are ranked (segment-everything's best by
            predicted IoU); bounds the CLIP batch, i.e. the cost of one text prompt.
    """

    text_weight: float = 1.0
    gaze_weight: float = 0.5
    iou_weight: float = 0.25
    temperature: float = 0.01
    gaze_sigma_deg: float = 1.5
    context: float = 0.1
    background: tuple[int, int, int] = CLIP_MEAN_RGB
    max_candidates: int = 32

    def __post_init__(self) -> None:
        for name in ("text_weight", "gaze_weight", "iou_weight", "context"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"TextRankConfig.{name} must be finite and >= 0, got {value}")
        for name in ("temperature", "gaze_sigma_deg"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"TextRankConfig.{name} must be finite and > 0, got {value}")
        if self.max_candidates < 1:
            raise ValueError(f"TextRankConfig.max_candidates must be >= 1, got {self.max_candidates}")
        if len(self.background) != 3 or not all(0 <= int(c) <= 255 for c in self.background):
            raise ValueError(f"TextRankConfig.background must be three 0..255 values, got {self.background}")


@dataclass(frozen=True, eq=False)
class TextRanking:
    """The terms and scores of K candidates, in the candidates' order (not sorted).

    Attributes:
        score: (K,) float64 combined score (module docstring); higher is better.
        text: (K,) float64 softmax of similarity / temperature over the K candidates (sums to 1).
        similarity: (K,) float64 cosine similarity of each masked crop to the phrase.
        gaze: (K,) float64 gaze term, or None when there was no point to be near.
        gaze_angle_deg: (K,) float64 visual angle from the point to each mask (inf for an empty
            mask), or None.
        iou: (K,) float64 predicted IoU clipped to 0..1.
    """

    score: np.ndarray
    text: np.ndarray
    similarity: np.ndarray
    gaze: np.ndarray | None
    gaze_angle_deg: np.ndarray | None
    iou: np.ndarray

    @property
    def order(self) -> np.ndarray:
        """(K,) int64 candidate indices, best first (ties keep the candidates' order)."""
        return np.argsort(-self.score, kind="stable")

    @property
    def best(self) -> int:
        return int(self.order[0])

    def mask_ranking(self, k: int) -> MaskRanking:
        """Candidate k's terms as the result carries them (engine.core.MaskRanking)."""
        gaze = None if self.gaze is None else float(self.gaze[k])
        return MaskRanking(
            float(self.score[k]), float(self.text[k]), float(self.similarity[k]), gaze, float(self.iou[k])
        )


def crop_window(mask: np.ndarray, context: float) -> tuple[int, int, int]:
    """(x0, y0, side) of the square crop of a non-empty (H, W) bool mask; may reach past the image."""
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    x0, x1, y0, y1 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1  # half-open pixel bounds
    side = max(1, int(math.ceil(max(x1 - x0, y1 - y0) * (1.0 + 2.0 * context))))
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return int(math.floor(cx - side / 2.0)), int(math.floor(cy - side / 2.0)), side


def masked_crop(
    rgb: np.ndarray, mask: np.ndarray, context: float = 0.1, background: tuple[int, int, int] = CLIP_MEAN_RGB
) -> np.ndarray:
    """(S, S, 3) uint8: the square around `mask`'s box (+ context), pixels outside the mask set to background.

    Args:
        rgb: (H, W, 3) uint8 the frame the mask is in.
        mask: (H, W) bool; an empty mask gives a 1x1 background image.
        context: margin as a fraction of the box's longer side, on every side.
    """
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask is {mask.shape}, image is {rgb.shape[:2]}")
    fill = np.asarray(background, np.uint8)
    if not mask.any():
        return np.broadcast_to(fill, (1, 1, 3)).copy()
    x0, y0, side = crop_window(mask, context)
    h, w = mask.shape
    out = np.empty((side, side, 3), np.uint8)
    out[:] = fill
    # the part of the square inside the image, in image and in crop coordinates
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    inside = mask[iy0:iy1, ix0:ix1]
    out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0][inside] = rgb[iy0:iy1, ix0:ix1][inside]
    return out


def gaze_angles_deg(
    masks: Sequence[np.ndarray], point: tuple[float, float], geometry: GazeGeometry
) -> np.ndarray:
    """(K,) visual angle in degrees from pixel `point` to the nearest pixel of each (H, W) bool mask.

    0 when the pixel under the point (nearest pixel centre) is in the mask; inf for an empty
    mask. Cost O(mask pixels) per mask.
    """
    x, y = point
    g = np.asarray(geometry.ray(x, y))
    out = np.empty(len(masks), np.float64)
    for k, mask in enumerate(masks):
        h, w = mask.shape
        r, c = min(max(int(round(y)), 0), h - 1), min(max(int(round(x)), 0), w - 1)
        if mask[r, c]:
            out[k] = 0.0
            continue
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            out[k] = math.inf
            continue
        dx = (xs - geometry.cx) / geometry.fx
        dy = (ys - geometry.cy) / geometry.fy
        cos = (dx * g[0] + dy * g[1] + g[2]) / np.sqrt(dx * dx + dy * dy + 1.0)
        out[k] = math.degrees(math.acos(min(1.0, float(cos.max()))))
    return out


def gaze_term(angle_deg: np.ndarray, sigma_deg: float) -> np.ndarray:
    """exp(-theta^2 / (2 sigma^2)): 1 at the gaze point, 0.61 at sigma, 0 for an empty mask (inf)."""
    return np.exp(-np.square(angle_deg) / (2.0 * sigma_deg**2))


def text_term(similarity: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(similarity / temperature) over the candidates, computed stably."""
    z = similarity / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


def rank_by_text(
    masks: Sequence[np.ndarray],
    iou: np.ndarray,
    rgb: np.ndarray,
    text_embedding: np.ndarray,
    images: TextImageEncoder,
    point: tuple[float, float] | None = None,
    geometry: GazeGeometry | None = None,
    config: TextRankConfig = TextRankConfig(),
) -> TextRanking:
    """Score K candidate masks for one phrase (module docstring: the formula and why).

    Args:
        masks: K (H, W) bool candidate masks in `rgb`'s pixels, K >= 1.
        iou: (K,) the decoder's predicted IoU of each mask.
        rgb: (H, W, 3) uint8 the frame the masks are in.
        text_embedding: (D,) unit CLIP embedding of the phrase (`encode_text([phrase])[0]`).
        images: the CLIP image side; all K masked crops go through `encode_images` in one batch.
        point: (x, y) pixel the user looked at (gaze) or clicked, or None (no gaze term).
        geometry: the frame's pinhole model, needed with `point` (angles, not pixels).
    """
    k = len(masks)
    if k == 0:
        raise ValueError("rank_by_text needs at least one candidate mask")
    iou = np.asarray(iou, np.float64).reshape(-1)
    if len(iou) != k:
        raise ValueError(f"{k} masks but {len(iou)} predicted IoUs")
    if point is not None and geometry is None:
        raise ValueError("a gaze/click point needs the frame's geometry (GazeGeometry.from_intrinsics)")
    crops = [masked_crop(rgb, np.asarray(m, bool), config.context, config.background) for m in masks]
    vectors = np.asarray(images.encode_images(crops), np.float64)
    t = np.asarray(text_embedding, np.float64).reshape(-1)
    if vectors.shape != (k, len(t)):
        raise ValueError(
            f"image embeddings are {vectors.shape}, expected ({k}, {len(t)}) to match the text embedding"
        )
    similarity = vectors @ t
    text = text_term(similarity, config.temperature)
    iou = np.clip(iou, 0.0, 1.0)
    score = config.text_weight * text + config.iou_weight * iou
    gaze = angles = None
    if point is not None and geometry is not None:
        angles = gaze_angles_deg(masks, point, geometry)
        gaze = gaze_term(angles, config.gaze_sigma_deg)
        score = score + config.gaze_weight * gaze
    return TextRanking(score, text, similarity, gaze, angles, iou)

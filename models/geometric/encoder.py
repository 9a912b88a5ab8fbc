"""The geometric image encoder: all per-frame work, so that prompts are cheap look-ups.

ImageInput (rgb, depth in metres, K) -> downsample by cfg.work_downsample -> edges
(features.py) -> label maps at three granularities (regions.py) -> scores per label
(quality.py) -> full-resolution maps with depth-true silhouettes (upsample.py).
"""

from __future__ import annotations

import cv2
import numpy as np

from models.geometric.config import GeometricConfig
from models.geometric.embedding import BACKEND, LabelMaps
from models.geometric.features import compute_features, default_camera_matrix, downsample_depth
from models.geometric.quality import evidence_map, label_scores
from models.geometric.regions import build_work_labels
from models.geometric.upsample import refine_by_depth, upsample_nearest
from models.interfaces import ImageEmbedding, ImageInput, ModelError


class GeometricEncoder:
    """ImageEncoder of the weight-free default model; pure function of its input."""

    name = BACKEND

    def __init__(self, config: GeometricConfig | None = None) -> None:
        self.config = config or GeometricConfig()

    def encode(self, image: ImageInput) -> ImageEmbedding:
        """Edges and label maps of one frame.

        Args:
            image: rgb (H, W, 3) uint8; depth_m (H, W) float32 metres with 0 = no measurement,
                or None (colour-only labels); camera_matrix (3, 3) or None (Kinect-like guess).
        Returns ImageEmbedding(backend="geometric", original_size=(H, W), data=LabelMaps).
        """
        cfg = self.config
        rgb = image.rgb
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ModelError(f"geometric encoder needs rgb as (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        depth = image.depth_m
        if depth is not None:
            if depth.shape != (h, w):
                raise ModelError(
                    f"depth is {depth.shape[::-1]} but colour is {w}x{h}: "
                    "register depth to the colour camera first"
                )
            depth = np.asarray(depth, np.float32)
            depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(0.0))
            if not depth.any():
                depth = None
        k_full = image.camera_matrix if image.camera_matrix is not None else default_camera_matrix(w, h, cfg)

        f = cfg.work_downsample if min(h, w) >= 32 * cfg.work_downsample else 1
        hs, ws = h // f, w // f
        rgb_s = cv2.resize(rgb[: hs * f, : ws * f], (ws, hs), interpolation=cv2.INTER_AREA) if f > 1 else rgb
        depth_s = None if depth is None else downsample_depth(depth, depth > 0, f)
        k_s = np.asarray(k_full, np.float64).copy()
        k_s[:2] /= f
        k_s[:2, 2] += 0.5 / f - 0.5

        feats = compute_features(rgb_s, depth_s, k_s, cfg)
        min_px = max(4, cfg.min_region_px // (f * f))
        work = build_work_labels(feats, cfg, min_px, int(cfg.hole_max_frac * hs * ws))
        evidence = evidence_map(feats, cfg.colour_step)
        small_maps = (work.part, work.object, work.region)
        counts = tuple(int(m.max()) + 1 for m in small_maps)
        scores = tuple(label_scores(m, n, evidence) for m, n in zip(small_maps, counts, strict=True))
        areas = tuple(
            (np.bincount(m.ravel(), minlength=n) * float(f * f)).astype(np.float32)
            for m, n in zip(small_maps, counts, strict=True)
        )

        part = upsample_nearest(work.part, h, w)
        if depth is not None and f > 1:
            near = cv2.dilate(feats.depth_edge.view(np.uint8), np.ones((3, 3), np.uint8))
            part = refine_by_depth(part, depth, upsample_nearest(near, h, w).view(bool), f, cfg)
        obj = work.object_lut[part]
        if work.object_holes.any():
            obj = np.maximum(obj, upsample_nearest(work.object_holes, h, w))
        region = work.region_lut[obj]
        if work.region_holes.any():
            region = np.maximum(region, upsample_nearest(work.region_holes, h, w))
        valid = depth > 0 if depth is not None else np.zeros((h, w), bool)
        data = LabelMaps((part, obj, region), scores, areas, valid, has_depth=depth is not None)
        return ImageEmbedding(BACKEND, (h, w), data)

"""The geometric image encoder: all per-frame work, so that prompts are cheap look-ups.

ImageInput (rgb, depth in metres, K) -> downsample by cfg.work_downsample -> edges
(features.py) -> label maps at three granularities (regions.py) -> scores per label
(quality.py) -> full-resolution maps (nearest-neighbour upsampling).
"""

from __future__ import annotations

import cv2
import numpy as np

from models.geometric.config import GeometricConfig
from models.geometric.embedding import BACKEND, LabelMaps
from models.geometric.features import compute_features, default_camera_matrix, downsample_depth
from models.geometric.kernels import warm_up
from models.geometric.quality import evidence_map, level_scores, prefer_clusters
from models.geometric.regions import WorkLabels, build_work_labels
from models.geometric.support import cluster_jumps, clusters, fill_cluster_holes, support_mask, with_clusters
from models.interfaces import ImageEmbedding, ImageInput, ModelError


def upsample_nearest(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w) int32 labels -> (height, width), nearest neighbour (boundaries were already placed
    on the depth and crease geometry at the working resolution, bands.py)."""
    if labels.shape == (height, width):
        return labels
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)


class GeometricEncoder:
    """ImageEncoder of the weight-free default model; pure function of its input."""

    name = BACKEND

    def __init__(self, config: GeometricConfig | None = None) -> None:
        self.config = config or GeometricConfig()
        warm_up()  # compile (or load) the numba kernels now, not on the first frame's prompt path

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
            if not (np.isfinite(depth.sum()) and depth.min() >= 0):  # NaN, inf or negative somewhere
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
        is_cluster = None
        if feats.has_depth and cfg.support_planes:
            support = support_mask(feats.points, feats.valid, cfg)
            jx, jy = cluster_jumps(feats.depth, cfg)
            n_c, cl = clusters(feats.valid, support, jx, jy, max(min_px, cfg.cluster_min_px // (f * f)))
            cl = fill_cluster_holes(cl, feats.valid, support, cfg.cluster_hole_px)
            # parts become the LCCP objects (split by cluster), objects the clusters
            lccp = work.object
            ident = np.arange(int(lccp.max()) + 1, dtype=np.int32)
            part_w, obj_lut, reg_lut, is_cluster = with_clusters(lccp, ident, work.region_lut, cl, n_c)
            work = WorkLabels(part_w, obj_lut, reg_lut)
        evidence = evidence_map(feats, cfg.colour_step)
        n_part = int(work.part.max()) + 1
        part_to_object = work.object_lut[:n_part]
        part_to_region = work.region_lut[part_to_object]
        scores, areas_small = level_scores(
            work.part, (np.arange(n_part, dtype=np.int32), part_to_object, part_to_region), evidence
        )
        if is_cluster is not None and cfg.prefer_clusters:
            scores = prefer_clusters(scores, part_to_object, part_to_region, is_cluster)
        areas = tuple((a * float(f * f)).astype(np.float32) for a in areas_small)

        part = upsample_nearest(work.part, h, w)
        valid = depth > 0 if depth is not None else np.zeros((h, w), bool)
        luts = (np.arange(n_part, dtype=np.int32), part_to_object, part_to_region)
        data = LabelMaps(part, luts, scores, areas, valid, has_depth=depth is not None)
        return ImageEmbedding(BACKEND, (h, w), data)

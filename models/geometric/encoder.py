"""The geometric image encoder: all per-frame work, so that prompts are cheap look-ups.

ImageInput (rgb, depth in metres, K) -> downsample by cfg.work_downsample -> edges
(features.py) -> label maps at three granularities (regions.py) -> scores per label
(quality.py) -> full-resolution maps (nearest-neighbour upsampling).
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from models.geometric.config import GeometricConfig
from models.geometric.embedding import BACKEND, LabelMaps
from models.geometric.features import compute_features, default_camera_matrix, downsample_depth
from models.geometric.kernels import warm_up
from models.geometric.objects import split_clusters
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
        evidence = evidence_map(feats, cfg.colour_step)
        valid = depth > 0 if depth is not None else np.zeros((h, w), bool)
        has_depth = depth is not None
        if not (feats.has_depth and (cfg.support_planes or cfg.hybrid)):
            data = _label_maps(work, None, evidence, valid, has_depth, f, (h, w), cfg)
            return ImageEmbedding(BACKEND, (h, w), data)
        sup_work, is_cluster = self._support_labels(feats, work, rgb_s, min_px, f)
        sup = _label_maps(sup_work, is_cluster, evidence, valid, has_depth, f, (h, w), cfg)
        if cfg.support_planes:
            return ImageEmbedding(BACKEND, (h, w), sup)
        data = _label_maps(work, None, evidence, valid, has_depth, f, (h, w), cfg)
        return ImageEmbedding(BACKEND, (h, w), replace(data, support=sup))

    def _support_labels(
        self, feats, work: WorkLabels, rgb_s: np.ndarray, min_px: int, f: int
    ) -> tuple[WorkLabels, np.ndarray]:
        """Label maps of the support path (support.py, objects.py): parts = the LCCP objects split
        by object, objects = the clusters split where a concave crease and a colour change agree,
        regions = the clusters. Returns (labels, is_cluster per object)."""
        cfg = self.config
        support, fringe = support_mask(feats.points, feats.valid, cfg, feats.normals)
        jx, jy = cluster_jumps(feats.depth, cfg)
        n_c, cl = clusters(feats.valid, support, jx, jy, max(min_px, cfg.cluster_min_px // (f * f)), fringe)
        cl = fill_cluster_holes(cl, feats.valid, support, cfg.cluster_hole_px)
        region_of = None
        if cfg.split_objects:  # touching objects: a concave crease where the colour changes
            cl, region_of = split_clusters(cl, feats.concave, rgb_s, cfg)
            n_c = len(region_of)
        lccp = work.object
        ident = np.arange(int(lccp.max()) + 1, dtype=np.int32)
        part_w, obj_lut, reg_lut, is_cluster = with_clusters(lccp, ident, work.region_lut, cl, n_c, region_of)
        return WorkLabels(part_w, obj_lut, reg_lut), is_cluster


def _label_maps(
    work: WorkLabels,
    is_cluster: np.ndarray | None,
    evidence: np.ndarray,
    valid: np.ndarray,
    has_depth: bool,
    f: int,
    size: tuple[int, int],
    cfg: GeometricConfig,
) -> LabelMaps:
    """Scores, areas and the full-resolution part map of working-resolution labels."""
    n_part = int(work.part.max()) + 1
    part_to_object = work.object_lut[:n_part]
    part_to_region = work.region_lut[part_to_object]
    scores, areas_small = level_scores(
        work.part, (np.arange(n_part, dtype=np.int32), part_to_object, part_to_region), evidence
    )
    if is_cluster is not None and cfg.prefer_clusters:
        scores = prefer_clusters(scores, part_to_object, part_to_region, is_cluster)
    areas = tuple((a * float(f * f)).astype(np.float32) for a in areas_small)
    part = upsample_nearest(work.part, *size)
    luts = (np.arange(n_part, dtype=np.int32), part_to_object, part_to_region)
    return LabelMaps(part, luts, scores, areas, valid, has_depth=has_depth)

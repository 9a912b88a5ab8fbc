"""Label maps at three granularities, grown between the edges of features.py.

    part   = bounded by depth edges + every crease + strong colour edges   (a box's face)
    object = bounded by depth edges + concave creases                      (the box, cut from the
                                                                            floor it rests on)
    region = bounded by depth edges only                                   (everything touching)

Each level is a set of 4-connected components (cv2.connectedComponents) of the pixels that are
not on that level's edges. The levels nest exactly: every part lies inside one object and every
object inside one region, because the coarser maps are look-up tables over the part map.

Edge pixels are then given back to the nearest component, so masks are not eroded by the width
of the edge bands; enclosed sensor holes join the component
around them; larger holes get colour-only components so a click there still means something.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models.geometric.bands import snap_to_planes
from models.geometric.config import GeometricConfig
from models.geometric.features import GeometricFeatures
from models.geometric.graph import objects_and_regions


@dataclass(frozen=True, eq=False)
class WorkLabels:
    """The three label maps at the working resolution (h, w), 0 = no label.

    Attributes:
        part: (h, w) int32 labels 1..n_part; 0 only on unfilled holes.
        object_lut: (n_part + 1,) int32 object label of every part (object_lut[0] = 0).
        region_lut: (n_object + 1,) int32 region label of every object.
        object_holes: (h, w) int32, object label of holes filled at the object level (0 elsewhere).
        region_holes: (h, w) int32, the same for the region level.
    """

    part: np.ndarray
    object_lut: np.ndarray
    region_lut: np.ndarray
    object_holes: np.ndarray
    region_holes: np.ndarray

    @property
    def object(self) -> np.ndarray:
        """(h, w) int32 object map, holes filled at the object level included."""
        return np.maximum(self.object_lut[self.part], self.object_holes)

    @property
    def region(self) -> np.ndarray:
        """(h, w) int32 region map, holes filled at the region level included."""
        return np.maximum(self.region_lut[self.object], self.region_holes)


def _components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """4-connected components of a bool mask: (count incl. background 0, (h, w) int32 labels)."""
    n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    return n, labels


def _compact(labels: np.ndarray, n: int) -> tuple[int, np.ndarray]:
    """Renumber the labels present in `labels` to 1..k (0 stays 0); returns (k + 1, labels)."""
    present = np.bincount(labels.ravel(), minlength=n) > 0
    present[0] = False
    lut = np.cumsum(present).astype(np.int32) * present
    return int(present.sum()) + 1, lut[labels]


def reassign(labels: np.ndarray, todo: np.ndarray, max_dist: float) -> np.ndarray:
    """Give every `todo` pixel the label of the nearest labelled pixel, up to max_dist away.

    One Euclidean distance transform with pixel labels (cv2.distanceTransformWithLabels) finds,
    for every pixel, its nearest labelled pixel; an edge band therefore splits along its medial
    axis between the two components it separates. Which side a depth-edge pixel joins is
    re-decided by depth at full resolution (upsample.refine_by_depth).

    Args:
        labels: (h, w) int32, 0 = unlabelled. Not modified.
        todo: (h, w) bool, pixels allowed to receive a label.
        max_dist: pixels farther than this from any label stay 0 (wide edge-only areas become
            components of their own instead of being swallowed).
    Returns the grown (h, w) int32 labels.
    """
    seeds = labels > 0
    if not seeds.any() or not todo.any():
        return labels
    dist, nearest = cv2.distanceTransformWithLabels(
        (~seeds).view(np.uint8), cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL
    )
    # DIST_LABEL_PIXEL numbers the zero (seed) pixels 1, 2, ... in raster order.
    seed_labels = labels.ravel()[np.flatnonzero(seeds)]
    fill = todo & (dist <= max_dist)
    out = labels.copy()
    out[fill] = seed_labels[nearest[fill] - 1]
    return out


def _cores(f: GeometricFeatures, cfg: GeometricConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(part, object, region) core masks: pixels not on that level's edges."""
    if not f.has_depth:
        lo, mid, hi = cfg.colour_levels
        return f.colour_step < lo, f.colour_step < mid, f.colour_step < hi
    region = f.valid & ~f.depth_edge
    obj = region & ~f.concave
    part = obj & ~f.convex & (f.colour_step < cfg.colour_step)
    return part, obj, region


def _coarser_lut(
    fine: np.ndarray, n_fine: int, core: np.ndarray, trusted: np.ndarray
) -> tuple[int, np.ndarray]:
    """LUT fine label -> coarser label, from the components of the coarser level's core.

    Every fine label takes the component id found under its `trusted` pixels: the original core
    pixels of the part components, which lie in a single coarse component by construction (fine
    cores are subsets of coarse cores). Pixels a part gained by re-assignment may sit in another
    coarse component and must not decide (one such pixel would otherwise merge a floor into a
    wall). Labels without trusted pixels use their other core pixels; labels with none at all
    become their own coarse label.
    """
    n_coarse, coarse = _components(core)
    lut = np.zeros(n_fine, np.int32)
    lut[fine[core]] = coarse[core]
    sure = core & trusted
    lut[fine[sure]] = coarse[sure]
    lut[0] = 0
    orphan = np.flatnonzero(lut[1:] == 0) + 1
    lut[orphan] = n_coarse + np.arange(orphan.size, dtype=np.int32)
    present = np.zeros(n_coarse + orphan.size, bool)
    present[lut] = True
    present[0] = False
    renumber = np.cumsum(present).astype(np.int32) * present
    return int(present.sum()) + 1, renumber[lut]


def _hole_fill(
    holes: np.ndarray, part: np.ndarray, luts: tuple[np.ndarray, ...], max_area: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Enclosed holes per level.

    A hole (4-connected component of unlabelled pixels) is enclosed at a level when it does not
    touch the image border, is at most max_area pixels, and every labelled pixel 4-adjacent to it
    has the same label at that level.

    Args:
        holes: (h, w) bool unlabelled pixels.
        part: (h, w) int32 part labels.
        luts: for each level, a LUT from part label to that level's label (identity for part).
    Returns (hole component ids (h, w) int32, per level an LUT hole id -> filling label or 0).
    """
    n, comp, stats, _ = cv2.connectedComponentsWithStats(
        holes.view(np.uint8), connectivity=4, ltype=cv2.CV_32S
    )
    h, w = holes.shape
    x, y, bw, bh, area = (stats[:, i] for i in range(5))
    eligible = (x > 0) & (y > 0) & (x + bw < w) & (y + bh < h) & (area <= max_area)
    eligible[0] = False
    fills = [np.zeros(n, np.int32) for _ in luts]
    if not eligible[1:].any():
        return comp, fills
    pairs_h, pairs_l = [], []
    for a_h, b_l in (
        (comp[:, :-1], part[:, 1:]),
        (comp[:, 1:], part[:, :-1]),
        (comp[:-1], part[1:]),
        (comp[1:], part[:-1]),
    ):
        sel = (a_h > 0) & (b_l > 0)
        pairs_h.append(a_h[sel])
        pairs_l.append(b_l[sel])
    hid = np.concatenate(pairs_h).astype(np.int64)
    plab = np.concatenate(pairs_l)
    keep = eligible[hid]
    hid, plab = hid[keep], plab[keep]
    for lut, fill in zip(luts, fills, strict=True):
        lab = lut[plab].astype(np.int64)
        codes = np.unique(hid * (int(lut.max()) + 1) + lab)
        uh = codes // (int(lut.max()) + 1)
        ul = codes % (int(lut.max()) + 1)
        distinct = np.bincount(uh, minlength=n)
        single = distinct[uh] == 1
        fill[uh[single]] = ul[single]
    return comp, fills


def _grow(
    core: np.ndarray,
    valid: np.ndarray,
    min_px: int,
    cfg: GeometricConfig,
    f: GeometricFeatures,
    snap: bool = False,
) -> tuple[int, np.ndarray, np.ndarray]:
    """Components of `core`, tiny ones dissolved, grown over every valid pixel.

    Band pixels go to the nearest component, then, with `snap` and depth, to the component
    whose local tangent plane they lie on (bands.py).

    Returns (count incl. 0, (h, w) int32 labels, (h, w) bool seed pixels: the core pixels of
    the components that were kept, whose label was not re-assigned).
    """
    n, labels = _components(core)
    area = np.bincount(labels.ravel(), minlength=n)
    small = area < min_px
    small[0] = False
    if small.any():
        labels[small[labels]] = 0
    seeds = labels > 0
    labels = reassign(labels, valid & ~seeds, cfg.reassign_max_px)
    if snap and f.has_depth:
        band = valid & ~seeds & (labels > 0)
        labels = snap_to_planes(labels, seeds, band, f.points, f.normals, cfg.band_radius_px)
    leftover = valid & (labels == 0)
    if leftover.any():
        n_left, extra = _components(leftover)
        labels = np.where(extra > 0, extra + n, labels).astype(np.int32)
        n += n_left
    n, labels = _compact(labels, n)
    return n, labels, seeds


def _parts_within(
    part: np.ndarray, n_part: int, seeds: np.ndarray, obj: np.ndarray, valid: np.ndarray
) -> tuple[int, np.ndarray, np.ndarray]:
    """Make every part lie inside one object.

    Parts were grown without looking at objects, so an edge pixel can join a part of the
    neighbouring object. Each part belongs to the object under its seed pixels; pixels whose
    part disagrees with their own object are regrouped into new parts, one per 4-connected
    piece and object. Returns (count incl. 0, part labels, object LUT over parts).
    """
    lut = np.zeros(n_part, np.int32)
    lut[part[valid]] = obj[valid]
    lut[part[seeds]] = obj[seeds]
    lut[0] = 0
    conflict = valid & (lut[part] != obj)
    if conflict.any():
        n_c, pieces = _components(conflict)
        rows, cols = np.nonzero(conflict)
        key = pieces[rows, cols].astype(np.int64) * (int(obj.max()) + 1) + obj[rows, cols]
        uniq, inverse = np.unique(key, return_inverse=True)
        part = part.copy()
        part[rows, cols] = n_part + inverse.astype(np.int32)
        lut = np.concatenate([lut, (uniq % (int(obj.max()) + 1)).astype(np.int32)])
        n_part += uniq.size
    return n_part, part, lut


def _join_by_colour(
    part: np.ndarray, n_part: int, colour: np.ndarray, n_colour: int, rgb: np.ndarray, max_chroma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Give colour patches (of depth holes) to the adjacent part of the same chromaticity.

    Returns (part map with the joined patches filled in, colour map with them removed).
    """
    flat_rgb = rgb.reshape(-1, 3).astype(np.float64)

    def chroma(labels: np.ndarray, n: int) -> np.ndarray:
        sums = np.stack([np.bincount(labels.ravel(), flat_rgb[:, k], minlength=n) for k in range(3)], 1)
        return sums / np.maximum(sums.sum(axis=1, keepdims=True), 1.0)

    pairs = []
    for a, b in (
        (colour[:, :-1], part[:, 1:]),
        (colour[:, 1:], part[:, :-1]),
        (colour[:-1], part[1:]),
        (colour[1:], part[:-1]),
    ):
        sel = (a > 0) & (b > 0)
        pairs.append(a[sel].astype(np.int64) * n_part + b[sel])
    if not any(p.size for p in pairs):
        return part, colour
    codes = np.unique(np.concatenate(pairs))
    ci, pj = codes // n_part, codes % n_part
    dist = np.abs(chroma(colour, n_colour)[ci] - chroma(part, n_part)[pj]).sum(axis=1)
    order = np.lexsort((dist, ci))
    first = np.ones(order.size, bool)
    first[1:] = ci[order][1:] != ci[order][:-1]
    best = order[first]
    ok = dist[best] < max_chroma
    target = np.zeros(n_colour, np.int32)
    target[ci[best][ok]] = pj[best][ok]
    fill = target[colour]
    return np.maximum(part, fill), colour * (fill == 0)


def build_work_labels(
    f: GeometricFeatures, cfg: GeometricConfig, min_px: int, hole_max_px: int
) -> WorkLabels:
    """Label maps at the features' resolution.

    Parts are components of the part core grown over every valid pixel; with depth, objects
    and regions are components of the patch graph over them (graph.py); without depth, of the
    coarser colour cores. Parts are then split where they cross an object boundary.

    Args:
        f: edge evidence (features.compute_features) at the working resolution.
        cfg: parameters (reassign_max_px, colour_step for colour holes).
        min_px: components smaller than this dissolve into their neighbours.
        hole_max_px: largest hole (pixels) that may join the component around it.
    """
    part_core, object_core, region_core = _cores(f, cfg)
    valid = f.valid if f.has_depth else np.ones(part_core.shape, bool)

    n_part, part, part_seeds = _grow(part_core, valid, min_px, cfg, f)
    if f.has_depth:
        piece_core = object_core & (f.colour_step < cfg.colour_step)
        n_pieces, pieces, piece_seeds = _grow(piece_core, valid, min_px, cfg, f, snap=True)
        object_map, region_lut = objects_and_regions(pieces, n_pieces, piece_seeds, f, cfg)
    else:
        n_obj, object_map, object_seeds = _grow(object_core, valid, min_px, cfg, f)
        _, region_lut = _coarser_lut(object_map, n_obj, region_core, object_seeds)
    n_part, part, object_lut = _parts_within(part, n_part, part_seeds, object_map, valid)

    holes = part == 0
    obj_holes = np.zeros_like(part)
    reg_holes = np.zeros_like(part)
    if holes.any() and f.has_depth:
        part_to_region = region_lut[object_lut]
        identity = np.arange(n_part, dtype=np.int32)
        comp, (fill_p, fill_o, fill_r) = _hole_fill(
            holes, part, (identity, object_lut, part_to_region), hole_max_px
        )
        part = np.maximum(part, fill_p[comp])
        obj_holes = fill_o[comp] * (fill_p[comp] == 0)
        reg_holes = fill_r[comp] * (fill_o[comp] == 0) * (fill_p[comp] == 0)
        # What stays unlabelled has no depth to go by: split it into patches of uniform colour.
        # A patch whose chromaticity matches an adjacent part joins it (a dark or grazing face
        # that returned no depth, next to the rest of its object); the others become labels of
        # their own, so a click on a black screen or a window still returns that patch.
        rest = (part == 0) & (reg_holes == 0) & (obj_holes == 0)
        if rest.any():
            n_c, colour = _components(rest & (f.colour_step < cfg.colour_step))
            if n_c > 1:
                part, colour = _join_by_colour(part, n_part, colour, n_c, f.rgb, cfg.merge_chroma)
                size = np.bincount(colour.ravel(), minlength=n_c)
                keep = size >= min_px
                keep[0] = False
                colour = colour * keep[colour]
                n_c, colour = _compact(colour, n_c)
            if n_c > 1:
                # one new label per colour patch at every level, so the levels still nest
                new = np.arange(1, n_c, dtype=np.int32)
                part = np.where(colour > 0, colour + (n_part - 1), part).astype(np.int32)
                object_lut = np.concatenate([object_lut, new + int(object_lut.max())])
                region_lut = np.concatenate([region_lut, new + int(region_lut.max())])
                n_part += n_c - 1
            # colour-edge pixels inside holes: to the nearest label, if close
            part = reassign(part, rest & (part == 0), 2.0)
    return WorkLabels(part, object_lut, region_lut, obj_holes.astype(np.int32), reg_holes.astype(np.int32))

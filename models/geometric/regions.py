"""Label maps at three granularities, grown between the edges of features.py.

    part   = bounded by depth edges + every crease + strong colour edges   (a box's face)
    object = bounded by depth edges + concave contacts                     (the box, cut from the
                                                                            floor it rests on)
    region = bounded by depth edges only                                   (everything touching)

With depth, objects and regions come from the patch graph of graph.py (LCCP-style decisions
between surface pieces, robust to noise specks and to gaps in crease lines); parts are
4-connected components (cv2.connectedComponents) of the pixels off every edge, split by object.
Without depth, each level is the components of the pixels under that level's colour threshold.
The levels nest exactly: every part lies in one object and every object in one region, because
the coarser levels are look-up tables over the part map.

Edge pixels are handed to the nearest component (and, with depth, to the surface whose tangent
plane they lie on, bands.py), so masks are not eroded by the width of the edge bands. Sensor holes
surrounded by one object join it; other holes are split by colour and join the adjacent part of
the same chromaticity, or become labels of their own so a click there still means something.
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
    """The three label maps at the working resolution (h, w), as a part map and two LUTs.

    Attributes:
        part: (h, w) int32 labels 1..n_part-1; 0 only where nothing could be said (no depth and
            no colour patch).
        object_lut: (n_part,) int32 object label of every part (object_lut[0] = 0).
        region_lut: (n_object,) int32 region label of every object.
    """

    part: np.ndarray
    object_lut: np.ndarray
    region_lut: np.ndarray

    @property
    def object(self) -> np.ndarray:
        """(h, w) int32 object map."""
        return self.object_lut[self.part]

    @property
    def region(self) -> np.ndarray:
        """(h, w) int32 region map."""
        return self.region_lut[self.object]


def _components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """4-connected components of a bool mask: (count incl. background 0, (h, w) int32 labels)."""
    n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    return n, labels


def components_with_areas(mask: np.ndarray, connectivity: int) -> tuple[int, np.ndarray, np.ndarray]:
    """cv2.connectedComponentsWithStats for callers that need only the areas: (count incl. 0,
    (h, w) int32 labels, (count,) int64 areas). Same labels (same labelling algorithm); the areas
    by np.bincount, because OpenCV's stats pass (boxes, float centroids) costs twice the
    labelling itself."""
    n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=connectivity, ltype=cv2.CV_32S)
    return n, labels, np.bincount(labels.ravel(), minlength=n)


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
    axis between the two components it separates; bands.snap_to_planes then moves band pixels
    onto the surface they geometrically belong to.

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


def _parts_in(
    object_map: np.ndarray, part_core: np.ndarray, valid: np.ndarray, min_px: int, cfg: GeometricConfig
) -> tuple[int, np.ndarray, np.ndarray]:
    """Parts: components of the part core, every other pixel joining its nearest one, split by
    object so that every part lies in exactly one object.

    Returns (count incl. 0, (h, w) int32 part labels, (count,) int32 object of every part).
    """
    n, cc = _components(part_core)
    area = np.bincount(cc.ravel(), minlength=n)
    small = area < min_px
    small[0] = False
    if small.any():
        cc[small[cc]] = 0
    # Edge bands between parts are a few pixels wide: grow the components into them by
    # dilation (labels < 2**24 are exact in float32), a few sweeps, cheaper than a distance
    # transform; what stays unreached becomes the "rest of the object" part (label 0 below).
    grown = cc.astype(np.float32)
    todo = valid & (cc == 0)
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(cfg.part_grow_px):
        np.copyto(grown, cv2.dilate(grown, kernel), where=todo & (grown == 0))
    cc = grown.astype(np.int64)
    key = object_map.astype(np.int64) * (n + 1) + cc
    key[object_map == 0] = 0
    present = np.bincount(key.ravel()) > 0
    present[0] = False
    renumber = (np.cumsum(present) * present).astype(np.int32)
    object_lut = np.concatenate([[0], np.flatnonzero(present) // (n + 1)]).astype(np.int32)
    return len(object_lut), renumber[key], object_lut


def _adjacent_parts(
    holes: np.ndarray, part: np.ndarray, n_part: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hole id, part label, shared boundary length) of every hole-part pair touching 4-wise.

    O(hole pixels): only the hole pixels' four neighbours are read.
    """
    h, w = part.shape
    idx = np.flatnonzero(holes)
    if idx.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty.astype(np.int32), empty
    padded = np.zeros((h + 2, w + 2), np.int32)
    padded[1:-1, 1:-1] = part
    flat = padded.ravel()
    rows, cols = np.divmod(idx, w)
    centre = (rows + 1) * (w + 2) + cols + 1
    hole_ids = holes.ravel()[idx].astype(np.int64)
    codes = []
    for off in (1, -1, w + 2, -(w + 2)):
        nb = flat[centre + off]
        sel = nb > 0
        codes.append(hole_ids[sel] * n_part + nb[sel])
    uniq, count = np.unique(np.concatenate(codes), return_counts=True)
    return uniq // n_part, (uniq % n_part).astype(np.int32), count


def _same_colour_neighbour(
    colour: np.ndarray, n_colour: int, part: np.ndarray, n_part: int, rgb: np.ndarray, max_chroma: float
) -> np.ndarray:
    """(n_colour,) int32: for every colour patch, the adjacent part whose colour right at the
    shared boundary has the closest chromaticity, if closer than max_chroma (else 0).

    O(patch pixels): the patch's pixels and their four neighbours are all that is read.
    """
    h, w = part.shape
    idx = np.flatnonzero(colour)
    target = np.zeros(n_colour, np.int32)
    if idx.size == 0:
        return target
    flat_rgb = rgb.reshape(-1, 3)
    cid = colour.ravel()[idx].astype(np.int64)
    own_rgb = np.take(flat_rgb, idx, axis=0).T
    own = np.stack([np.bincount(cid, own_rgb[k], n_colour) for k in range(3)], 1)
    padded = np.zeros((h + 2, w + 2), np.int32)
    padded[1:-1, 1:-1] = part
    flat = padded.ravel()
    rows, cols = np.divmod(idx, w)
    centre = (rows + 1) * (w + 2) + cols + 1
    codes, nb_pixels = [], []
    for off_padded, off in ((1, 1), (-1, -1), (w + 2, w), (-(w + 2), -w)):
        nb = flat[centre + off_padded]
        sel = nb > 0
        codes.append(cid[sel] * n_part + nb[sel])
        nb_pixels.append(idx[sel] + off)
    code = np.concatenate(codes)
    if code.size == 0:
        return target
    pix = np.concatenate(nb_pixels)
    uniq, inverse = np.unique(code, return_inverse=True)
    nb_rgb = np.take(flat_rgb, pix, axis=0).T
    theirs = np.stack([np.bincount(inverse, nb_rgb[k], uniq.size) for k in range(3)], 1)
    ci, pj = uniq // n_part, (uniq % n_part).astype(np.int32)
    chroma_own = own / np.maximum(own.sum(axis=1, keepdims=True), 1.0)
    chroma_theirs = theirs / np.maximum(theirs.sum(axis=1, keepdims=True), 1.0)
    dist = np.abs(chroma_own[ci] - chroma_theirs).sum(axis=1)
    order = np.lexsort((dist, ci))
    first = np.ones(order.size, bool)
    first[1:] = ci[order][1:] != ci[order][:-1]
    best = order[first]
    ok = dist[best] < max_chroma
    target[ci[best][ok]] = pj[best][ok]
    return target


def _fill_holes(
    part: np.ndarray,
    n_part: int,
    object_lut: np.ndarray,
    region_lut: np.ndarray,
    f: GeometricFeatures,
    cfg: GeometricConfig,
    min_px: int,
    hole_max_px: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label the pixels without depth (part == 0). Returns (part, object_lut, region_lut).

    1. A hole that does not touch the image border, is at most hole_max_px pixels and is
       surrounded by a single object joins that object (its part sharing the longest boundary):
       sensor holes inside an object are part of it.
    2. What remains is split into patches of uniform colour. A patch whose chromaticity matches
       an adjacent part joins it (a dark or grazing face that returned no depth, next to the rest
       of its object); the others become labels of their own at every level (so the levels still
       nest), and a click on a black screen or a window still returns that patch.
    3. Colour-edge pixels left in holes take a labelled 4-neighbour's label (up to 2 pixels in).
    """
    h, w = part.shape
    n_holes, holes, stats, _ = cv2.connectedComponentsWithStats(
        (part == 0).view(np.uint8), connectivity=4, ltype=cv2.CV_32S
    )
    x, y, bw, bh, area = (stats[:, k] for k in range(5))
    hid, plab, shared = _adjacent_parts(holes, part, n_part)
    if hid.size:
        obj = object_lut[plab].astype(np.int64)
        n_obj = int(object_lut.max()) + 1
        objects_around = np.bincount(np.unique(hid * n_obj + obj) // n_obj, minlength=n_holes)
        single = objects_around == 1
        inner = (x > 0) & (y > 0) & (x + bw < w) & (y + bh < h) & (area <= hole_max_px) & single
        inner[0] = False
        order = np.lexsort((-shared, hid))
        first = np.ones(order.size, bool)
        first[1:] = hid[order][1:] != hid[order][:-1]
        fill = np.zeros(n_holes, np.int32)
        fill[hid[order][first]] = plab[order][first]
        fill *= inner
        part = np.maximum(part, fill[holes])

    rest = part == 0
    if not rest.any():
        return part, object_lut, region_lut
    n_c, colour = _components(rest & (f.colour_step < cfg.colour_step))
    if n_c > 1:
        target = _same_colour_neighbour(colour, n_c, part, n_part, f.rgb, cfg.merge_chroma)
        joined = target[colour]
        part = np.maximum(part, joined)
        colour = colour * (joined == 0)
        size = np.bincount(colour.ravel(), minlength=n_c)
        keep = size >= min_px
        keep[0] = False
        n_c, colour = _compact(colour * keep[colour], n_c)
    if n_c > 1:
        new = np.arange(1, n_c, dtype=np.int32)
        part = np.where(colour > 0, colour + (n_part - 1), part).astype(np.int32)
        object_lut = np.concatenate([object_lut, new + int(object_lut.max())])
        region_lut = np.concatenate([region_lut, new + int(region_lut.max())])
    # colour-edge pixels left in holes take a labelled 4-neighbour's label (two sweeps)
    for _ in range(2):
        left = np.flatnonzero(rest.ravel() & (part.ravel() == 0))
        if left.size == 0:
            break
        padded = np.zeros((h + 2, w + 2), np.int32)
        padded[1:-1, 1:-1] = part
        flat = padded.ravel()
        rows, cols = np.divmod(left, w)
        centre = (rows + 1) * (w + 2) + cols + 1
        got = np.zeros(left.size, np.int32)
        for off in (1, -1, w + 2, -(w + 2)):
            np.maximum(got, flat[centre + off], out=got)
        part.ravel()[left] = got
    return part, object_lut, region_lut


def build_work_labels(
    f: GeometricFeatures, cfg: GeometricConfig, min_px: int, hole_max_px: int
) -> WorkLabels:
    """Label maps at the features' resolution.

    With depth, objects and regions are components of the patch graph (graph.py) over pieces
    (surfaces bounded by depth edges, concave creases and strong colour edges); without depth,
    components of the coarser colour cores. Parts are components of the part core, split by
    object, so every part lies in one object.

    Args:
        f: edge evidence (features.compute_features) at the working resolution.
        cfg: parameters (reassign_max_px, colour_step for colour holes).
        min_px: components smaller than this dissolve into their neighbours.
        hole_max_px: largest hole (pixels) that may join the component around it.
    """
    part_core, object_core, region_core = _cores(f, cfg)
    valid = f.valid if f.has_depth else np.ones(part_core.shape, bool)

    if f.has_depth:
        piece_core = object_core & (f.colour_step < cfg.colour_step)
        n_pieces, pieces, piece_seeds = _grow(piece_core, valid, min_px, cfg, f, snap=True)
        object_map, region_lut = objects_and_regions(pieces, n_pieces, piece_seeds, f, cfg)
    else:
        n_obj, object_map, object_seeds = _grow(object_core, valid, min_px, cfg, f)
        _, region_lut = _coarser_lut(object_map, n_obj, region_core, object_seeds)
    n_part, part, object_lut = _parts_in(object_map, part_core, valid, min_px, cfg)

    if f.has_depth and not valid.all():
        part, object_lut, region_lut = _fill_holes(
            part, n_part, object_lut, region_lut, f, cfg, min_px, hole_max_px
        )
    return WorkLabels(part, object_lut, region_lut)

"""Objects inside a support cluster: split where a concave crease and a colour change agree.

A cluster (support.py) is everything standing on a support without a depth jump inside; on a
cluttered table that is often two objects that touch (a can standing on a can, a chips can in
a bowl, an eraser on a box). Where two objects touch, the surface folds inwards (a concave
crease, the LCCP criterion) and the colour changes. One object's own concave folds (a bowl's
inside, a mug's handle joint) keep its colour, and its printed texture is not a crease. So:

1. the cluster minus its (dilated) concave creases falls into pieces; pieces of at least
   cfg.split_min_frac of their cluster (and 20 working pixels) are candidates, the crumbs go to
   the nearest candidate of their own cluster;
2. neighbouring candidates whose median colours (CIE Lab) are closer than cfg.split_lab join
   again (union-find over the neighbour pairs).

What remains is one object per piece of colour. Where it fails: touching objects of one colour
(two white cups) stay merged; an object whose halves have different colours and meet at a
concave fold (a mug with a black handle) is split.
"""

from __future__ import annotations

import cv2
import numpy as np

from models.geometric.config import GeometricConfig
from models.geometric.kernels import boundary_pairs
from models.geometric.regions import components_with_areas


def split_clusters(
    cluster: np.ndarray, concave: np.ndarray, rgb: np.ndarray, cfg: GeometricConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(objects (h, w) int32, 0 = none; cluster_of (n_objects + 1,) int32 the cluster of each).

    Args: cluster (h, w) int32 cluster labels (0 = not in one); concave (h, w) bool concave
    creases; rgb (h, w, 3) uint8, all at the working resolution.
    """
    in_cluster = cluster > 0
    crease = cv2.dilate(concave.view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)
    core = in_cluster & ~crease
    # pixels next to another cluster are cut too, so a piece never spans two clusters
    edge = np.zeros_like(core)
    dx = cluster[:, 1:] != cluster[:, :-1]
    dy = cluster[1:] != cluster[:-1]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:] |= dy
    edge[:-1] |= dy
    core &= ~edge
    n, pieces, area = components_with_areas(core, 4)
    piece_cluster = np.zeros(n, np.int64)
    piece_cluster[pieces[core]] = cluster[core]
    cluster_area = np.bincount(cluster.ravel(), minlength=int(cluster.max()) + 1)
    big = (area >= np.maximum(cfg.split_min_frac * cluster_area[piece_cluster], 20)) & (piece_cluster > 0)
    big[0] = False
    seeds = np.where(big[pieces], pieces, 0).astype(np.int32)
    # every cluster pixel goes to its nearest candidate piece; where that lies in another
    # cluster (or the cluster has no candidate) the pixel keeps its cluster as a whole
    objects = np.zeros(cluster.shape, np.int64)
    if big.any():
        _, nearest = cv2.distanceTransformWithLabels(
            (seeds == 0).view(np.uint8), cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL
        )
        seed_ids = seeds.ravel()[np.flatnonzero(seeds > 0)]
        objects = np.where(in_cluster, seed_ids[nearest - 1], 0).astype(np.int64)
        objects[piece_cluster[objects] != cluster] = 0
    n_big = n
    whole = in_cluster & (objects == 0)
    objects[whole] = n_big + cluster[whole]  # clusters without a candidate stay whole
    n_ids = n_big + int(cluster.max()) + 1
    owner = np.zeros(n_ids, np.int64)
    owner[:n_big] = piece_cluster
    owner[n_big:] = np.arange(int(cluster.max()) + 1)
    objects = _merge_by_colour(objects, owner, rgb, cfg.split_lab)
    # compact ids, remember each object's cluster
    present = np.bincount(objects.ravel(), minlength=n_ids) > 0
    present[0] = False
    lut = (np.cumsum(present) * present).astype(np.int32)
    cluster_of = np.zeros(int(present.sum()) + 1, np.int32)
    cluster_of[lut[present]] = owner[np.flatnonzero(present)]
    return lut[objects], cluster_of


def _merge_by_colour(objects: np.ndarray, owner: np.ndarray, rgb: np.ndarray, max_lab: float) -> np.ndarray:
    """Join neighbouring labels of one cluster (owner: label -> cluster) whose median Lab colours
    differ by less than max_lab (OpenCV's 8-bit Lab units)."""
    n_ids = len(owner)
    flat = objects.ravel()
    sel = flat > 0
    if not sel.any():
        return objects
    # only the labelled pixels, as one image row: OpenCV's 8-bit Lab is per pixel (the same
    # values in any layout), and one row is one stripe, no hand-off to a busy worker thread
    lab = cv2.cvtColor(rgb.reshape(-1, 3)[sel][None], cv2.COLOR_RGB2LAB)[0]
    colour = _median_colours(flat[sel], lab, n_ids)
    first_x, first_y = boundary_pairs(objects.astype(np.int32))
    w = objects.shape[1]
    one = np.concatenate([flat[first_x], flat[first_y]])
    other = np.concatenate([flat[first_x + 1], flat[first_y + w]])
    # unique (min, max) pairs in lexicographic order, as one int64 key each
    key = np.unique(np.minimum(one, other) * n_ids + np.maximum(one, other))
    pairs = np.stack([key // n_ids, key % n_ids], 1)
    parent = np.arange(n_ids)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    close = np.linalg.norm(colour[pairs[:, 0]] - colour[pairs[:, 1]], axis=1) < max_lab
    close &= owner[pairs[:, 0]] == owner[pairs[:, 1]]
    for a, b in pairs[close]:
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    used = np.flatnonzero(np.bincount(flat, minlength=n_ids))
    root = np.arange(n_ids)
    root[used] = [find(int(i)) for i in used]
    return root[objects]


def _median_colours(ids: np.ndarray, lab: np.ndarray, n_ids: int) -> np.ndarray:
    """(n_ids, 3) float64 per-label median of uint8 Lab colours (ids (n,) > 0, lab (n, 3) uint8),
    what np.median gives (the mean of the two middle values for an even count), from one
    histogram per label and channel instead of a sort and a median call per label."""
    present = np.flatnonzero(np.bincount(ids, minlength=n_ids))
    compact = np.zeros(n_ids, np.int64)
    compact[present] = np.arange(present.size)
    row = compact[ids]
    hist = np.bincount(
        ((row[:, None] * 3 + np.arange(3)) * 256 + lab).ravel(), minlength=present.size * 3 * 256
    ).reshape(present.size, 3, 256)
    cum = hist.cumsum(axis=2)
    count = cum[:, :, -1:]
    lo = (cum > (count - 1) // 2).argmax(axis=2)  # the ((k - 1) // 2)-th smallest value
    hi = (cum > count // 2).argmax(axis=2)  # the (k // 2)-th
    colour = np.zeros((n_ids, 3))
    colour[present] = (lo.astype(np.float64) + hi) / 2.0
    return colour

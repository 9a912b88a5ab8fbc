"""Support planes and the object clusters standing on them.

Objects rest on tables, floors and shelves. The dominant planes of a frame (seeded RANSAC on a
subsample of the working-resolution points, `ransac_plane`) are its supports, walls and floors;
what is not on a plane and is connected without a depth jump is an object cluster, the
image-grid form of the "drop the table plane, DBSCAN, take the cluster" recipe (grid
connectivity with a strict depth-jump test stands in for DBSCAN's 3D radius, at a fraction of
its cost). With cfg.support_planes, clusters become the "object" level of the label maps
(encoder.py), the LCCP objects of graph.py (split by cluster) the "part" level, and the cluster
again the "region": one click returns the whole drill, not its body without its handle, and
printed texture or a crease on an object no longer cuts it.

Where it fails: objects that touch in 3D (a can standing on another, a pen in a mug, a drill
leaning on a box) form one cluster; the part level still separates them where LCCP does. An
object thinner than the plane band (a sheet of paper, a marker lying flat) is part of its
support.
"""

from __future__ import annotations

import cv2
import numpy as np

from models.geometric.config import GeometricConfig
from models.geometric.kernels import band_inliers, plane_counts, plane_distance, plane_facing
from models.geometric.regions import components_with_areas


def support_mask(
    points: np.ndarray, valid: np.ndarray, cfg: GeometricConfig, normals: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """((h, w) bool support, (h, w) bool fringe): pixels on up to cfg.support_max_planes
    dominant planes, and the pixels just above them.

    A plane counts when one connected piece of it (after a 5x5 opening) holds at least
    cfg.support_min_frac of the valid pixels: a table top, a floor, a wall. Why connected: on a
    cluttered table the tops of several objects at one height (a lid, a bag, a cup rim) lie on one
    plane and together can hold 8 % of the pixels; counting them as a support deleted those
    objects (bench.real_accuracy, frame 00003). Of an accepted plane only the pieces holding at
    least cfg.support_piece_frac are support. A pixel is on a plane within 3 x the plane's RMS
    residual, at least cfg.support_band_min_m and at most cfg.support_band_m +
    cfg.support_band_quad * z² (sensor noise grows with z²).

    The fringe is what lies within cfg.support_fringe x that band of a support plane, near
    (cfg.support_fringe_px) its support pixels: the noisy skin of a table at grazing angles that
    bridges objects standing apart. Clusters do not grow through it, but take back their own
    fringe pixels (`clusters`).

    With normals, a pixel is on a plane only if its normal is also within cfg.support_normal_deg
    of the plane's (or undefined): the lower centimetre of a can, a sphere or a box side lies
    inside the band but faces sideways, and belongs to the object, not to the table.

    RANSAC runs with a fixed seed on every cfg.support_stride-th valid pixel, so the same frame
    always gives the same planes; a rejected plane's points are set aside and RANSAC tries again
    (at most 2 x support_max_planes fits).
    """
    h, w = valid.shape
    flat = np.flatnonzero(valid.ravel())
    on = np.zeros(h * w, bool)
    fringe = np.zeros(h * w, bool)
    if flat.size < 100:
        return on.reshape(h, w), fringe.reshape(h, w)
    # everything below runs on whole-image rows (invalid pixels are never free, so never
    # inliers): no gathers and scatters between valid-pixel lists and the image
    valid_flat = valid.ravel()
    xyz = np.empty((3, h * w))  # float64 coordinate rows for the compiled distance loops
    xyz[...] = points.reshape(-1, 3).T
    z = xyz[2]
    band = cfg.support_band_m + cfg.support_band_quad * z * z
    sample = flat[:: cfg.support_stride]
    free = valid_flat.copy()
    rng = np.random.default_rng(0)
    accepted = 0
    kernel = np.ones((5, 5), np.uint8)
    nrm = None if normals is None else normals.reshape(-1, 3)
    no_facing = np.zeros(0, np.float32)
    undefined = no_facing.astype(bool)
    if nrm is not None:
        undefined = (nrm[:, 0] == 0) & (nrm[:, 1] == 0) & (nrm[:, 2] == 0)
    cos_max = float(np.cos(np.radians(cfg.support_normal_deg)))
    cos_grow = float(np.cos(np.radians(cfg.support_grow_deg)))
    near_kernel = np.ones((cfg.support_fringe_px, cfg.support_fringe_px), np.uint8)
    for _ in range(2 * cfg.support_max_planes):
        idx = sample[free[sample]]
        if idx.size > cfg.support_max_sample:  # hypotheses are scored on a bounded subsample
            idx = idx[np.linspace(0, idx.size - 1, cfg.support_max_sample).astype(np.int64)]
        if idx.size < 50 or accepted >= cfg.support_max_planes:
            break
        sub = np.take(points.reshape(-1, 3), idx, axis=0).astype(np.float64)  # = xyz[:, idx].T
        a = ransac_plane(sub, cfg.support_ransac_m, cfg.support_iterations, rng)
        dist = plane_distance(xyz, a)
        # the band follows the plane's own noise: 3 x the RMS residual of its RANSAC inliers
        # (a clean depth map gets a thin band, a noisy sensor a wide one), within [min, band]
        core = dist[idx] < cfg.support_ransac_m
        rms = float(np.sqrt(np.mean(dist[idx][core] ** 2))) if core.any() else cfg.support_ransac_m
        floor = max(3.0 * rms, cfg.support_band_min_m)  # the band is min(floor, band) per pixel
        facing = no_facing if nrm is None else plane_facing(nrm, a[:3].astype(np.float32))
        # free pixels in the band facing the plane; the ones within support_ransac_m leave `free`
        # (explained either way: do not fit them again)
        inl8 = band_inliers(
            dist, band, floor, free, facing, undefined, np.float32(cos_max), cfg.support_ransac_m
        )
        inl = inl8.view(bool)
        # plane inliers in the middle of an object (a box's face parallel to the table) are
        # specks or thin lines, not a support: an opening keeps only broad plane areas
        img = cv2.morphologyEx(inl8.reshape(h, w), cv2.MORPH_OPEN, kernel)
        _, lab, areas = components_with_areas(img, 8)
        areas[0] = 0
        if areas.max() < cfg.support_min_frac * flat.size:
            continue
        keep = areas >= cfg.support_piece_frac * flat.size
        keep[0] = False
        piece = keep[lab]
        if nrm is not None and cfg.support_grow_m > 0:
            # a real table is not a plane to a few millimetres (sensor warp at range): grow the
            # piece over connected pixels facing the same way within support_grow_m of it
            close = (dist < cfg.support_grow_m) & (facing >= cos_grow) & (free | inl)
            like = close.view(np.uint8).reshape(h, w) | piece.view(np.uint8)
            _, grown = cv2.connectedComponents(like, connectivity=4, ltype=cv2.CV_32S)
            hit = np.zeros(int(grown.max()) + 1, bool)
            hit[grown[piece]] = True
            hit[0] = False
            piece = hit[grown]
        on |= piece.ravel()
        near = cv2.dilate(piece.view(np.uint8), near_kernel).view(bool).ravel()
        thr = np.minimum(floor, band)
        fringe |= near & (dist < cfg.support_fringe * thr) & valid_flat
        free &= ~inl
        accepted += 1
    on = on.reshape(h, w) & valid
    return on, fringe.reshape(h, w) & valid & ~on


def ransac_plane(pts: np.ndarray, threshold: float, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """(4,) plane a x + b y + c z + d = 0 (unit normal) with the most points within threshold.

    Why not Open3D's segment_plane: it samples in parallel threads, so the same frame can give
    slightly different planes from run to run, and the encoder must be a pure function of its
    frame (the scheduler and the tests rely on it). All hypotheses are scored in one compiled
    loop (kernels.plane_counts: iterations x points distances, ~0.5 M for the defaults), then the
    best is refined by least squares (SVD) on its inliers.
    """
    n = len(pts)
    tri = rng.integers(0, n, (iterations, 3))
    p0, p1, p2 = pts[tri[:, 0]], pts[tri[:, 1]], pts[tri[:, 2]]
    u, v = p1 - p0, p2 - p0
    # np.cross's own products and differences, without its broadcasting set-up
    normal = np.stack(
        [
            u[:, 1] * v[:, 2] - u[:, 2] * v[:, 1],
            u[:, 2] * v[:, 0] - u[:, 0] * v[:, 2],
            u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0],
        ],
        axis=1,
    )
    norm = np.linalg.norm(normal, axis=1)
    ok = norm > 1e-9
    normal = normal[ok] / norm[ok, None]
    d = -np.sum(normal * p0[ok], axis=1)
    if normal.size == 0:
        return np.array([0.0, 0.0, 1.0, -float(np.median(pts[:, 2]))])
    counts = plane_counts(np.ascontiguousarray(pts.T), normal, d, threshold)
    best = int(np.argmax(counts))
    inl = pts[np.abs(pts @ normal[best] + d[best]) < threshold]
    centre = inl.mean(axis=0)
    _, _, vt = np.linalg.svd(inl - centre, full_matrices=False)
    nrm = vt[2]
    return np.array([*nrm, -float(nrm @ centre)])


def cluster_jumps(depth: np.ndarray, cfg: GeometricConfig) -> tuple[np.ndarray, np.ndarray]:
    """Depth jumps for object clustering: |dz| > cluster_jump_m + cluster_jump_quad * z² between
    4-neighbours (z the nearer depth). Stricter than the encoder's edge test (no slope term):
    two objects standing side by side differ by centimetres, which a steep surface may also do,
    but a steep rim cut off here rejoins its cluster when the cut pixels are handed back."""
    out = []
    for a, b in ((depth[:, :-1], depth[:, 1:]), (depth[:-1], depth[1:])):
        near = np.minimum(a, b)
        tau = cfg.cluster_jump_m + cfg.cluster_jump_quad * near * near
        out.append((np.abs(a - b) > tau) & (near > 0))
    return out[0], out[1]


def clusters(
    valid: np.ndarray,
    support: np.ndarray,
    jump_x: np.ndarray,
    jump_y: np.ndarray,
    min_px: int,
    fringe: np.ndarray | None = None,
) -> tuple[int, np.ndarray]:
    """Components of the off-support valid pixels, 4-connected unless a depth jump separates them.

    Both pixels of a jump (and the support's fringe, support_mask) are cut, then handed back (up
    to 3 px) to the nearest cluster, which keeps thin rims and an object's base. Components
    smaller than min_px are dropped (label 0). Returns (count incl. 0, labels).
    """
    free = valid & ~support
    cut = np.zeros_like(free)
    cut[:, 1:] |= jump_x
    cut[:, :-1] |= jump_x
    cut[1:] |= jump_y
    cut[:-1] |= jump_y
    if fringe is not None:
        cut |= fringe
    core = free & ~cut
    # one erosion breaks the thin bridges that a support's noisy fringe (just above the plane
    # band) makes between neighbouring objects; the eroded rim is handed back below
    core = cv2.erode(core.view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)
    n, labels, areas = components_with_areas(core, 4)
    small = areas < min_px
    small[0] = False
    labels[small[labels]] = 0
    seeds = labels > 0
    if seeds.any():
        dist, nearest = cv2.distanceTransformWithLabels(
            (~seeds).view(np.uint8), cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL
        )
        seed_labels = labels.ravel()[np.flatnonzero(seeds)]
        fill = free & ~seeds & (dist <= 3)
        labels[fill] = seed_labels[nearest[fill] - 1]
    present = np.bincount(labels.ravel(), minlength=n) > 0
    present[0] = False
    lut = (np.cumsum(present) * present).astype(np.int32)
    return int(present.sum()) + 1, lut[labels]


def with_clusters(
    part: np.ndarray,
    object_lut: np.ndarray,
    region_lut: np.ndarray,
    cluster: np.ndarray,
    n_cluster: int,
    cluster_region: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Re-level the label maps so that every object cluster is one "object".

    part   := old part x cluster (a part straddling an object and its support splits there)
    object := the cluster, for parts in one; else the old object (supports, walls, far things)
    region := the cluster again for clusters (its surroundings are a support, not the object);
              else the old region
    The levels still nest. Args: part (h, w) int32 with LUTs over it (regions.WorkLabels);
    cluster (h, w) int32 from `clusters` (or the objects of objects.split_clusters), already
    extended over sensor holes; cluster_region (n_cluster + 1,) the region of each cluster
    (objects.split_clusters' cluster_of: the objects of one cluster share its region), default
    each cluster its own.
    Returns (part, object_lut, region_lut, is_cluster_object (n_object,) bool).
    """
    n_old_part = len(object_lut)
    key = part.astype(np.int64) * (n_cluster + 1) + cluster
    key[part == 0] = 0
    present = np.bincount(key.ravel(), minlength=1) > 0
    present[0] = False
    renumber = (np.cumsum(present) * present).astype(np.int32)
    new_part = renumber[key]
    keys = np.flatnonzero(present)
    old_part, cl = keys // (n_cluster + 1), keys % (n_cluster + 1)
    old_obj = object_lut[np.minimum(old_part, n_old_part - 1)]
    obj = np.where(cl > 0, cl, n_cluster + old_obj).astype(np.int64)
    # compact object ids
    used = np.zeros(n_cluster + int(object_lut.max()) + 2, bool)
    used[obj] = True
    used[0] = False
    obj_renumber = (np.cumsum(used) * used).astype(np.int32)
    new_object_lut = np.concatenate([[0], obj_renumber[obj]]).astype(np.int32)
    n_obj = int(used.sum()) + 1
    obj_ids = np.flatnonzero(used)
    is_cluster = np.zeros(n_obj, bool)
    is_cluster[obj_renumber[obj_ids]] = obj_ids <= n_cluster
    region = np.zeros(n_obj, np.int64)
    for_old = obj_ids > n_cluster
    own = obj_ids[~for_old]
    region[obj_renumber[own]] = own if cluster_region is None else cluster_region[own]
    region[obj_renumber[obj_ids[for_old]]] = n_cluster + region_lut[obj_ids[for_old] - n_cluster]
    region[0] = 0
    reg_used = np.zeros(int(region.max()) + 1, bool)
    reg_used[region] = True
    reg_used[0] = False
    new_region_lut = ((np.cumsum(reg_used) * reg_used).astype(np.int32))[region]
    return new_part, new_object_lut, new_region_lut.astype(np.int32), is_cluster


def fill_cluster_holes(
    labels: np.ndarray,
    valid: np.ndarray,
    support: np.ndarray,
    near_px: float,
    enclosed_frac: float = 0.9,
    neck_px: int = 3,
) -> np.ndarray:
    """Give sensor holes to clusters: pixels within near_px of a cluster (misregistration, a
    silhouette's missing rim) and whole holes whose rim is at least enclosed_frac one cluster
    (a dark or shiny patch on the object). Support pixels enclosed by one cluster join it too
    (the inside of a bowl is at table height). Shadows next to an object on its support touch
    the support, so they stay out. The test is made twice: on the holes as they are, and on the
    holes eroded by neck_px, so that a bowl's inside that touches the table through a thin neck
    (its front lip sinks into the plane band) still counts as enclosed; the eroded margin goes
    back to the cluster that took the hole. Returns new labels."""
    near_only = ~valid
    valid = valid & ~support
    holes = ~valid
    if not holes.any() or not (labels > 0).any():
        return labels
    out = labels.copy()
    n_lab = int(labels.max()) + 1
    for erode in sorted({0, neck_px}):
        core = holes
        if erode:
            core = cv2.erode(holes.view(np.uint8), np.ones((2 * erode + 1,) * 2, np.uint8)).view(bool)
        reach = np.ones((2 * erode + 3,) * 2, np.uint8)
        n_h, hole_id = cv2.connectedComponents(core.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
        ring = cv2.dilate(core.view(np.uint8), reach).view(bool) & valid
        # the hole each rim pixel borders (max over its neighbourhood of hole ids)
        near_hole = cv2.dilate(hole_id.astype(np.float32), reach).astype(np.int64)
        hid, lab = near_hole[ring], labels[ring].astype(np.int64)
        counts = np.bincount(hid * n_lab + lab, minlength=n_h * n_lab).reshape(n_h, n_lab)
        total = counts.sum(1)
        best = counts[:, 1:].argmax(1) + 1
        share = counts[np.arange(n_h), best] / np.maximum(total, 1)
        # enclosed by clusters, most of the rim one of them (a bowl whose front wall is a
        # cluster of its own: the inside goes to the bowl)
        enclosed = counts[:, 1:].sum(1) / np.maximum(total, 1) >= enclosed_frac
        fill = np.where(enclosed & (share >= 0.6) & (total > 0), best, 0)
        fill[0] = 0
        taken = core & (fill[hole_id] > 0) & (out == 0)
        out[taken] = fill[hole_id[taken]]
        if erode and taken.any():  # the eroded margin around a taken hole goes with it
            dist, nearest = cv2.distanceTransformWithLabels(
                (~taken).view(np.uint8), cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL
            )
            margin = holes & ~core & (out == 0) & (dist <= erode + 1)
            out[margin] = out.ravel()[np.flatnonzero(taken)][nearest[margin] - 1]
    out = out.astype(np.int32)
    seeds = out > 0
    dist, nearest = cv2.distanceTransformWithLabels(
        (~seeds).view(np.uint8), cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL
    )
    seed_labels = out.ravel()[np.flatnonzero(seeds)]
    close = near_only & ~seeds & (dist <= near_px)
    out[close] = seed_labels[nearest[close] - 1]
    return out

"""Objects and regions from a patch adjacency graph, LCCP-style.

Pixel creases are noisy: at 3 m a Kinect-like sensor draws concave specks on flat walls and
breaks small objects into fragments. Deciding object boundaries from patches is much steadier
(Stein et al., "Object partitioning using local convexity", CVPR 2014): the part map is cut
into patches by a grid of cfg.cell_px cells (so every patch is local, and its mean normal and
centroid describe one surface piece), and two adjacent patches are joined
  * at the region level unless most of their shared boundary is a depth jump;
  * at the object level if also their connection is convex, (n_i - n_j) . (c_i - c_j) > 0 with
    mean normals n and centroids c, or only slightly concave (normals within
    cfg.merge_concave_deg), which is what noise looks like.
Objects and regions are the connected components of the joined patches. A patch with too few
core pixels for a trustworthy normal joins only its longest-shared-boundary neighbour, so it
can never bridge two objects.
"""

from __future__ import annotations

import numpy as np

from models.geometric.config import GeometricConfig
from models.geometric.features import GeometricFeatures
from models.geometric.kernels import boundary_pairs, patch_sums


def _patches(pieces: np.ndarray, n_pieces: int, cell_px: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Pieces cut by a grid of cell_px cells.

    Returns (count incl. 0, (h, w) int32 patch ids (0 where pieces is 0), (count,) piece of
    every patch).
    """
    h, w = pieces.shape
    ncx = (w + cell_px - 1) // cell_px
    cell = (np.arange(h, dtype=np.int64)[:, None] // cell_px) * ncx + (np.arange(w) // cell_px)[None, :]
    n_cells = int(cell.max()) + 1
    key = pieces.astype(np.int64) * n_cells + cell
    key[pieces == 0] = 0
    present = np.bincount(key.ravel(), minlength=n_pieces * n_cells) > 0
    present[0] = False
    lut = (np.cumsum(present) * present).astype(np.int32)
    piece_of_patch = np.concatenate([[0], np.flatnonzero(present) // n_cells]).astype(np.int32)
    return int(present.sum()) + 1, lut[key], piece_of_patch


def _widen(jump: np.ndarray, axis: int) -> np.ndarray:
    """A pair jumps if it or a pair next to it along the same line jumps.

    Part boundaries can sit one pixel off the jump itself (band pixels were handed to a side),
    so the test looks one pair further on each side, but only across the boundary, not along it.
    """
    out = jump.copy()
    if axis == 1:
        out[:, 1:] |= jump[:, :-1]
        out[:, :-1] |= jump[:, 1:]
    else:
        out[1:] |= jump[:-1]
        out[:-1] |= jump[1:]
    return out


def _adjacent_pairs(
    patch: np.ndarray, n: int, jump_x: np.ndarray, jump_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Patch pairs sharing a 4-neighbour boundary: (i, j, boundary pixel pairs, of them jumps)."""
    h, w = patch.shape
    flat = patch.ravel()
    keys, jumps = [], []
    first_x, first_y = boundary_pairs(np.ascontiguousarray(patch, np.int32))
    # the jump arrays are (h, w-1) and (h-1, w): pair (v, u) is at v * (w-1) + u and v * w + u
    for first, jump, step, at in (
        (first_x, _widen(jump_x, 1), 1, first_x - first_x // w),
        (first_y, _widen(jump_y, 0), w, first_y),
    ):
        la, lb = flat[first].astype(np.int64), flat[first + step].astype(np.int64)
        keys.append(np.minimum(la, lb) * n + np.maximum(la, lb))
        jumps.append(jump.ravel()[at])
    # one sort: the jump bit rides in the key's lowest bit
    key = np.concatenate(keys) * 2 + np.concatenate(jumps)
    if key.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, empty
    uniq, count = np.unique(key, return_counts=True)
    pair = uniq // 2
    start = np.flatnonzero(np.concatenate([[True], pair[1:] != pair[:-1]]))
    total = np.add.reduceat(count, start)
    n_jump = np.add.reduceat(count * (uniq % 2), start)
    uniq, count = pair[start], total
    return uniq // n, uniq % n, count, n_jump


def connected(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """(n,) int32 component label of every node of the graph with edges (i, j), compacted to
    1..k for nodes 1..n-1 (node 0, "nothing", stays 0). Hook-and-compress union-find in NumPy."""
    lab = np.arange(n, dtype=np.int64)
    i = np.asarray(i, np.int64)
    j = np.asarray(j, np.int64)
    while i.size:
        li, lj = lab[i], lab[j]
        diff = li != lj
        if not diff.any():
            break
        lo, hi = np.minimum(li[diff], lj[diff]), np.maximum(li[diff], lj[diff])
        np.minimum.at(lab, hi, lo)
        while True:
            nxt = lab[lab]
            if np.array_equal(nxt, lab):
                break
            lab = nxt
    present = np.zeros(n, bool)
    present[lab] = True
    present[0] = False
    renumber = (np.cumsum(present) * present).astype(np.int32)
    return renumber[lab]


def objects_and_regions(
    pieces: np.ndarray, n_pieces: int, seeds: np.ndarray, f: GeometricFeatures, cfg: GeometricConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Object map and region LUT from a base partition.

    Args:
        pieces: (h, w) int32 labels (0 = none) of surface pieces bounded by depth edges, concave
            creases and strong colour edges, every valid pixel labelled.
        n_pieces: number of labels incl. 0.
        seeds: (h, w) bool core pixels of the pieces. Only they describe a patch: pixels handed
            over from edge bands mix both sides of a crease, and a sliver made of them would
            otherwise bridge two objects.
        f: features with rgb, points, normals, jump_x, jump_y.
    Returns (object map (h, w) int32, region LUT over object labels (n_obj,) int32).
    """
    n, patch, piece_of = _patches(pieces, n_pieces, cfg.cell_px)
    # sums over the core pixels with a normal: only they describe a patch (kernels.patch_sums)
    count, normal, centre, sq, colour = patch_sums(patch, seeds, f.points, f.normals, f.rgb, n)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    centre /= np.maximum(count, 1.0)[:, None]
    # RMS distance of a patch's points from its centroid: its size in metres (larger for a
    # patch of floor seen at a grazing angle).
    radius = np.sqrt(np.maximum(sq / np.maximum(count, 1.0) - np.sum(centre * centre, axis=1), 0.0))
    # chromaticity of the summed colour (every other pixel in both directions: plenty for a
    # mean): shading and brightness texture cancel out
    chroma = colour / np.maximum(colour.sum(axis=1, keepdims=True), 1.0)

    i, j, boundary, n_jump = _adjacent_pairs(patch, n, f.jump_x, f.jump_y)
    touching = (n_jump < 0.5 * boundary) & (boundary >= 2)
    sure = (count[i] >= cfg.min_patch_px) & (count[j] >= cfg.min_patch_px)
    cos_ij = np.sum(normal[i] * normal[j], axis=1)
    offset = centre[i] - centre[j]
    bent = cos_ij < np.cos(np.deg2rad(cfg.merge_concave_deg))
    # Adjacent in the image is not adjacent in space: at an occlusion whose depth step the
    # jump test missed, the background patch lies far behind (and looks "convex" to LCCP).
    z = np.maximum(centre[i, 2], centre[j, 2])
    tau = cfg.jump_abs_m + z * (cfg.jump_rel + cfg.jump_quad * z)
    near = np.linalg.norm(offset, axis=1) < 1.5 * (radius[i] + radius[j]) + tau
    convex = bent & near & (np.sum((normal[i] - normal[j]) * offset, axis=1) > 0)
    # Nearly parallel normals join only when the patches are also nearly coplanar (a box face and
    # the wall behind it are parallel too: LCCP's "sanity criterion" covers the same trap) and of
    # the same chromaticity: geometry alone cannot tell a low object from the floor behind it.
    step = np.abs(np.sum(normal[i] * offset, axis=1)) + np.abs(np.sum(normal[j] * offset, axis=1))
    coplanar = near & (step < tau)
    same_colour = np.abs(chroma[i] - chroma[j]).sum(axis=1) < cfg.merge_chroma
    gentle = ~bent & coplanar & same_colour
    # Patches the grid cut from one piece (a connected surface with no concave crease, depth or
    # colour edge between them) stay together unless clearly concave: the grid is there to stop
    # leaks through gaps in a crease line, which are sharp concave bends, not noise.
    same_piece = piece_of[i] == piece_of[j]
    kept = same_piece & (cos_ij > np.cos(np.deg2rad(cfg.piece_concave_deg)))
    joined = touching & sure & (convex | gentle | kept)

    # A patch too small for a trustworthy normal (a sliver the grid cut off a piece, or a tiny
    # piece) joins one touching neighbour: preferably a patch of its own piece, then one of the
    # same chromaticity, then the one sharing the longest boundary.
    weak = touching & ~sure
    if weak.any():
        rank = boundary + 1_000 * same_colour + 100_000 * same_piece
        wi, wj, wb = i[weak], j[weak], rank[weak]
        small_is_i = count[wi] < cfg.min_patch_px
        small = np.where(small_is_i, wi, wj)
        other = np.where(small_is_i, wj, wi)
        order = np.lexsort((-wb, small))
        first = np.ones(order.size, bool)
        first[1:] = small[order][1:] != small[order][:-1]
        pick = order[first]
        ji = np.concatenate([i[joined], small[pick]])
        jj = np.concatenate([j[joined], other[pick]])
    else:
        ji, jj = i[joined], j[joined]

    obj_of_patch = connected(n, ji, jj)
    obj = obj_of_patch[patch]
    n_obj = int(obj_of_patch.max()) + 1
    # regions: objects joined wherever patches touch without a depth jump
    oi, oj = obj_of_patch[i[touching]], obj_of_patch[j[touching]]
    region_lut = connected(n_obj, oi, oj)
    return obj, region_lut

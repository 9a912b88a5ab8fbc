"""Clean a decoded mask where SAM-family decoders are known to err, using depth where it is valid.

Why: a SAM mask is decoded at 256x256 and upsampled, so it comes back with small disconnected
blobs (texture or a similar object nearby), small holes (highlights, print on the object) and
soft boundaries a few pixels off. An RGB-D frame says where the object's surface actually ends:
at a depth discontinuity. Three operations fix the three errors; `clean_mask` runs them in order:

1. `remove_islands`: keep the connected component under the prompt point (the user pointed
   at it), plus other components that are a sizeable fraction of the mask (a genuinely split
   object: a mug behind a cable). With no prompt point, the largest component leads.
2. `fill_holes`: fill holes (background components enclosed by the mask) smaller than a fraction
   of the mask, except when depth shows something else through or in front of the hole (a mug
   handle, the hole of a torus, a pen lying across): only holes whose depth agrees with the
   surrounding mask, or that have no depth, are filled.
3. `snap_to_depth`: move the border, by at most `snap_radius_px`, to the depth discontinuity.
   Depth edges are pixel pairs whose depths jump by more than `depth_rel_tol` (one pixel apart,
   slanted surfaces and sensor noise change by well under that). Mask pieces that depth edges
   cut off from the mask's core (the mask eroded by the radius) are bleed beyond the silhouette
   and are removed, as are edge pixels whose depth matches no kept neighbour (flying pixels).
   Then the mask grows, one pixel ring per step, into outside pixels whose depth matches a
   neighbour already in the mask, only near a depth edge: growth never crosses a jump, and
   stops where no silhouette is in sight. Pixels without valid depth are never added and never
   removed by this step.

Limits: depth cannot separate an object from the surface it stands on at the contact line
(same depth), so the mask may grow up to `snap_radius_px` onto a supporting table there, and it
says nothing where the sensor returned no depth (grazing faces, shadows at silhouettes).

Cost: every operation works on the mask's bounding box (plus a margin of a few pixels) with
OpenCV (connected components, morphology) and NumPy; growth touches only the ring of candidate
pixels around the border, in one compiled loop (`kernels.grow_region`, numba). Nothing scans the
frame except one bounding-box search, and there are no per-pixel Python loops (Python loops run
over holes only).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engine.masks.kernels import grow_region


@dataclass(frozen=True)
class MaskCleanConfig:
    """Knobs of the mask cleaning; defaults suit 640x480 masks of tabletop objects at 0.5-5 m.

    Attributes:
        island_min_fraction: a component not under the prompt point is kept only when its area is
            at least this fraction of the whole mask. SAM's stray blobs are a few to a few hundred
            pixels (up to ~10% of a small object's mask); a split object's parts are tens of
            percent. 0.05 left a third of the bench's stray blobs on small objects; 0.1 removed
            them all and no true part (bench/mask_cleaning.py, tuning scenes 0-5).
        anchor_radius_px: when the prompt point is not on the mask, the component nearest to it
            within this radius counts as "under the prompt" (SAM masks can miss the click by a few
            pixels at thin parts).
        hole_max_fraction: holes up to this fraction of the mask area are filled ...
        hole_max_px: ... or up to this many pixels, whichever is larger (SAM's automatic mask
            generator uses 100 px as its default for small regions in its examples).
        depth_rel_tol: two adjacent pixels are on two sides of a depth edge when their depths
            differ by more than max(depth_rel_tol * the nearer depth, depth_abs_tol_m); a pixel's
            depth matches a neighbour's below that. One pixel apart, Kinect v1 noise (1.4e-3 z^2,
            Khoshelham & Elberink 2012: 0.3% at 2 m, 0.6% at 4 m) and a floor seen at a grazing
            angle (~0.3% per pixel) stay well below 2%, while an object's silhouette against what is
            behind it jumps by more (4 cm at 2 m). On the bench's tuning scenes 1.5-3% gave the
            same results within 0.01 boundary F; 1% found false edges (0.03 lower).
        depth_abs_tol_m: floor of that tolerance in metres (millimetre quantisation, near range).
        snap_radius_px: how far from the original border depth snapping may move it. A SAM
            boundary is off by 1-4 px at 640x480 (the 4x upsampling of its 256x256 logits). Growth
            onto a supporting surface at the contact line (see Limits) grows with the radius: on
            the bench's tuning scenes 3 px fixed no more boundaries than 2 px but cost true masks
            5 points of boundary F (2 px: under 1 point).
    """

    island_min_fraction: float = 0.1
    anchor_radius_px: int = 8
    hole_max_fraction: float = 0.02
    hole_max_px: int = 100
    depth_rel_tol: float = 0.02
    depth_abs_tol_m: float = 0.01
    snap_radius_px: int = 2

    def __post_init__(self) -> None:
        fractions = {
            "island_min_fraction": self.island_min_fraction,
            "hole_max_fraction": self.hole_max_fraction,
            "depth_rel_tol": self.depth_rel_tol,
        }
        for name, value in fractions.items():
            if not (np.isfinite(value) and 0.0 <= value < 1.0):
                raise ValueError(f"MaskCleanConfig.{name} must be in [0, 1), got {value}")
        counts = {
            "anchor_radius_px": self.anchor_radius_px,
            "hole_max_px": self.hole_max_px,
            "snap_radius_px": self.snap_radius_px,
        }
        for name, value in counts.items():
            if int(value) != value or value < 0:
                raise ValueError(f"MaskCleanConfig.{name} must be a non-negative integer, got {value}")
        if not (np.isfinite(self.depth_abs_tol_m) and self.depth_abs_tol_m >= 0):
            raise ValueError(
                f"MaskCleanConfig.depth_abs_tol_m must be >= 0 metres, got {self.depth_abs_tol_m}"
            )


def clean_mask(
    mask: np.ndarray,
    depth_m: np.ndarray | None = None,
    anchor_xy: tuple[float, float] | None = None,
    config: MaskCleanConfig = MaskCleanConfig(),
) -> np.ndarray:
    """Remove islands, fill small holes, and snap the border to depth edges (when depth is given).

    Args:
        mask: (H, W) bool (any dtype is read as != 0), the decoder's chosen mask.
        depth_m: (H, W) float32 (or float64) depth in metres registered to the mask's image,
            0/NaN/inf where there is no measurement (``RGBDFrame.depth_m``), or None for
            colour-only frames.
        anchor_xy: the prompt's pixel (x, y) (click or gaze fixation), or None.
        config: see MaskCleanConfig.

    Returns:
        (H, W) bool, a new array (the input is not modified).
    """
    m = _as_mask(mask)
    depth = _check_depth(depth_m, m.shape)
    margin = config.snap_radius_px + 1 if depth is not None else 0
    box = _bbox(m, margin)
    if box is None:
        return np.zeros_like(m)
    crop = _crop(m, box)
    anchor = _local(anchor_xy, box)
    crop = _remove_islands(crop, anchor, config)
    d = _crop_depth(depth, box) if depth is not None else None
    crop = _fill_holes(crop, d, config)
    if d is not None:
        snapped = _snap_to_depth(crop, d, config)
        if (crop > snapped).any():  # removal can leave slivers (growth cannot)
            snapped = _remove_islands(snapped, anchor, config)
        crop = snapped
    return _paste(crop, box, m.shape)


def remove_islands(
    mask: np.ndarray,
    anchor_xy: tuple[float, float] | None = None,
    config: MaskCleanConfig = MaskCleanConfig(),
) -> np.ndarray:
    """Keep the component under the anchor and components >= island_min_fraction of the mask.

    With no anchor (or none near it), the largest component is kept in its place. Components are
    8-connected. Returns a new (H, W) bool array.
    """
    m = _as_mask(mask)
    box = _bbox(m, 0)
    if box is None:
        return np.zeros_like(m)
    return _paste(_remove_islands(_crop(m, box), _local(anchor_xy, box), config), box, m.shape)


def fill_holes(
    mask: np.ndarray, depth_m: np.ndarray | None = None, config: MaskCleanConfig = MaskCleanConfig()
) -> np.ndarray:
    """Fill holes up to max(hole_max_fraction * mask area, hole_max_px) pixels.

    A hole is a 4-connected background component that the mask encloses (a region open to the
    image border is not a hole). With depth, a hole is filled only when its median valid depth
    agrees with the median depth of the mask around it (see MaskCleanConfig.depth_rel_tol) or
    when it has no valid depth: a hole through which the background (or an occluder) is seen
    stays open. Returns a new (H, W) bool array.
    """
    m = _as_mask(mask)
    depth = _check_depth(depth_m, m.shape)
    box = _bbox(m, 0)
    if box is None:
        return np.zeros_like(m)
    d = _crop_depth(depth, box) if depth is not None else None
    return _paste(_fill_holes(_crop(m, box), d, config), box, m.shape)


def snap_to_depth(
    mask: np.ndarray, depth_m: np.ndarray, config: MaskCleanConfig = MaskCleanConfig()
) -> np.ndarray:
    """Move the border, by at most snap_radius_px, to where the object's depth ends.

    Removes border-band mask pixels whose valid depth disagrees with the object's local depth,
    and adds outside pixels whose valid depth agrees with it, grown from the mask through
    agreeing pixels only (never across a depth edge). Returns a new (H, W) bool array.
    """
    m = _as_mask(mask)
    depth = _check_depth(depth_m, m.shape)
    if depth is None:
        raise ValueError(
            "snap_to_depth needs a depth map; call clean_mask(mask, None, ...) for colour-only frames"
        )
    box = _bbox(m, config.snap_radius_px + 1)
    if box is None:
        return np.zeros_like(m)
    return _paste(_snap_to_depth(_crop(m, box), _crop_depth(depth, box), config), box, m.shape)


# -- the operations, on a crop: (h, w) uint8 0/1 mask and (h, w) float32 depth, 0 = invalid ---------


def _remove_islands(crop: np.ndarray, anchor: tuple[int, int] | None, config: MaskCleanConfig) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
    if n <= 2:
        return crop
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = areas >= config.island_min_fraction * areas.sum()
    label = _label_near(labels, anchor, config.anchor_radius_px)
    keep[label - 1 if label > 0 else int(np.argmax(areas))] = True
    lut = np.concatenate(([0], keep)).astype(np.uint8)
    return lut[labels]


def _fill_holes(crop: np.ndarray, depth: np.ndarray | None, config: MaskCleanConfig) -> np.ndarray:
    # Pad by one background pixel so that everything outside the mask is one component.
    inverse = cv2.copyMakeBorder(1 - crop, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=1)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inverse, connectivity=4)
    if n <= 2:
        return crop
    max_hole = max(config.hole_max_fraction * int(np.count_nonzero(crop)), config.hole_max_px)
    outside = labels[0, 0]
    candidates = [k for k in range(1, n) if k != outside and stats[k, cv2.CC_STAT_AREA] <= max_hole]
    if depth is not None and candidates:
        padded = cv2.copyMakeBorder(depth, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        candidates = [k for k in candidates if _hole_depth_agrees(labels, stats, k, inverse, padded, config)]
    if not candidates:
        return crop
    lut = np.zeros(n, np.uint8)
    lut[candidates] = 1
    return crop | lut[labels[1:-1, 1:-1]]


def _snap_to_depth(crop: np.ndarray, depth: np.ndarray, config: MaskCleanConfig) -> np.ndarray:
    r = config.snap_radius_px
    edge = _depth_edges(depth, config)
    if r == 0 or not edge.any():
        return crop
    mask = crop > 0
    core = cv2.erode(crop, _disk(r)) > 0  # default border: the image edge is not the object's edge
    if not core.any():
        return crop  # thinner than the band everywhere: nothing trusted to snap towards

    # Remove: pieces of the mask with valid depth, cut off from the core by depth edges and lying
    # wholly within the band (bleed beyond the silhouette), plus edge pixels whose depth is not the
    # object's. Pixels without depth do not connect pieces (a depth hole on the silhouette would
    # join the bleed to the object) and are kept: nothing says they are not the object.
    valid = depth > 0
    pieces = (mask & valid & ~edge).view(np.uint8)
    n, labels = cv2.connectedComponents(pieces, connectivity=8)
    keep_piece = np.zeros(n, bool)  # a piece with no pixel in the core lies wholly in the band
    keep_piece[labels[core]] = True
    keep_piece[0] = False
    region = (keep_piece[labels] | (mask & ~valid)).view(np.uint8)
    rel_tol, abs_tol = np.float32(config.depth_rel_tol), np.float32(config.depth_abs_tol_m)
    grow_region(region, depth, np.flatnonzero(mask & edge), 1, rel_tol, abs_tol)

    # Add: grow r steps (8-connected) into outside pixels whose depth matches their grown
    # neighbours', within r of the border and near a depth edge. Matching neighbours one pixel
    # away never crosses a jump; "near an edge" keeps the mask from spreading over a surface it
    # merely touches (the floor it stands on) where no silhouette is in sight.
    reach = cv2.dilate(crop, _disk(r)) > 0
    near_edge = cv2.dilate(edge.view(np.uint8), _disk(r + 1)) > 0
    grow_region(region, depth, np.flatnonzero(reach & ~mask & valid & near_edge), r, rel_tol, abs_tol)
    return region


def _depth_edges(depth: np.ndarray, config: MaskCleanConfig) -> np.ndarray:
    """(h, w) bool: both pixels of every 4-neighbour pair whose valid depths jump.

    A jump is a difference above max(depth_rel_tol * nearer depth, depth_abs_tol_m) between
    adjacent pixels: one pixel apart, a slanted surface (a table seen at a grazing angle) and
    sensor noise change depth by well under 1%, while a silhouette jumps by the object's distance
    to what is behind it. Marking both sides leaves no 8-connected path across the jump.
    """
    valid = depth > 0
    edge = np.zeros(depth.shape, bool)
    for axis in (0, 1):
        a = depth[:-1, :] if axis == 0 else depth[:, :-1]
        b = depth[1:, :] if axis == 0 else depth[:, 1:]
        ok = (valid[:-1, :] & valid[1:, :]) if axis == 0 else (valid[:, :-1] & valid[:, 1:])
        tol = np.maximum(config.depth_rel_tol * np.minimum(a, b), config.depth_abs_tol_m)
        jump = ok & (np.abs(a - b) > tol)
        if axis == 0:
            edge[:-1, :] |= jump
            edge[1:, :] |= jump
        else:
            edge[:, :-1] |= jump
            edge[:, 1:] |= jump
    return edge


# -- helpers -------------------------------------------------------------------------------------


def _as_mask(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2D (H, W), got shape {m.shape}")
    return m if m.dtype == bool else m != 0


def _check_depth(depth_m: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """Shape and dtype checks only (O(1)); invalid values are cleaned per crop."""
    if depth_m is None:
        return None
    d = np.asarray(depth_m)
    if d.shape != shape:
        raise ValueError(
            f"depth_m is {d.shape[1::-1]} but the mask is {shape[1::-1]} (W, H): clean the mask on the frame "
            "whose depth is given, or resize the mask to the depth image (nearest-neighbour)"
        )
    if not np.issubdtype(d.dtype, np.floating):
        raise ValueError(
            f"depth_m must be float metres, got {d.dtype}: use RGBDFrame.depth_m for raw sensor depth"
        )
    return d


def _bbox(m: np.ndarray, margin: int) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of the mask's pixels grown by margin and clipped to the image, or None."""
    x, y, w, h = cv2.boundingRect(np.ascontiguousarray(m).view(np.uint8))
    if w == 0 or h == 0:
        return None
    height, width = m.shape
    return max(0, y - margin), min(height, y + h + margin), max(0, x - margin), min(width, x + w + margin)


def _crop(m: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """(h, w) uint8 0/1 contiguous copy of the box."""
    y0, y1, x0, x1 = box
    return np.ascontiguousarray(m[y0:y1, x0:x1]).view(np.uint8).copy()


def _crop_depth(depth: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """(h, w) float32 metres of the box, 0 wherever the measurement is invalid."""
    y0, y1, x0, x1 = box
    d = np.asarray(depth[y0:y1, x0:x1], dtype=np.float32)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(d) & (d > 0), d, np.float32(0)).astype(np.float32, copy=False)


def _paste(crop: np.ndarray, box: tuple[int, int, int, int], shape: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(shape, bool)
    y0, y1, x0, x1 = box
    out[y0:y1, x0:x1] = crop > 0
    return out


def _local(anchor_xy: tuple[float, float] | None, box: tuple[int, int, int, int]) -> tuple[int, int] | None:
    """Anchor pixel in crop coordinates (x, y), possibly outside the crop; None stays None."""
    if anchor_xy is None:
        return None
    x, y = float(anchor_xy[0]), float(anchor_xy[1])
    if not (np.isfinite(x) and np.isfinite(y)):
        raise ValueError(f"anchor_xy must be finite pixel coordinates, got {anchor_xy}")
    return int(round(x)) - box[2], int(round(y)) - box[0]


def _label_near(labels: np.ndarray, anchor: tuple[int, int] | None, radius: int) -> int:
    """Component label under the anchor (crop x, y), else the nearest within radius, else 0."""
    if anchor is None:
        return 0
    ax, ay = anchor
    h, w = labels.shape
    if 0 <= ay < h and 0 <= ax < w and labels[ay, ax] > 0:
        return int(labels[ay, ax])
    wy0, wy1 = max(0, ay - radius), min(h, ay + radius + 1)
    wx0, wx1 = max(0, ax - radius), min(w, ax + radius + 1)
    if wy0 >= wy1 or wx0 >= wx1:
        return 0
    window = labels[wy0:wy1, wx0:wx1]
    ys, xs = np.nonzero(window)
    if len(ys) == 0:
        return 0
    d2 = (ys + wy0 - ay) ** 2 + (xs + wx0 - ax) ** 2
    best = int(np.argmin(d2))
    return int(window[ys[best], xs[best]]) if d2[best] <= radius * radius else 0


def _hole_depth_agrees(
    labels: np.ndarray,
    stats: np.ndarray,
    k: int,
    inverse: np.ndarray,
    depth: np.ndarray,
    config: MaskCleanConfig,
) -> bool:
    """Whether hole k (in padded crop coordinates) has the depth of the mask around it, or none."""
    x, y, w, h = stats[k, :4]
    pad = 3
    ys = slice(max(0, y - pad), min(labels.shape[0], y + h + pad))
    xs = slice(max(0, x - pad), min(labels.shape[1], x + w + pad))
    hole = labels[ys, xs] == k
    d = depth[ys, xs]
    inside = d[hole & (d > 0)]
    if inside.size == 0:
        return True  # no depth in the hole: nothing says it is not the object
    ring = cv2.dilate(hole.view(np.uint8), _disk(pad)).astype(bool) & (inverse[ys, xs] == 0) & (d > 0)
    around = d[ring]
    if around.size == 0:
        return True
    ref = float(np.median(around))
    return abs(float(np.median(inside)) - ref) <= max(config.depth_rel_tol * ref, config.depth_abs_tol_m)


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))

"""Mask cleaning: each operation on constructed masks, and the whole on a ray-cast scene."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.masks import (
    MaskCleanConfig,
    boundary_f_score,
    clean_mask,
    fill_holes,
    mask_iou,
    remove_islands,
    snap_to_depth,
)

H, W = 120, 160


def _rect(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _dilate(m: np.ndarray, r: int) -> np.ndarray:
    return cv2.dilate(m.view(np.uint8), _disk(r)) > 0


def _erode(m: np.ndarray, r: int) -> np.ndarray:
    return cv2.erode(m.view(np.uint8), _disk(r)) > 0


def _block_depth() -> tuple[np.ndarray, np.ndarray]:
    """A block 1.4 m away in front of a wall at 2.0 m, with a gentle slope on both: (mask, depth)."""
    block = _rect(40, 30, 100, 90)
    xx = np.arange(W, dtype=np.float32)[None, :].repeat(H, 0)
    depth = np.where(block, 1.4, 2.0).astype(np.float32) + 0.0005 * xx
    return block, depth


# -- islands -------------------------------------------------------------------------------------


def test_remove_islands_keeps_the_prompted_component_and_large_ones() -> None:
    main = _rect(10, 10, 70, 70)  # 3600 px
    part = _rect(100, 10, 130, 40)  # 900 px, 19% of the mask: a split object's other part
    blob = _rect(100, 80, 105, 85)  # 25 px stray blob
    mask = main | part | blob

    out = remove_islands(mask, anchor_xy=(30, 30))
    assert np.array_equal(out, main | part)
    # The prompt is on the blob: it is what the user pointed at, so it stays.
    out = remove_islands(mask, anchor_xy=(102, 82))
    assert np.array_equal(out, mask)
    # Prompt 3 px off the blob (within anchor_radius_px) still selects it; 20 px off does not.
    assert remove_islands(mask, anchor_xy=(107.5, 82))[82, 102]
    assert not remove_islands(mask, anchor_xy=(125, 82))[82, 102]
    # A higher fraction drops the other part too, unless it is the prompted one.
    strict = MaskCleanConfig(island_min_fraction=0.5)
    assert np.array_equal(remove_islands(mask, (30, 30), strict), main)
    assert np.array_equal(remove_islands(mask, (110, 20), strict), main | part)
    # No prompt: the largest component leads.
    assert np.array_equal(remove_islands(part | blob, None), part)


def test_remove_islands_leaves_a_connected_mask_and_empty_masks_alone() -> None:
    mask = _rect(10, 10, 70, 70)
    out = remove_islands(mask, (30, 30))
    assert np.array_equal(out, mask) and out is not mask
    assert not remove_islands(np.zeros((H, W), bool), (5, 5)).any()


# -- holes ---------------------------------------------------------------------------------------


def test_fill_holes_fills_small_enclosed_holes_only() -> None:
    mask = _rect(10, 10, 110, 110 - 10)  # 100 x 90 = 9000 px: holes up to 180 px are small
    small = _rect(30, 30, 36, 36)  # 36 px
    large = _rect(60, 40, 80, 60)  # 400 px
    notch = _rect(100, 50, 110, 55)  # open to the outside: not a hole
    degraded = mask & ~small & ~large & ~notch
    out = fill_holes(degraded)
    assert out[small].all()
    assert not out[large].any()
    assert not out[notch].any()
    assert np.array_equal(out & ~small, degraded)
    # A region enclosed by the mask and the image border is not a hole either.
    edge = _rect(0, 40, 30, 80) & ~_rect(0, 50, 10, 60)
    assert np.array_equal(fill_holes(edge), edge)


def test_fill_holes_keeps_a_hole_that_shows_the_background() -> None:
    block, depth = _block_depth()
    window = _rect(60, 50, 66, 56)  # see-through: depth of the wall behind
    stain = _rect(80, 50, 86, 56)  # a highlight SAM missed: depth of the block
    unknown = _rect(60, 70, 66, 76)  # no depth there
    depth = depth.copy()
    depth[window] = 2.0
    depth[unknown] = 0.0
    degraded = block & ~window & ~stain & ~unknown
    out = fill_holes(degraded, depth)
    assert not out[window].any()
    assert out[stain].all() and out[unknown].all()
    # Without depth, all three are filled.
    assert fill_holes(degraded)[window].all()
    # NaN and inf mean "no measurement" too.
    depth[unknown] = np.nan
    assert fill_holes(degraded, depth)[unknown].all()


# -- depth snapping ------------------------------------------------------------------------------


def test_snap_to_depth_removes_bleed_and_restores_eroded_borders() -> None:
    block, depth = _block_depth()
    for r in (1, 2, 3):
        assert np.array_equal(snap_to_depth(_dilate(block, r), depth), block), f"dilated by {r}"
        # Growth is capped at 3 px (Euclidean) from the given border: all but the block's corners.
        eroded = _erode(block, r)
        assert np.array_equal(snap_to_depth(eroded, depth), block & _dilate(eroded, 3)), f"eroded by {r}"


def test_snap_to_depth_moves_the_border_at_most_snap_radius() -> None:
    block, depth = _block_depth()
    config = MaskCleanConfig(snap_radius_px=3)
    eroded = _erode(block, 6)
    assert np.array_equal(snap_to_depth(eroded, depth, config), block & _dilate(eroded, 3))
    bled = _dilate(block, 6)  # only the outer 3 px of the 6 px bleed are within reach
    assert np.array_equal(snap_to_depth(bled, depth, config), _erode(bled, 3) | block)


def test_snap_to_depth_leaves_pixels_without_depth_and_removes_flying_pixels() -> None:
    block, depth = _block_depth()
    bled = _dilate(block, 2)
    depth = depth.copy()
    depth[:, :70] = 0.0  # no depth on the left half
    out = snap_to_depth(bled, depth)
    assert np.array_equal(out[:, :70], bled[:, :70])
    assert np.array_equal(out[:, 72:], block[:, 72:])
    # Flying pixels (half-way depths on the edge) are not the object.
    _, depth = _block_depth()
    depth = depth.copy()
    ring = _dilate(block, 1) & ~_erode(block, 1)
    depth[ring] = 1.7
    out = snap_to_depth(block, depth)
    assert not (out & ring & _erode(_dilate(block, 1), 1) & ~_erode(block, 1)).any()
    assert np.array_equal(out, _erode(block, 1))


def test_snap_to_depth_needs_depth_and_matching_shapes() -> None:
    block, depth = _block_depth()
    with pytest.raises(ValueError, match="needs a depth map"):
        snap_to_depth(block, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="resize the mask"):
        clean_mask(block, depth[:, :-1])
    with pytest.raises(ValueError, match="RGBDFrame.depth_m"):
        clean_mask(block, (depth * 1000).astype(np.uint16))


# -- all together --------------------------------------------------------------------------------


def test_clean_mask_fixes_islands_holes_and_borders_together() -> None:
    block, depth = _block_depth()
    degraded = _dilate(block, 3)
    degraded &= ~_rect(60, 50, 64, 54)  # a small hole
    degraded |= _rect(120, 10, 124, 14)  # a stray blob on the wall
    out = clean_mask(degraded, depth, anchor_xy=(70, 60))
    assert np.array_equal(out, block)
    assert boundary_f_score(out, block).f == 1.0 and mask_iou(out, block) == 1.0
    # Colour-only: islands and holes only; the bled border stays.
    out = clean_mask(degraded, None, anchor_xy=(70, 60))
    assert np.array_equal(out, _dilate(block, 3))
    assert not clean_mask(np.zeros((H, W), bool), depth, (3, 3)).any()

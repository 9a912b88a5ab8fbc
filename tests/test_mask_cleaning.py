"""Mask cleaning: each operation on constructed masks, and the whole on a ray-cast scene."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bench.mask_cleaning import click_point, degrade_mask
from clients.sources.synthetic import DepthDegradation, make_scene, render_frame
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
    config = MaskCleanConfig(snap_radius_px=3)
    for r in (1, 2, 3):
        assert np.array_equal(snap_to_depth(_dilate(block, r), depth, config), block), f"dilated by {r}"
        # Growth is capped at 3 px (Euclidean) from the given border: all but the block's corners.
        eroded = _erode(block, r)
        assert np.array_equal(snap_to_depth(eroded, depth, config), block & _dilate(eroded, 3)), (
            f"eroded by {r}"
        )


def test_snap_to_depth_moves_the_border_at_most_snap_radius() -> None:
    block, depth = _block_depth()
    config = MaskCleanConfig(snap_radius_px=3)
    eroded = _erode(block, 6)
    # 6 px inside, the silhouette is out of sight (further than snap_radius_px + 1): no growth.
    assert np.array_equal(snap_to_depth(eroded, depth, config), eroded)
    eroded = _erode(block, 3)
    assert np.array_equal(snap_to_depth(eroded, depth, config), block & _dilate(eroded, 3))
    # A 6 px bleed reaches into the trusted core (3 px in): snapping cannot tell it from the object.
    bled = _dilate(block, 6)
    assert np.array_equal(snap_to_depth(bled, depth, config), bled)
    assert np.array_equal(snap_to_depth(bled, depth, MaskCleanConfig(snap_radius_px=7)), block)


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


def test_no_depth_edge_in_reach_means_no_change() -> None:
    # A mask on one continuous slanted surface: nothing says where the object ends.
    block, _ = _block_depth()
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    plane = 1.5 + 0.004 * yy + 0.001 * xx
    assert np.array_equal(snap_to_depth(_erode(block, 2), plane), _erode(block, 2))
    assert np.array_equal(snap_to_depth(_dilate(block, 2), plane), _dilate(block, 2))


# -- on ray-cast scenes --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scenes() -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Two synthetic scenes with Kinect-like depth: (depth_m, true masks of objects >= 1000 px)."""
    out = []
    for seed in (3, 4):
        scene = make_scene(seed)
        frame = render_frame(scene, degradation=DepthDegradation(), seed=seed)
        masks = [frame.visible_mask(i) for i in scene.object_ids if frame.visible_mask(i).sum() >= 1000]
        out.append((frame.frame.depth_m, masks))
    assert sum(len(m) for _, m in out) >= 6
    return out


def test_cleaning_sam_like_errors_on_synthetic_scenes_improves_boundary_f(scenes) -> None:
    before, after, islands, holes, snapped = [], [], [], [], []
    for depth, masks in scenes:
        for k, truth in enumerate(masks):
            anchor = click_point(truth)
            rng = np.random.default_rng(k)
            degraded = degrade_mask(truth, rng, frozenset({"boundary", "holes", "islands"}))
            before.append(boundary_f_score(degraded, truth).f)
            after.append(boundary_f_score(clean_mask(degraded, depth, anchor), truth).f)
            only = degrade_mask(truth, rng, frozenset({"islands"}))
            islands.append(
                boundary_f_score(remove_islands(only, anchor), truth).f - boundary_f_score(only, truth).f
            )
            only = degrade_mask(truth, rng, frozenset({"holes"}))
            holes.append(boundary_f_score(fill_holes(only, depth), truth).f - boundary_f_score(only, truth).f)
            only = degrade_mask(truth, rng, frozenset({"boundary"}))
            snapped.append(
                boundary_f_score(snap_to_depth(only, depth), truth).f - boundary_f_score(only, truth).f
            )
    assert np.mean(after) > np.mean(before) + 0.1, (np.mean(before), np.mean(after))
    assert sum(a > b for a, b in zip(after, before, strict=True)) >= 0.8 * len(before)
    assert np.mean(islands) > 0.05 and min(islands) >= 0.0
    assert np.mean(holes) > 0.05 and min(holes) >= 0.0
    assert np.mean(snapped) > 0.02


def test_cleaning_a_true_mask_changes_little(scenes) -> None:
    # What cleaning costs when there is nothing to fix: growth at contact lines and removal of
    # flying pixels move a correct border by a pixel or two in places.
    f, iou = [], []
    for depth, masks in scenes:
        for truth in masks:
            out = clean_mask(truth, depth, click_point(truth))
            f.append(boundary_f_score(out, truth).f)
            iou.append(mask_iou(out, truth))
    assert min(f) > 0.9 and np.mean(f) > 0.96
    assert min(iou) > 0.93 and np.mean(iou) > 0.96

"""The depth snap's numba kernel gives the masks the NumPy formulation it replaced gave, bit for bit.

`reference_snap_to_depth` below is `engine/masks/clean.py::_snap_to_depth` as it was before its
growth loop was compiled (engine/masks/kernels.py), with its `_Neighbours` helper, unchanged. The
two are compared on random depth maps (steps, slopes, millimetre quantisation that puts depth
differences exactly on the tolerance, holes) with random blob masks, over several snap radii and
tolerances, and on the geometric model's masks of real RGB-D frames (livingroom1_micro, skipped
when the shared data set is absent).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import engine.masks.clean as clean_module
from engine.masks import MaskCleanConfig, clean_mask
from engine.masks.clean import _crop, _crop_depth, _depth_edges, _disk, _fill_holes, _remove_islands
from engine.masks.kernels import grow_region, warm_up

SEQUENCE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rgbd" / "livingroom1_micro"

# ----------------------------------------------------------------------------- NumPy reference


def reference_snap_to_depth(crop: np.ndarray, depth: np.ndarray, config: MaskCleanConfig) -> np.ndarray:
    r = config.snap_radius_px
    edge = _depth_edges(depth, config)
    if r == 0 or not edge.any():
        return crop
    mask = crop > 0
    core = cv2.erode(crop, _disk(r)) > 0  # default border: the image edge is not the object's edge
    if not core.any():
        return crop  # thinner than the band everywhere: nothing trusted to snap towards

    valid = depth > 0
    pieces = (mask & valid & ~edge).view(np.uint8)
    n, labels = cv2.connectedComponents(pieces, connectivity=8)
    keep_piece = np.zeros(n, bool)  # a piece with no pixel in the core lies wholly in the band
    keep_piece[labels[core]] = True
    keep_piece[0] = False
    kept = keep_piece[labels] | (mask & ~valid)
    grid = _Neighbours(kept, depth)
    grid.accept(np.flatnonzero(grid.pad(mask & edge)), config)

    reach = cv2.dilate(crop, _disk(r)) > 0
    near_edge = cv2.dilate(edge.view(np.uint8), _disk(r + 1)) > 0
    candidates = np.flatnonzero(grid.pad(reach & ~mask & valid & near_edge))
    for _ in range(r):
        if not grid.accept(candidates, config):
            break
    return grid.region()


class _Neighbours:
    """A region on a 1-pixel-padded flat grid, grown pixel by pixel where depth agrees."""

    def __init__(self, region: np.ndarray, depth: np.ndarray) -> None:
        h, w = region.shape
        self.shape = (h, w)
        self.kept = self.pad(region).ravel()
        self.depth = np.pad(depth, 1).ravel()
        stride = w + 2
        self.offsets = np.array([-stride - 1, -stride, -stride + 1, -1, 1, stride - 1, stride, stride + 1])

    def pad(self, a: np.ndarray) -> np.ndarray:
        return np.pad(a, 1)

    def accept(self, candidates: np.ndarray, config: MaskCleanConfig) -> bool:
        todo = candidates[~self.kept[candidates]]
        if todo.size == 0:
            return False
        nb = todo[:, None] + self.offsets
        nd = self.depth[nb]
        d = self.depth[todo][:, None]
        tol = np.maximum(config.depth_rel_tol * d, config.depth_abs_tol_m)
        ok = (self.kept[nb] & (nd > 0) & (d > 0) & (np.abs(nd - d) <= tol)).any(axis=1)
        self.kept[todo[ok]] = True
        return bool(ok.any())

    def region(self) -> np.ndarray:
        h, w = self.shape
        return np.ascontiguousarray(self.kept.reshape(h + 2, w + 2)[1:-1, 1:-1]).view(np.uint8)


# ----------------------------------------------------------------------------- inputs


def _ellipse(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
    axes = (int(rng.integers(3, w // 2)), int(rng.integers(3, h // 2)))
    cv2.ellipse(m, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return m > 0


def random_case(seed: int, h: int = 72, w: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """(mask (h, w) bool, depth (h, w) float32 metres with 0 = invalid): a sloped background with
    objects standing out by steps of 0-40%, millimetre quantisation in half the cases (depth
    differences land exactly on the tolerance), invalid pixels and blobs, and a mask made of an
    object's silhouette moved, dilated or eroded by a few pixels plus random blobs and holes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0.4, 4.0)
    depth = base + rng.uniform(-0.01, 0.01) * xx + rng.uniform(-0.01, 0.01) * yy
    objects = []
    for _ in range(int(rng.integers(1, 5))):
        shape = _ellipse(rng, h, w)
        depth[shape] = (base * rng.uniform(0.6, 1.4) + rng.uniform(-0.005, 0.005) * xx)[shape]
        objects.append(shape)
    depth *= 1 + rng.normal(0, rng.choice([0.0, 0.002, 0.01]), depth.shape)
    if rng.random() < 0.5:
        depth = np.round(depth * 1000) / 1000  # Kinect-like millimetres
    depth = np.maximum(depth, 0).astype(np.float32)
    depth[rng.random(depth.shape) < rng.choice([0.0, 0.02, 0.1])] = 0
    for _ in range(int(rng.integers(0, 3))):
        depth[_ellipse(rng, h, w) & (rng.random(depth.shape) < 0.7)] = 0

    mask = objects[int(rng.integers(len(objects)))].view(np.uint8)
    k = int(rng.integers(0, 5))
    if k:
        op = cv2.dilate if rng.random() < 0.5 else cv2.erode
        mask = op(mask, _disk(k))
    mask = np.roll(mask, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), (0, 1)) > 0
    for _ in range(int(rng.integers(0, 3))):
        blob = _ellipse(rng, h, w) & (rng.random((h, w)) < rng.uniform(0.5, 1.0))
        mask = mask | blob if rng.random() < 0.6 else mask & ~blob
    return mask, depth


CONFIGS = [
    MaskCleanConfig(snap_radius_px=r, depth_rel_tol=rel, depth_abs_tol_m=abs_tol)
    for r in (0, 1, 2, 3, 5)
    for rel, abs_tol in ((0.02, 0.01), (0.01, 0.0), (0.05, 0.004))
]


def real_masks(
    frames: range = range(0, 211, 14), clicks: int = 10, all_granularities: bool = True
) -> list[tuple[np.ndarray, np.ndarray, tuple[float, float]]]:
    """(mask, depth_m, click) of the geometric model's masks for random clicks on real frames."""
    from clients.sources.folder import open_sequence
    from engine.core import PointPrompt, Prompt
    from engine.pipeline import encode_keyframe, prompt_input
    from models.registry import ModelSpec, build_model

    seq = open_sequence(SEQUENCE)
    model = build_model(ModelSpec("geometric"))
    rng = np.random.default_rng(0)
    out = []
    for i in frames:
        if i >= len(seq):
            break
        frame = seq[i]
        h, w = frame.size
        embedding = encode_keyframe(model, frame)
        for k in range(clicks):
            xy = (float(rng.uniform(20, w - 20)), float(rng.uniform(20, h - 20)))
            prompt = Prompt(k, frame.frame_id, points=(PointPrompt(*xy),))
            pred = model.decoder.predict(embedding, prompt_input(prompt, h, w))
            picks = range(len(pred.masks)) if all_granularities else [int(np.argmax(pred.scores))]
            out.extend((pred.masks[j], frame.depth_m, xy) for j in picks if pred.masks[j].any())
    return out


# ----------------------------------------------------------------------------- tests


def test_warm_up_compiles_the_signature_the_cleaning_uses() -> None:
    warm_up()
    assert len(grow_region.signatures) >= 1
    before = set(grow_region.signatures)
    mask, depth = random_case(0)
    clean_module._snap_to_depth(mask.view(np.uint8).copy(), _crop_depth(depth, (0, 72, 0, 96)), CONFIGS[3])
    assert set(grow_region.signatures) == before  # no second compilation on the prompt path


def test_grow_region_is_synchronous_and_stops_early() -> None:
    # A row of equal depths: one step adds only the pixel next to the region, not the whole row.
    region = np.zeros((1, 6), np.uint8)
    region[0, 0] = 1
    depth = np.ones((1, 6), np.float32)
    candidates = np.arange(6)
    assert grow_region(region, depth, candidates, 1, np.float32(0.02), np.float32(0.01)) == 1
    assert region.tolist() == [[1, 1, 0, 0, 0, 0]]
    # A depth jump stops growth: steps that add nothing end the loop.
    depth[0, 3:] = 2
    assert grow_region(region, depth, candidates, 10, np.float32(0.02), np.float32(0.01)) == 1
    assert region.tolist() == [[1, 1, 1, 0, 0, 0]]
    # No valid depth, no growth: a pixel without depth neither joins nor passes growth on.
    region[:] = 0
    region[0, 0] = 1
    depth[0, :3] = (1.0, 0.0, 1.0)
    assert grow_region(region, depth, candidates, 3, np.float32(0.02), np.float32(0.01)) == 0
    assert region.tolist() == [[1, 0, 0, 0, 0, 0]]


@pytest.mark.parametrize("seed", range(40))
def test_snap_equals_the_numpy_reference_on_random_cases(seed: int) -> None:
    mask, depth = random_case(seed)
    crop = mask.view(np.uint8)
    for config in CONFIGS:
        expected = reference_snap_to_depth(crop.copy(), depth, config)
        got = clean_module._snap_to_depth(crop.copy(), depth, config)
        assert got.dtype == expected.dtype == np.uint8
        assert np.array_equal(got, expected), (seed, config)


@pytest.mark.parametrize("seed", range(40, 60))
def test_clean_mask_equals_the_numpy_reference_on_random_cases(seed: int, monkeypatch) -> None:
    mask, depth = random_case(seed)
    anchor = tuple(float(v) for v in np.argwhere(mask)[0][::-1]) if mask.any() else None
    for config in CONFIGS[::2]:
        got = clean_mask(mask, depth, anchor, config)
        with monkeypatch.context() as m:
            m.setattr(clean_module, "_snap_to_depth", reference_snap_to_depth)
            expected = clean_mask(mask, depth, anchor, config)
        assert np.array_equal(got, expected), (seed, config)


@pytest.mark.skipif(not SEQUENCE.is_dir(), reason=f"{SEQUENCE} (shared RGB-D data) is not available")
def test_snap_equals_the_numpy_reference_on_real_masks(monkeypatch) -> None:
    masks = real_masks(range(0, 211, 30))  # 8 frames, every granularity: ~240 masks
    assert len(masks) >= 150
    changed = 0
    for mask, depth_m, xy in masks:
        for r in (1, 2, 3):
            config = MaskCleanConfig(snap_radius_px=r)
            # the crop clean_mask snaps: the box with its margin, after islands and holes
            ys, xs = np.nonzero(mask)
            box = (max(0, ys.min() - r - 1), ys.max() + r + 2, max(0, xs.min() - r - 1), xs.max() + r + 2)
            d = _crop_depth(depth_m, box)
            anchor = (round(xy[0]) - box[2], round(xy[1]) - box[0])
            crop = _fill_holes(_remove_islands(_crop(mask, box), anchor, config), d, config)
            expected = reference_snap_to_depth(crop.copy(), d, config)
            got = clean_module._snap_to_depth(crop.copy(), d, config)
            assert np.array_equal(got, expected), (xy, r)
            changed += not np.array_equal(got, crop)
        got = clean_mask(mask, depth_m, xy)
        with monkeypatch.context() as m:
            m.setattr(clean_module, "_snap_to_depth", reference_snap_to_depth)
            assert np.array_equal(got, clean_mask(mask, depth_m, xy)), xy
    assert changed > len(masks)  # snapping did move borders (the comparison is not vacuous)

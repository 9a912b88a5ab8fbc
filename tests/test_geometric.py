"""The weight-free geometric segmenter on ray-cast scenes with exact truth and on a real Kinect frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from clients.sources.folder import open_sequence
from clients.sources.synthetic import DepthDegradation, make_scene, render_frame
from engine.masks.metrics import mask_iou
from models.geometric import GRANULARITIES, GeometricConfig, LabelMaps, build_geometric
from models.interfaces import (
    ImageEmbedding,
    ImageEncoder,
    ImageInput,
    ModelError,
    PromptDecoder,
    PromptInput,
    SegmentationModel,
)
from models.registry import ModelSpec, build_model

KINECT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "rgbd" / "kinect_slambook5"
SEED = 11  # floor, walls, two tori, a sphere and two boxes
TORUS, BOX, SMALL_BOX = 7, 8, 6


@pytest.fixture(scope="module")
def model() -> SegmentationModel:
    return build_geometric()


@pytest.fixture(scope="module")
def scene():
    return make_scene(SEED, n_objects=5)


@pytest.fixture(scope="module")
def clean(scene):
    return render_frame(scene, seed=SEED)


@pytest.fixture(scope="module")
def noisy(scene):
    return render_frame(scene, degradation=DepthDegradation(), seed=SEED)


def _encode(model: SegmentationModel, frame, depth: bool = True) -> ImageEmbedding:
    f = frame.frame
    return model.encoder.encode(ImageInput(f.rgb, f.depth_m if depth else None, f.intrinsics.matrix))


@pytest.fixture(scope="module")
def clean_emb(model, clean) -> ImageEmbedding:
    return _encode(model, clean)


@pytest.fixture(scope="module")
def noisy_emb(model, noisy) -> ImageEmbedding:
    return _encode(model, noisy)


def _inside(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) of the mask pixel farthest from its boundary: where a user would click."""
    dist = cv2.distanceTransform(np.pad(mask, 1).view(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = divmod(int(np.argmax(dist)), mask.shape[1])
    return x, y


def _click(model, emb, *points: tuple[int, int, int], multimask: bool = True):
    xy = np.array([(x, y) for x, y, _ in points], np.float32)
    labels = np.array([lab for _, _, lab in points], np.int32)
    return model.decoder.predict(emb, PromptInput(xy, labels, multimask=multimask))


def test_registry_builds_the_geometric_model() -> None:
    model = build_model(ModelSpec("geometric"))
    assert isinstance(model, SegmentationModel) and model.name == "geometric"
    assert isinstance(model.encoder, ImageEncoder) and isinstance(model.decoder, PromptDecoder)


@pytest.mark.parametrize("oid", [TORUS, BOX])
def test_object_mask_matches_the_truth_on_a_clean_scene(model, clean, clean_emb, oid) -> None:
    truth = clean.visible_mask(oid)
    pred = _click(model, clean_emb, (*_inside(truth), 1))
    assert pred.masks.shape == (3, 480, 640) and pred.masks.dtype == bool
    assert pred.granularity == GRANULARITIES
    assert mask_iou(pred.masks[1], truth) > 0.93
    # the engine lifts the top-scoring mask: it must be the object, not a face of it
    assert int(np.argmax(pred.scores)) == 1


@pytest.mark.parametrize("oid", [TORUS, BOX])
def test_object_mask_survives_kinect_like_noise_and_holes(model, noisy, noisy_emb, oid) -> None:
    truth = noisy.visible_mask(oid)
    pred = _click(model, noisy_emb, (*_inside(truth), 1))
    assert mask_iou(pred.masks[1], truth) > 0.8
    assert mask_iou(pred.masks[int(np.argmax(pred.scores))], truth) > 0.8


def test_clicking_the_floor_returns_the_floor_not_the_objects(model, scene, clean, clean_emb) -> None:
    floor = clean.visible_mask(0)
    pred = _click(model, clean_emb, (*_inside(floor), 1))
    assert mask_iou(pred.masks[1], floor) > 0.9
    for oid in scene.object_ids:
        obj = clean.visible_mask(oid)
        if obj.sum() >= 1000:
            assert (pred.masks[1] & obj).sum() < 0.1 * obj.sum(), f"floor mask swallowed object {oid}"


def test_part_object_region_nest_and_grow(model, clean, clean_emb) -> None:
    maps: LabelMaps = clean_emb.data
    part, obj, region = (maps.level_map(k) for k in range(3))
    # globally: every part lies in exactly one object, every object in exactly one region
    for fine, coarse in ((part, obj), (obj, region)):
        sel = fine > 0
        pairs = np.unique(fine[sel].astype(np.int64) * (int(coarse.max()) + 1) + coarse[sel])
        assert np.unique(pairs // (int(coarse.max()) + 1)).size == pairs.size
        assert np.all(coarse[sel] > 0)
    # per prompt: part <= object <= region, and the box's face is a strict part of the box
    for oid in (TORUS, BOX):
        m = _click(model, clean_emb, (*_inside(clean.visible_mask(oid)), 1)).masks
        assert not (m[0] & ~m[1]).any() and not (m[1] & ~m[2]).any()
        assert m[0].sum() <= m[1].sum() <= m[2].sum()
    m = _click(model, clean_emb, (*_inside(clean.visible_mask(BOX)), 1)).masks
    assert m[0].sum() < 0.9 * m[1].sum()  # a box has several faces
    assert m[2].sum() > 5 * m[1].sum()  # the box touches the floor: its region is the room


def test_single_mask_is_the_best_scored_one(model, clean, clean_emb) -> None:
    xy = _inside(clean.visible_mask(BOX))
    multi = _click(model, clean_emb, (*xy, 1))
    single = _click(model, clean_emb, (*xy, 1), multimask=False)
    best = int(np.argmax(multi.scores))
    assert single.masks.shape == (1, 480, 640) and single.granularity == (GRANULARITIES[best],)
    assert np.array_equal(single.masks[0], multi.masks[best])
    assert multi.scores.dtype == np.float32 and np.all((multi.scores >= 0) & (multi.scores <= 1))


def test_a_click_on_a_depth_hole_snaps_and_the_hole_joins_the_object(model, clean) -> None:
    truth = clean.visible_mask(BOX)
    x, y = _inside(truth)
    depth = clean.frame.depth_m.copy()
    hole = np.zeros(depth.shape, bool)
    cv2.circle(hole.view(np.uint8), (x, y), 7, 1, -1)
    depth[hole] = 0.0
    emb = model.encoder.encode(ImageInput(clean.frame.rgb, depth, clean.frame.intrinsics.matrix))
    pred = _click(model, emb, (x, y, 1))
    assert mask_iou(pred.masks[1], truth) > 0.93
    assert pred.masks[1][hole].all(), "an enclosed sensor hole must be filled"


def test_negative_points_exclude_their_region(model, clean, clean_emb) -> None:
    x, y = _inside(clean.visible_mask(BOX))
    fx, fy = _inside(clean.visible_mask(0))
    plain = _click(model, clean_emb, (x, y, 1))
    assert plain.masks[2][fy, fx], "without the negative point the region contains the floor"
    vetoed = _click(model, clean_emb, (x, y, 1), (fx, fy, 0))
    for k in range(3):
        assert vetoed.masks[k][y, x] and not vetoed.masks[k][fy, fx]
    assert mask_iou(vetoed.masks[2], clean.visible_mask(BOX)) > 0.93  # falls back to the object


def test_box_and_mask_prompts_pick_the_object(model, clean, clean_emb) -> None:
    truth = clean.visible_mask(BOX)
    ys, xs = np.nonzero(truth)
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
    pred = model.decoder.predict(clean_emb, PromptInput(box=box))
    assert mask_iou(pred.masks[1], truth) > 0.93
    rough = cv2.erode(truth.view(np.uint8), np.ones((9, 9), np.uint8)).view(bool)
    pred = model.decoder.predict(clean_emb, PromptInput(mask=rough))
    assert mask_iou(pred.masks[1], truth) > 0.93


@pytest.mark.parametrize("depth", ["none", "all zero"])
def test_without_depth_colour_regions_still_answer(model, clean, depth) -> None:
    f = clean.frame
    d = None if depth == "none" else np.zeros(f.rgb.shape[:2], np.float32)
    emb = model.encoder.encode(ImageInput(f.rgb, d, None))
    assert emb.data.has_depth is False and not emb.data.valid_depth.any()
    truth = clean.visible_mask(BOX)  # a green box on a red floor: colour alone finds it
    pred = _click(model, emb, (*_inside(truth), 1))
    assert pred.masks.shape == (3, 480, 640)
    assert max(mask_iou(m, truth) for m in pred.masks) > 0.9


def test_encoding_is_deterministic(model, noisy, noisy_emb) -> None:
    again = _encode(model, noisy)
    assert np.array_equal(again.data.part, noisy_emb.data.part)
    for a, b in zip(again.data.luts, noisy_emb.data.luts, strict=True):
        assert np.array_equal(a, b)


def test_real_kinect_frame_gives_a_sane_mask_on_a_chair(model) -> None:
    assert KINECT.is_dir(), f"shared Kinect frames missing under {KINECT}"
    frame = open_sequence(KINECT)[0]
    emb = model.encoder.encode(ImageInput(frame.rgb, frame.depth_m, frame.intrinsics.matrix))
    x, y = 300, 260  # the back of the chair at the front left of the table
    assert frame.depth_m[y - 2 : y + 3, x - 2 : x + 3].min() > 0
    pred = _click(model, emb, (x, y, 1))
    best = pred.masks[int(np.argmax(pred.scores))]
    area = best.mean()
    assert best[y, x] and 0.005 < area < 0.3, f"mask covers {area:.1%} of the frame"
    # it is the chair: its 3D points lie within a chair-sized box
    z = frame.depth_m[best & (frame.depth_m > 0)]
    assert np.percentile(z, 95) - np.percentile(z, 5) < 1.2


def test_bad_inputs_raise_model_errors_that_say_what_to_do(model, clean, clean_emb) -> None:
    with pytest.raises(ModelError, match="register depth"):
        model.encoder.encode(ImageInput(clean.frame.rgb, np.zeros((10, 10), np.float32)))
    with pytest.raises(ModelError, match="at least one point"):
        model.decoder.predict(clean_emb, PromptInput())
    with pytest.raises(ModelError, match="geometric encoder"):
        model.decoder.predict(
            ImageEmbedding("sam", (480, 640), None),
            PromptInput(np.zeros((1, 2), np.float32), np.ones(1, np.int32)),
        )
    with pytest.raises(ValueError, match="normal_window"):
        GeometricConfig(normal_window=4)

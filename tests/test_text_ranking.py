"""The text ranking as a pure function (engine/fusion/text.py) on constructed masks and images,
with a CLIP model of the real open_clip architecture (tiny, random weights): crops, the formula,
the gaze term's documented cost, batching parity and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.fusion.gaze import GazeGeometry
from engine.fusion.text import CLIP_MEAN_RGB, TextRankConfig, masked_crop, rank_by_text
from models.clip.text import ClipEncoder, load_clip
from models.interfaces import TextImageEncoder
from tests.clip_tiny import write_tiny_clip

H, W = 120, 160
GEOMETRY = GazeGeometry(130.0, 130.0, (W - 1) / 2, (H - 1) / 2)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> ClipEncoder:
    return load_clip(write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip"))


def _rect(x0: int, x1: int, y0: int, y1: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _scene() -> tuple[np.ndarray, list[np.ndarray]]:
    """A striped background with a red, a green and a blue rectangle: (rgb, the three masks)."""
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, :, :] = (np.arange(W)[None, :, None] * 7 % 256).astype(np.uint8)
    masks = [_rect(10, 40, 30, 90), _rect(60, 100, 20, 50), _rect(110, 150, 60, 110)]
    for mask, colour in zip(masks, [(220, 30, 30), (30, 200, 40), (30, 40, 220)], strict=True):
        rgb[mask] = colour
    return rgb, masks


def _angle_deg(point: tuple[float, float], mask: np.ndarray) -> float:
    """Independent reference: smallest angle between the point's ray and any mask pixel's ray."""

    def ray(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.stack(
            [(x - GEOMETRY.cx) / GEOMETRY.fx, (y - GEOMETRY.cy) / GEOMETRY.fy, np.ones_like(x)], -1
        )

    ys, xs = np.nonzero(mask)
    g = ray(np.array([point[0]]), np.array([point[1]]))[0]
    r = ray(xs.astype(float), ys.astype(float))
    angles = np.arctan2(np.linalg.norm(np.cross(r, g), axis=1), r @ g)
    return math.degrees(float(angles.min()))


def test_masked_crop_is_a_grey_square_around_the_mask_with_context() -> None:
    rgb, masks = _scene()
    crop = masked_crop(rgb, masks[0], context=0.1)  # box 30 x 60 -> square side 60 * 1.2 = 72
    assert crop.shape == (72, 72, 3) and crop.dtype == np.uint8
    grey = np.all(crop == CLIP_MEAN_RGB, axis=-1)
    red = np.all(crop == (220, 30, 30), axis=-1)
    assert red.sum() == masks[0].sum() and (grey | red).all()  # only the mask's pixels, the rest grey
    rows, cols = np.nonzero(red)
    assert (rows.min(), rows.max() + 1) == (6, 66) and (cols.min(), cols.max() + 1) == (21, 51)  # centred
    # past the image border the square is padded with the same grey; an empty mask gives one grey pixel
    corner = masked_crop(rgb, _rect(0, 10, 0, 10), context=0.5)
    assert corner.shape == (20, 20, 3) and np.all(corner[:5, :5] == CLIP_MEAN_RGB)
    assert np.array_equal(corner[5:15, 5:15], rgb[:10, :10])
    assert masked_crop(rgb, np.zeros((H, W), bool)).shape == (1, 1, 3)


def test_batched_crop_embeddings_equal_one_at_a_time(clip: ClipEncoder) -> None:
    rgb, masks = _scene()
    crops = [masked_crop(rgb, m) for m in masks]
    assert isinstance(clip, TextImageEncoder)
    batch = clip.encode_images(crops)
    assert batch.shape == (3, 32) and np.allclose(np.linalg.norm(batch, axis=1), 1, atol=1e-5)
    single = np.stack([clip.encode_images([c])[0] for c in crops])
    assert np.abs(batch - single).max() < 1e-5


def test_scores_follow_the_documented_formula(clip: ClipEncoder) -> None:
    rgb, masks = _scene()
    iou = np.array([0.9, 1.3, 0.5])  # clipped to 0..1
    phrase = clip.encode_text(["the red block"])[0]
    ranking = rank_by_text(masks, iou, rgb, phrase, clip)
    sims = np.array([clip.encode_images([masked_crop(rgb, m)])[0] @ phrase for m in masks], np.float64)
    text = np.exp(sims / 0.01) / np.exp(sims / 0.01).sum()
    want = 1.0 * text + 0.25 * np.array([0.9, 1.0, 0.5])
    assert np.allclose(ranking.similarity, sims, atol=1e-5)
    assert np.allclose(ranking.text, text, atol=1e-3) and abs(ranking.text.sum() - 1) < 1e-9
    assert np.allclose(ranking.score, want, atol=1e-3)
    assert ranking.gaze is None and ranking.gaze_angle_deg is None
    assert list(ranking.order) == list(np.argsort(-want)) and ranking.best == int(np.argmax(want))
    part = ranking.mask_ranking(ranking.best)
    assert part.gaze is None and part.score == pytest.approx(float(want.max()), abs=1e-3)


def test_a_glance_lowers_a_far_candidate_by_the_documented_amount(clip: ClipEncoder) -> None:
    # Two identical green blocks: same crop, same similarity, same IoU. Only the gaze separates them.
    rgb = np.full((H, W, 3), 90, np.uint8)
    near, far = _rect(40, 60, 50, 70), _rect(67, 87, 50, 70)
    rgb[near | far] = (30, 200, 40)
    phrase = clip.encode_text(["a green box"])[0]
    gaze = (59.0, 60.0)  # on the near block's right edge, 8 px (about 3.5 deg) from the far one
    ranking = rank_by_text([far, near], [0.95, 0.95], rgb, phrase, clip, gaze, GEOMETRY)
    assert ranking.similarity[0] == pytest.approx(ranking.similarity[1], abs=1e-6)
    theta = _angle_deg(gaze, far)
    assert ranking.gaze_angle_deg is not None and ranking.gaze is not None
    assert ranking.gaze_angle_deg[1] == 0.0 and ranking.gaze[1] == 1.0
    assert ranking.gaze_angle_deg[0] == pytest.approx(theta, abs=1e-6) and 3.0 < theta < 4.0
    lost = 0.5 * (1 - math.exp(-(theta**2) / (2 * 1.5**2)))
    assert ranking.score[1] - ranking.score[0] == pytest.approx(lost, abs=1e-6)
    assert 0.43 < lost < 0.5 and list(ranking.order) == [1, 0]
    # looking at the other block swaps them by the same amount
    swapped = rank_by_text([far, near], [0.95, 0.95], rgb, phrase, clip, (68.0, 60.0), GEOMETRY)
    assert list(swapped.order) == [0, 1]
    assert swapped.score[0] - swapped.score[1] == pytest.approx(
        0.5 * (1 - math.exp(-(_angle_deg((68.0, 60.0), near) ** 2) / (2 * 1.5**2))), abs=1e-6
    )
    # without the glance they tie
    plain = rank_by_text([far, near], [0.95, 0.95], rgb, phrase, clip)
    assert plain.gaze is None and plain.score[0] == pytest.approx(plain.score[1], abs=1e-6)


def test_text_against_gaze_decides_as_the_weights_say(clip: ClipEncoder) -> None:
    """A phrase equal to one crop's embedding: that crop wins unless the glance costs it more."""
    rgb, masks = _scene()
    red, blue = masks[0], masks[2]
    phrase = clip.encode_images([masked_crop(rgb, blue)])[0]  # "describes" the blue block exactly
    for gaze in [(25.0, 60.0), (41.0, 60.0), (130.0, 85.0)]:  # on red / beside red / on blue
        r = rank_by_text([red, blue], [1.0, 1.0], rgb, phrase, clip, gaze, GEOMETRY)
        assert r.gaze is not None
        text_gain = r.text[1] - r.text[0]
        gaze_cost = 0.5 * (r.gaze[0] - r.gaze[1])
        assert r.best == (1 if text_gain > gaze_cost else 0)
        assert r.score[1] - r.score[0] == pytest.approx(text_gain - gaze_cost, abs=1e-9)


def test_an_empty_candidate_is_infinitely_far(clip: ClipEncoder) -> None:
    rgb, masks = _scene()
    phrase = clip.encode_text(["the red block"])[0]
    r = rank_by_text(
        [masks[0], np.zeros((H, W), bool)], [1.0, 1.0], rgb, phrase, clip, (20.0, 40.0), GEOMETRY
    )
    assert r.gaze_angle_deg is not None and r.gaze is not None
    assert r.gaze_angle_deg[0] == 0.0 and math.isinf(r.gaze_angle_deg[1]) and r.gaze[1] == 0.0


def test_inputs_and_settings_are_checked(clip: ClipEncoder) -> None:
    rgb, masks = _scene()
    phrase = clip.encode_text(["x"])[0]
    with pytest.raises(ValueError, match="at least one"):
        rank_by_text([], [], rgb, phrase, clip)
    with pytest.raises(ValueError, match="3 masks but 2"):
        rank_by_text(masks, [1.0, 1.0], rgb, phrase, clip)
    with pytest.raises(ValueError, match="geometry"):
        rank_by_text(masks, [1.0] * 3, rgb, phrase, clip, (5.0, 5.0))
    with pytest.raises(ValueError, match="match the text embedding"):
        rank_by_text(masks, [1.0] * 3, rgb, np.ones(5) / math.sqrt(5), clip)
    with pytest.raises(ValueError, match="mask is"):
        masked_crop(rgb, np.ones((H, W + 1), bool))
    for bad in [
        {"gaze_weight": -1.0},
        {"temperature": 0.0},
        {"gaze_sigma_deg": math.nan},
        {"max_candidates": 0},
        {"background": (0, 0, 300)},
    ]:
        with pytest.raises(ValueError, match="TextRankConfig"):
            TextRankConfig(**bad)  # type: ignore[arg-type]

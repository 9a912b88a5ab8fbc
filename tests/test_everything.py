"""Segment everything: SAM's automatic mask generator steps over our decoder interface, end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything.utils.amg import build_point_grid, calculate_stability_score
from torchvision.ops import nms

from clients.sources.synthetic import (
    DepthDegradation,
    default_intrinsics,
    make_scene,
    orbit_poses,
    render_sequence,
)
from clients.ws_client import XrsegClient
from engine.core import Prompt
from engine.everything import EverythingConfig, _nms, point_grid, segment_everything, stability_scores
from engine.pipeline import encode_keyframe
from engine.protocol import EverythingRequest, ImageCodec, ResultKind
from engine.tracking import mask_iou
from models.interfaces import MaskPrediction
from models.mobile_sam.build import build_mobile_sam_architecture
from models.registry import ModelSpec, build_model
from tests.conftest import TOKEN, LiveEngine

K = default_intrinsics(320, 240, 262.5, 262.5)
LOOSE = EverythingConfig(points_per_side=16, pred_iou_thresh=0.6, stability_score_thresh=0.9)
"""The geometric model's scores are boundary-evidence heuristics, not calibrated IoUs (models/geometric/
quality.py): SAM's 0.88 keeps only its surest masks, so these tests use 0.6."""


@pytest.fixture(scope="module")
def scene_view():
    scene = make_scene(3)
    (view,) = render_sequence(scene, orbit_poses(scene, 1), K, DepthDegradation(), seed=4)
    return scene, view


def test_grid_stability_and_nms_match_the_reference_implementations():
    grid = point_grid(32, 240, 320)
    assert np.allclose(grid, build_point_grid(32) * np.array([320, 240]), atol=1e-4)
    logits = np.random.default_rng(0).normal(0, 3, (3, 64, 64)).astype(np.float32)
    pred = MaskPrediction(logits > 0, np.ones(3, np.float32), (), logits)
    ref = calculate_stability_score(torch.from_numpy(logits), 0.0, 1.0).numpy()
    assert np.allclose(stability_scores(pred, 1.0), ref, atol=1e-6)
    assert np.all(
        stability_scores(MaskPrediction(logits > 0, np.ones(3, np.float32))) == 1.0
    )  # no logits: binary
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 200, (60, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 60, (60, 2))], 1).astype(np.float32)
    scores = rng.uniform(0, 1, 60).astype(np.float32)
    ours = _nms(boxes, scores, 0.7)
    # inclusive pixel bounds: x1 - x0 + 1 wide, as our masks' boxes are
    theirs = nms(
        torch.from_numpy(boxes + np.array([0, 0, 1, 1], np.float32)), torch.from_numpy(scores), 0.7
    ).numpy()
    assert list(ours) == list(theirs)


def test_everything_finds_the_objects_with_the_geometric_model(scene_view):
    scene, view = scene_view
    model = build_model(ModelSpec("geometric"))
    embedding = encode_keyframe(model, view.frame)
    found = segment_everything(model.decoder, embedding, LOOSE)
    assert found.candidates == 16 * 16 * 3
    n = len(found.masks)
    assert 3 <= n <= LOOSE.max_masks
    assert (
        np.all(np.diff(found.scores) <= 0) and np.all(found.scores >= 0.6) and np.all(found.stability >= 0.9)
    )
    # de-duplicated and suppressed: no two kept masks are the same or have boxes overlapping > 0.7
    for i in range(n):
        for j in range(i + 1, n):
            assert not np.array_equal(found.masks[i], found.masks[j])
    # most objects are found (recall is the geometric model's: it splits some boxes into faces)
    objects = [o for o in scene.object_ids if view.visible_mask(o).sum() >= 500]
    best = [max(mask_iou(m, view.visible_mask(o)) for m in found.masks) for o in objects]
    assert len(objects) >= 3 and sum(b >= 0.7 for b in best) >= 2, best
    # the filters filter: without them more (and worse) masks come back
    unfiltered = segment_everything(
        model.decoder, embedding, EverythingConfig(16, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    )
    assert len(unfiltered.masks) > n and unfiltered.scores.min() < 0.6
    # the default grid (32 x 32) runs through the same path
    full = segment_everything(
        model.decoder, embedding, EverythingConfig(pred_iou_thresh=0.6, stability_score_thresh=0.9)
    )
    assert full.candidates == 32 * 32 * 3 and len(full.masks) >= n


def test_everything_with_mobile_sam_uses_its_logits(tmp_path, monkeypatch, scene_view):
    """The real MobileSAM architecture (random weights) and ONNX Runtime decoder: thresholds at 0
    (random weights predict low IoUs), a 4 x 4 grid; stability comes from the decoder's logits."""
    _, view = scene_view
    torch.manual_seed(0)
    path = tmp_path / "mobile_sam.pt"
    torch.save(build_mobile_sam_architecture().state_dict(), path)
    monkeypatch.setenv("XRSEG_CACHE", str(tmp_path / "cache"))
    model = build_model(ModelSpec("mobile_sam", path))
    embedding = encode_keyframe(model, view.frame)
    config = EverythingConfig(
        points_per_side=4, points_per_batch=5, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    found = segment_everything(model.decoder, embedding, config)
    assert found.candidates == 48 and 1 <= len(found.masks) <= 48
    assert found.masks.shape[1:] == (240, 320)
    assert np.any(found.stability < 1.0) and np.all(found.stability >= 0.0)
    from models.interfaces import PromptInput

    x, y = found.point_xy[0]
    direct = model.decoder.predict(
        embedding, PromptInput(np.array([[x, y]], np.float32), np.ones(1, np.int32))
    )
    assert any(np.array_equal(found.masks[0], m) for m in direct.masks)
    assert float(found.scores[0]) in [pytest.approx(float(s)) for s in direct.scores]


async def test_everything_over_websocket(live_engine: LiveEngine, scene_view) -> None:
    scene, view = scene_view
    async with XrsegClient.connect(live_engine.url, TOKEN) as client:
        await client.send_frame(view.frame, ImageCodec.PNG)
        answer = await client.prompt_nowait(
            Prompt(9, view.frame.frame_id, want_3d=False), everything=EverythingRequest(16, 0.6, 0.9)
        )
    r = answer.result
    assert answer.kind is ResultKind.EVERYTHING and r.prompt_id == 9 and r.frame_id == view.frame.frame_id
    assert len(r.masks) >= 3 and r.best == 0 and r.segment is None
    scores = [m.score for m in r.masks]
    assert scores == sorted(scores, reverse=True) and min(scores) >= 0.6
    objects = [o for o in scene.object_ids if view.visible_mask(o).sum() >= 500]
    best = [max(mask_iou(m.mask.decode(), view.visible_mask(o)) for m in r.masks) for o in objects]
    assert sum(b >= 0.7 for b in best) >= 2, best

"""Objects inside support clusters (models/geometric/objects.py), support pieces and the hybrid
default of the geometric model (support.py, decoder._hybrid)."""

from __future__ import annotations

import numpy as np

from clients.sources.synthetic import DepthDegradation, make_scene, render_frame
from engine.masks.metrics import mask_iou
from models.geometric import GeometricConfig, build_geometric
from models.geometric.objects import split_clusters
from models.geometric.support import support_mask
from models.interfaces import ImageInput, PromptInput


def _two_halves(right_colour: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cluster = np.zeros((40, 60), np.int32)
    cluster[5:35, 5:55] = 1
    concave = np.zeros((40, 60), bool)
    concave[5:35, 30] = True  # where the two touch
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:, :30] = (200, 40, 40)
    rgb[:, 30:] = right_colour
    return cluster, concave, rgb


def test_a_cluster_splits_where_a_concave_crease_and_a_colour_change_agree() -> None:
    objects, cluster_of = split_clusters(*_two_halves((40, 40, 200)), GeometricConfig())
    left, right = objects[20, 15], objects[20, 45]
    assert left > 0 and right > 0 and left != right
    assert cluster_of[left] == cluster_of[right] == 1  # both keep their cluster (the region)
    assert (objects[5:35, 5:55] > 0).all() and (objects[:5] == 0).all()


def test_a_concave_fold_of_one_colour_does_not_split() -> None:
    objects, _ = split_clusters(*_two_halves((200, 40, 40)), GeometricConfig())
    assert objects[20, 15] == objects[20, 45] > 0


def _plane_scene(normal_tilt: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A floor 1 m below the camera looking down, four boxes whose tops are 10 cm above it: each
    top holds 4.7 % of the pixels, together 19 % (more than a support needs, 8 %)."""
    h, w = 120, 160
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    pts = np.stack([(xs - 80) / 100.0, (ys - 60) / 100.0, np.full((h, w), 1.0)], -1)
    normals = np.zeros((h, w, 3), np.float32)
    normals[..., 2] = -1.0
    for r0, c0 in ((5, 5), (5, 125), (50, 5), (50, 125)):
        pts[r0 : r0 + 30, c0 : c0 + 30, 2] = 0.9  # tops at one height, parallel to the floor
    if normal_tilt:  # a band of sideways-facing pixels at floor height (an object's base)
        normals[95:105, 40:120] = (1.0, 0.0, 0.0)
    return pts.astype(np.float32), np.ones((h, w), bool), normals


def test_object_tops_at_one_height_are_not_a_support() -> None:
    pts, valid, _ = _plane_scene(False)
    support, _ = support_mask(pts, valid, GeometricConfig())
    assert support[90:110, 40:120].all()  # the floor
    for r0, c0 in ((5, 5), (5, 125), (50, 5), (50, 125)):
        assert not support[r0 + 3 : r0 + 27, c0 + 3 : c0 + 27].any()


def test_sideways_facing_pixels_in_the_band_stay_off_the_support() -> None:
    pts, valid, normals = _plane_scene(True)
    support, _ = support_mask(pts, valid, GeometricConfig(), normals)
    assert not support[97:103, 45:115].any()
    assert support[85:92, 40:120].all()


def test_the_hybrid_default_answers_an_object_on_the_floor() -> None:
    noisy = render_frame(make_scene(11, n_objects=5), degradation=DepthDegradation(), seed=11)
    f = noisy.frame
    model = build_geometric()
    assert model.encoder.config.hybrid and not model.encoder.config.support_planes
    emb = model.encoder.encode(ImageInput(f.rgb, f.depth_m, f.intrinsics.matrix))
    assert emb.data.support is not None  # both label map sets travel in the embedding
    truth = noisy.visible_mask(8)
    ys, xs = np.nonzero(truth)
    i = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
    pred = model.decoder.predict(
        emb, PromptInput(np.array([[xs[i], ys[i]]], np.float32), np.ones(1, np.int32))
    )
    assert mask_iou(pred.masks[int(np.argmax(pred.scores))], truth) > 0.8


def test_box_prompts_keep_the_lccp_answer() -> None:
    """The hybrid rule is for clicks; the tracker's box and mask prompts get what they were tuned on."""
    noisy = render_frame(make_scene(11, n_objects=5), degradation=DepthDegradation(), seed=11)
    f = noisy.frame
    image = ImageInput(f.rgb, f.depth_m, f.intrinsics.matrix)
    ys, xs = np.nonzero(noisy.visible_mask(8))
    prompt = PromptInput(
        np.array([[xs.mean(), ys.mean()]], np.float32),
        np.ones(1, np.int32),
        box=np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float32),
    )
    hybrid, lccp = build_geometric(), build_geometric(GeometricConfig(hybrid=False))
    a = hybrid.decoder.predict(hybrid.encoder.encode(image), prompt)
    b = lccp.decoder.predict(lccp.encoder.encode(image), prompt)
    assert np.array_equal(a.masks, b.masks) and np.array_equal(a.scores, b.scores)

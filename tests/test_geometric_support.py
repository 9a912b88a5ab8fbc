"""Support planes and object clusters of the geometric segmenter (models/geometric/support.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from clients.sources.synthetic import DepthDegradation, make_scene, render_frame
from engine.masks.metrics import mask_iou
from models.geometric import GeometricConfig, build_geometric
from models.geometric.support import fill_cluster_holes, ransac_plane, with_clusters
from models.interfaces import ImageInput, PromptInput

SEED = 11  # floor, walls, two tori, a sphere and two boxes (as tests/test_geometric.py)
BOX = 8


@pytest.fixture(scope="module")
def noisy():
    return render_frame(make_scene(SEED, n_objects=5), degradation=DepthDegradation(), seed=SEED)


@pytest.fixture(scope="module")
def model():
    return build_geometric(GeometricConfig(support_planes=True))


def _inside(mask: np.ndarray) -> tuple[int, int]:
    dist = cv2.distanceTransform(np.pad(mask, 1).view(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = divmod(int(np.argmax(dist)), mask.shape[1])
    return x, y


def test_ransac_recovers_a_noisy_plane_among_outliers() -> None:
    rng = np.random.default_rng(3)
    normal = np.array([0.1, 0.8, 0.55])
    normal /= np.linalg.norm(normal)
    u = np.cross(normal, [1.0, 0.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    st = rng.uniform(-1, 1, (3000, 2))
    on = 1.5 * normal + st[:, :1] * u + st[:, 1:] * v + rng.normal(0, 0.002, (3000, 1)) * normal
    off = rng.uniform(-1, 2, (1500, 3))
    plane = ransac_plane(np.concatenate([on, off]), 0.01, 120, np.random.default_rng(0))
    assert abs(abs(plane[:3] @ normal) - 1) < 1e-3  # within ~2.5 degrees
    assert abs(np.linalg.norm(plane[:3]) - 1) < 1e-9
    assert np.median(np.abs(on @ plane[:3] + plane[3])) < 0.003


def test_a_click_on_an_object_returns_it_cut_from_its_support(model, noisy) -> None:
    f = noisy.frame
    emb = model.encoder.encode(ImageInput(f.rgb, f.depth_m, f.intrinsics.matrix))
    truth = noisy.visible_mask(BOX)
    floor = noisy.visible_mask(0)
    x, y = _inside(truth)
    pred = model.decoder.predict(emb, PromptInput(np.array([[x, y]], np.float32), np.ones(1, np.int32)))
    best = int(np.argmax(pred.scores))
    assert pred.granularity[best] == "object"  # the cluster is preferred over its pieces
    assert mask_iou(pred.masks[best], truth) > 0.8
    assert (pred.masks[2] & floor).sum() < 0.05 * floor.sum()  # the floor is a support, not the object
    again = model.encoder.encode(ImageInput(f.rgb, f.depth_m, f.intrinsics.matrix))
    assert np.array_equal(again.data.part, emb.data.part)  # a pure function of the frame


def test_levels_still_nest(model, noisy) -> None:
    f = noisy.frame
    maps = model.encoder.encode(ImageInput(f.rgb, f.depth_m, f.intrinsics.matrix)).data
    part, obj, region = (maps.level_map(k) for k in range(3))
    for fine, coarse in ((part, obj), (obj, region)):
        sel = fine > 0
        pairs = np.unique(fine[sel].astype(np.int64) * (int(coarse.max()) + 1) + coarse[sel])
        assert np.unique(pairs // (int(coarse.max()) + 1)).size == pairs.size


def test_holes_enclosed_by_a_cluster_join_it_and_shadows_on_the_support_do_not() -> None:
    labels = np.zeros((40, 40), np.int32)
    labels[5:25, 5:25] = 1
    valid = np.ones((40, 40), bool)
    valid[10:15, 10:15] = False  # a dark patch inside the object
    labels[10:15, 10:15] = 0
    valid[5:25, 26:32] = False  # a shadow beside it, on the support
    support = np.zeros((40, 40), bool)
    support[:, 25:] = True
    support[30:] = True
    support &= valid
    out = fill_cluster_holes(labels, valid, support, near_px=1.0)
    assert (out[10:15, 10:15] == 1).all()
    assert (out[5:25, 27:32] == 0).all()  # only the first column is within 1 px
    assert (out[support] == 0).all()


def test_with_clusters_relabels_objects_and_keeps_the_rest() -> None:
    part = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 3, 3]], np.int32)
    object_lut = np.array([0, 1, 1, 2], np.int32)
    region_lut = np.array([0, 1, 1], np.int32)
    cluster = np.array([[1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]], np.int32)
    new_part, obj_lut, reg_lut, is_cluster = with_clusters(part, object_lut, region_lut, cluster, 2)
    obj = obj_lut[new_part]
    assert len(np.unique(obj[cluster == 1])) == 1 and is_cluster[obj[0, 0]]
    assert obj[0, 3] != obj[0, 0] and not is_cluster[obj[0, 3]]  # part 2 straddles: split
    assert not is_cluster[obj[2, 0]]
    assert (reg_lut[obj][cluster == 1] != reg_lut[obj][2, 0]).all()

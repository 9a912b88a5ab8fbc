"""The real-data ground truth of bench.real_accuracy: index, label maps and loader."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from bench.real_gt import GT_DIR, GroundTruthError, default_data_dir, load_ground_truth


def test_index_and_label_maps_agree() -> None:
    index = json.loads((GT_DIR / "index.json").read_text())
    n_objects = 0
    for seq, entry in index["sequences"].items():
        for fr in entry["frames"]:
            labels = cv2.imread(str(GT_DIR / seq / f"{fr['frame']}.png"), cv2.IMREAD_UNCHANGED)
            assert labels is not None and labels.dtype == np.uint8 and labels.shape == (480, 640)
            present = set(np.unique(labels).tolist()) - {0}
            assert present == set(range(1, len(fr["objects"]) + 1)), (seq, fr["frame"])  # none lost
            areas = np.bincount(labels.ravel())[1:]
            assert areas.min() >= 300  # every object is a real mask, not a speck
            n_objects += len(fr["objects"])
        assert (GT_DIR / f"contact_{seq}.png").exists()  # the reviewed contact sheet
    assert n_objects >= 40


@pytest.mark.skipif(not (default_data_dir() / "tabletop5").is_dir(), reason="needs ../shared/data/rgbd")
def test_loader_pairs_masks_with_their_frames() -> None:
    frames = list(load_ground_truth(sequences=("tabletop5",)))
    assert len(frames) == 5
    for af in frames:
        assert af.frame.depth is not None and af.frame.size == (480, 640)
        for obj in af.objects:
            depth = af.frame.depth_m[obj.mask]
            assert (depth > 0).mean() > 0.5  # the masks sit on measured surfaces of the frame


def test_a_missing_label_map_is_a_clear_error(tmp_path) -> None:
    shutil.copy(GT_DIR / "index.json", tmp_path / "index.json")
    with pytest.raises(GroundTruthError, match="tabletop5"):
        list(load_ground_truth(data_dir=tmp_path, gt_dir=tmp_path))

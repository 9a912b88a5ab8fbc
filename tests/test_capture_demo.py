"""`xrseg demo --capture` end to end: tracked over a real WebSocket, fused, meshed, stored, exported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from pycocotools.coco import COCO

from engine.capture.mesh import CaptureMesh
from xrseg.demo.run import SHARED_SEQUENCE


def _run(out: Path, *extra: str) -> dict:
    cmd = [sys.executable, "-m", "xrseg", "demo", "--capture", "--out", str(out), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((out / "capture" / "capture.json").read_text())


def _check_outputs(out: Path, summary: dict, frames: int) -> None:
    assert summary["frames"] == frames and summary["frames_integrated"] >= frames - 1
    mesh = CaptureMesh.decode((out / "capture" / "mesh.glb").read_bytes(), "glb")
    assert len(mesh.triangles) == summary["triangles"] > 500
    for name in ("view0.png", "view1.png", "view2.png", "tracked_masks.png"):
        assert cv2.imread(str(out / "capture" / name)) is not None, name
    coco = COCO(str(out / "capture" / "coco" / "annotations.json"))
    assert len(coco.getImgIds()) == summary["frames_integrated"]


@pytest.mark.skipif(not SHARED_SEQUENCE.is_dir(), reason="needs ../shared/data (the synthetic fallback is tested below)")
def test_capture_demo_meshes_the_chair_of_the_shared_sequence(tmp_path: Path) -> None:
    summary = _run(tmp_path, "--max-frames", "12")
    _check_outputs(tmp_path, summary, 12)
    assert summary["object"] == "chair"
    # the chair is ~0.6 x 0.8 x 0.7 m: a mesh of the chair alone, not of the room around it
    assert all(0.2 < e < 1.2 for e in summary["extent_m"]), summary["extent_m"]


def test_capture_demo_without_shared_data_captures_a_synthetic_box(tmp_path: Path) -> None:
    summary = _run(tmp_path, "--synthetic", "--max-frames", "10")
    _check_outputs(tmp_path, summary, 10)
    assert summary["sequence"] == "synthetic" and all(e < 0.8 for e in summary["extent_m"])

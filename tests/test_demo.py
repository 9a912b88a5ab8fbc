"""`xrseg demo` end to end on a short stretch of the shared sequence, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import open3d as o3d
import pytest

from xrseg.demo.run import SHARED_SEQUENCE


def _run_demo(out: Path, *extra: str) -> dict:
    cmd = [sys.executable, "-m", "xrseg", "demo", "--out", str(out), "--max-frames", "30", "--fps", "30", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((out / "summary.json").read_text())


@pytest.mark.skipif(not SHARED_SEQUENCE.is_dir(), reason="needs ../shared/data (the synthetic fallback is tested below)")
def test_demo_on_the_shared_sequence_writes_every_output(tmp_path: Path) -> None:
    summary = _run_demo(tmp_path)
    assert summary["frames_sent"] == 30 and summary["prompts_sent"] == 10
    # a gaze prompt still waiting for a keyframe may be superseded by a newer one (an `overloaded` error)
    assert summary["results_received"] + summary["errors"] == summary["prompts_sent"]
    assert summary["results_received"] >= 8 and summary["segments_with_3d"] >= 7 and summary["objects"] == ["chair seat"]
    for stage in ("prompt_to_result", "engine_total"):  # decode too is skipped when a held gaze answer is reused
        assert summary["latency_ms"][stage]["n"] == summary["results_received"]
    for stats in summary["latency_ms"].values():
        assert 0 <= stats["p50"] <= stats["p95"]
    assert 1 <= summary["latency_ms"]["encode"]["n"] <= summary["results_received"]  # keyframes are reused
    overlays = sorted((tmp_path / "overlays").glob("*.png"))
    assert overlays and cv2.imread(str(overlays[0])).shape == (480, 640, 3)
    cloud = o3d.io.read_point_cloud(str(tmp_path / "object_chair_seat.ply"))
    assert len(cloud.points) > 100
    assert (tmp_path / "contact_sheet.png").stat().st_size > 10_000
    assert "prompt_to_result" in (tmp_path / "index.html").read_text()


def test_demo_without_shared_data_uses_a_synthetic_scene(tmp_path: Path) -> None:
    summary = _run_demo(tmp_path / "out", "--synthetic")
    assert summary["sequence"] == "synthetic" and summary["prompts_sent"] == 10
    assert summary["results_received"] + summary["errors"] == summary["prompts_sent"] and summary["results_received"] >= 7
    assert summary["segments_with_3d"] >= summary["results_received"] - 1


def test_demo_over_webrtc_with_the_shared_flags(tmp_path: Path) -> None:
    """`--transport webrtc` streams to the same server `xrseg serve` runs, over WebRTC, taking the
    ICE flags every engine command shares (here: loopback candidates only)."""
    summary = _run_demo(tmp_path / "out", "--synthetic", "--transport", "webrtc", "--loopback", "--fps", "15")
    assert summary["sequence"] == "synthetic" and summary["prompts_sent"] == 10
    assert summary["results_received"] + summary["errors"] == summary["prompts_sent"] and summary["results_received"] >= 7

"""Recorded gaze traces replayed with a recorded sequence: pixel and ray traces, both file
formats, bad files, and the whole path to a live engine (gaze prompts answered)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clients.gaze_script import GazeScript, PixelAnchor
from clients.session import Transport
from clients.sources.base import SourceError, SourceOptions
from clients.sources.folder import open_sequence
from clients.sources.gaze_trace import read_gaze_trace, trace_from_script, write_gaze_trace
from clients.sources.registry import build_source
from clients.stream import StreamConfig, run_stream
from tests.conftest import TOKEN

LIVINGROOM = Path(__file__).resolve().parents[2] / "shared" / "data" / "rgbd" / "livingroom1_micro"
N = 30


def _replay(trace_path: Path, n: int = N) -> list:
    source = build_source("folder", SourceOptions(target=str(LIVINGROOM), gaze_file=trace_path, max_frames=n))
    info = source.start()
    assert info.has_gaze and "gaze trace" in info.name
    items = []
    while (item := source.read()) is not None:
        items.append(item)
    source.stop()
    return items


def test_pixel_trace_csv_replays_on_its_frames(tmp_path: Path) -> None:
    seq = open_sequence(LIVINGROOM)
    frames = [seq[i] for i in range(N)]
    script = GazeScript.from_anchors(frames, [PixelAnchor("chair", 0, 400.0, 300.0, 0, N - 1)], jitter_px=1.5)
    trace = trace_from_script(script, frames)
    path = tmp_path / "gaze.csv"
    write_gaze_trace(path, trace)
    items = _replay(path)
    assert len(items) == N
    for i, item in enumerate(items):
        (sample,) = item.gaze  # one sample per frame interval, at that frame's time
        assert sample.t == pytest.approx(i / 30.0)
        row = int(np.flatnonzero(np.isclose(trace.t, item.device_ts))[0])
        assert (sample.x, sample.y) == pytest.approx(tuple(trace.pixels[row]))


def test_ray_trace_jsonl_hits_the_looked_at_point(tmp_path: Path) -> None:
    """Rays from 3 cm beside each camera towards one world point land on that point's pixel."""
    seq = open_sequence(LIVINGROOM)
    first = seq[0]
    z = float(first.depth_m[240, 320])
    k = first.intrinsics
    target = first.pose.transform(np.array([[(320 - k.cx) * z / k.fx, (240 - k.cy) * z / k.fy, z]]))[0]
    lines = []
    for i in range(N):
        pose = seq.files[i].pose
        origin = pose.transform(np.array([[0.03, 0.0, 0.0]]))[0]
        lines.append(
            json.dumps(
                {
                    "t": i / 30.0,
                    "origin": origin.tolist(),
                    "direction": (target - origin).tolist(),
                    "confidence": 0.8,
                }
            )
        )
    path = tmp_path / "gaze.jsonl"
    path.write_text("\n".join(lines) + "\n")
    for i, item in enumerate(_replay(path)):
        cam = seq.files[i].pose.inverse().transform(target[None])[0]
        expected = (k.fx * cam[0] / cam[2] + k.cx, k.fy * cam[1] / cam[2] + k.cy)
        (sample,) = item.gaze
        assert sample.confidence == 0.8
        # the hit is found on the real depth image: within a few pixels of the target's projection
        assert np.hypot(sample.x - expected[0], sample.y - expected[1]) < 4.0, (i, sample, expected)


def test_bad_traces_say_what_is_wrong(tmp_path: Path) -> None:
    cases = {
        "header.csv": ("time,u,v\n1,2,3\n", "header must have"),
        "value.csv": ("t,x,y\n0.1,abc,3\n", r"value.csv:2"),
        "conf.csv": ("t,x,y,confidence\n0.1,1,2,1.5\n", "within 0..1"),
        "mixed.jsonl": (
            '{"t": 0, "x": 1, "y": 2}\n{"t": 1, "origin": [0,0,0], "direction": [0,0,1]}\n',
            "mixes",
        ),
        "broken.jsonl": ('{"t": 0, "x": 1}\n', r"broken.jsonl:1"),
        "empty.csv": ("t,x,y\n", "no samples"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(SourceError, match=message):
            read_gaze_trace(tmp_path / name)
    with pytest.raises(SourceError, match="not found"):
        read_gaze_trace(tmp_path / "missing.csv")


async def test_trace_drives_gaze_prompts_on_a_live_engine(tmp_path: Path, live_engine) -> None:  # type: ignore[no-untyped-def]
    seq = open_sequence(LIVINGROOM)
    frames = [seq[i] for i in range(12)]
    script = GazeScript.from_anchors(frames, [PixelAnchor("centre", 0, 320.0, 240.0, 0, 11)])
    path = tmp_path / "gaze.csv"
    write_gaze_trace(path, trace_from_script(script, frames))
    options = SourceOptions(
        target=str(LIVINGROOM), gaze_file=path, max_frames=12, fps=3.0
    )  # prompts 1.3 s apart: none supersedes another on a busy machine
    config = StreamConfig("folder", options, live_engine.url, TOKEN, Transport.WS, prompt_every=4)
    summary = await run_stream(config, lambda line: None)
    assert summary.frames_sent == 12 and summary.prompts_sent == 3
    assert len(summary.results) == 3, summary.failed
    assert all(r.result.prompt_id <= r.result.frame_id and r.result.masks for r in summary.results)

"""RealSense source without a camera: a recording written by pyrealsense2's own software device
from a shared sequence, played back through the `bag` source (frames, intrinsics, depth scale and
depth bit-exact), then streamed to a live engine over WebRTC and WebSocket and answered."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from clients.session import Transport
from clients.sources.base import Clock, DepthFilters, SourceError, SourceOptions
from clients.sources.folder import open_sequence
from clients.sources.registry import build_source
from clients.stream import PromptMode, StreamConfig, run_stream
from tests.conftest import TOKEN
from tests.test_webrtc_support import TOKEN as RTC_TOKEN
from tests.test_webrtc_support import live_rtc

rs = pytest.importorskip("pyrealsense2", reason="pyrealsense2 has wheels for x86-64 Linux and Windows only")

from clients.sources.realsense_record import record_frames  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rgbd"
LIVINGROOM = DATA / "livingroom1_micro"
TABLETOP = DATA / "tabletop5"
FRAMES = 12


@pytest.fixture(scope="module")
def livingroom_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rs") / "livingroom.db3"
    seq = open_sequence(LIVINGROOM)
    assert record_frames((seq[i] for i in range(FRAMES)), path) == FRAMES
    return path


def _play(path: Path, **options: object) -> tuple[object, list]:
    source = build_source("bag", SourceOptions(target=str(path), **options))  # type: ignore[arg-type]
    info = source.start()
    time.sleep(0.5)  # as `xrseg stream` connecting to the engine: no recorded frame may be lost meanwhile
    frames = []
    try:
        while (item := source.read()) is not None:
            frames.append(item)
    finally:
        source.stop()
    return info, frames


@pytest.mark.parametrize("folder", [LIVINGROOM, TABLETOP], ids=["livingroom1_micro", "tabletop5"])
def test_recording_plays_back_bit_exact(folder: Path, livingroom_recording: Path, tmp_path: Path) -> None:
    seq = open_sequence(folder)
    n = min(len(seq), FRAMES)
    path = livingroom_recording if folder == LIVINGROOM else tmp_path / "t.db3"
    if folder != LIVINGROOM:
        record_frames((seq[i] for i in range(n)), path)
    info, played = _play(path)
    assert not info.live and info.fps == 30.0
    assert info.intrinsics == seq.intrinsics  # tabletop5's 612.937 etc. survive librealsense's float32
    assert info.depth_scale == seq.depth_scale == 1000.0
    assert len(played) == n
    for i, item in enumerate(played):
        expected = seq[i]
        assert item.clock == Clock.RECORDING
        assert item.device_ts == pytest.approx(i / 30.0, abs=1e-6)
        assert item.frame.intrinsics == seq.intrinsics
        assert item.frame.depth.dtype == np.uint16
        assert np.array_equal(item.frame.depth, expected.depth), f"depth of frame {i} differs"
        assert np.array_equal(item.frame.rgb, expected.rgb), f"colour of frame {i} differs"


def test_depth_filters_are_applied(livingroom_recording: Path) -> None:
    _, raw = _play(livingroom_recording, max_frames=3)
    _, filled = _play(livingroom_recording, max_frames=3, filters=DepthFilters(hole_filling=True))
    _, smoothed = _play(livingroom_recording, max_frames=3, filters=DepthFilters(spatial=True, temporal=True))
    assert len(raw) == len(filled) == len(smoothed) == 3
    for a, b, c in zip(raw, filled, smoothed, strict=True):
        assert a.device_ts == b.device_ts == c.device_ts
        valid = a.frame.depth > 0
        assert (
            0 < int((b.frame.depth == 0).sum()) < int((~valid).sum())
        )  # holes filled (not at the left edge)
        assert np.array_equal(b.frame.depth[valid], a.frame.depth[valid])  # measured depth untouched
        assert c.frame.depth.shape == a.frame.depth.shape  # no decimation: same grid as colour
        assert not np.array_equal(c.frame.depth, a.frame.depth)


def test_clear_errors_without_camera_or_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        build_source("bag", SourceOptions(target=str(tmp_path / "missing.bag"))).start()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match=r"\.bag or \.db3"):
        build_source("bag", SourceOptions(target=str(tmp_path / "notes.txt"))).start()
    if len(rs.context().query_devices()) == 0:  # as on CI machines: no camera
        with pytest.raises(SourceError, match="no RealSense camera found"):
            build_source("realsense", SourceOptions()).start()
    frame = open_sequence(TABLETOP)[0]
    with pytest.raises(SourceError, match=r"\.db3"):  # this pyrealsense2 (rosbag2 build) writes .db3 only
        record_frames([frame], tmp_path / "x.bag")


@pytest.mark.parametrize("transport", [Transport.WEBRTC, Transport.WS])
async def test_recording_streams_to_a_live_engine(
    transport: Transport, livingroom_recording: Path, live_engine
) -> None:  # type: ignore[no-untyped-def]
    lines: list[str] = []
    options = SourceOptions(target=str(livingroom_recording), fps=10.0)
    if transport == Transport.WEBRTC:
        async with live_rtc() as live:
            config = StreamConfig(
                "bag",
                options,
                live.url,
                RTC_TOKEN,
                transport,
                prompt_every=4,
                depth_every=1,  # a prompt may be answered on a newer frame (newest wins): it needs depth too
                mode=PromptMode.CLICK,
                loopback=True,
                progress_every_s=0.5,
            )
            summary = await run_stream(config, lines.append)
    else:
        config = StreamConfig(
            "bag",
            options,
            live_engine.url,
            TOKEN,
            transport,
            prompt_every=4,
            mode=PromptMode.CLICK,
            progress_every_s=0.5,
        )
        summary = await run_stream(config, lines.append)
    assert summary.frames_sent == FRAMES and summary.prompts_sent == 3
    assert summary.failed == [] and len(summary.results) == 3
    for timed in summary.results:
        result = timed.result
        assert result.prompt_id <= result.frame_id < FRAMES  # on the frame it named, or a newer one
        assert result.masks and result.masks[result.best].mask.decode().any()
    assert any("frames sent" in line and "answered" in line for line in lines)

"""`xrseg stream`: every failure ends in one clear line and exit code 2, never a traceback; the
webcam source on a machine without a camera; the source registry."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from clients.replies import EngineError
from clients.session import Transport
from clients.sources.base import SourceError, SourceOptions
from clients.sources.registry import SOURCES, build_source
from clients.stream import StreamConfig, explain, run_stream
from xrseg.cli import app

LIVINGROOM = Path(__file__).resolve().parents[2] / "shared" / "data" / "rgbd" / "livingroom1_micro"


def _stream(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["stream", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nope/rec.bag", "--source", "bag"], "recording /nope/rec.bag not found"),
        (["/nope/folder"], "is not a folder"),
        ([str(LIVINGROOM), "--url", "ws://127.0.0.1:9"], "connection refused"),
        ([str(LIVINGROOM), "--transport", "webrtc", "--url", "http://127.0.0.1:9"], "connection refused"),
        (["--source", "kinect"], "unknown source 'kinect'"),
        ([str(LIVINGROOM), "--url", "ftp://x"], "cannot tell the transport"),
        (["--source", "openxr+realsense"], "no OpenXR runtime"),
    ],
)
def test_failures_are_one_clear_line(args: list[str], message: str) -> None:
    code, output = _stream(*args)
    assert code == 2, output
    assert message in output and "Traceback" not in output


def test_webcam_without_camera() -> None:
    probe = cv2.VideoCapture(0)
    present = probe.isOpened()
    probe.release()
    if present:
        pytest.skip("this machine has a webcam")
    with pytest.raises(SourceError, match=r"no webcam at /dev/video0"):
        build_source("webcam", SourceOptions()).start()
    code, output = _stream("--source", "webcam")
    assert code == 2 and "no webcam" in output and "Traceback" not in output


async def test_wrong_token_is_explained(live_engine) -> None:  # type: ignore[no-untyped-def]
    config = StreamConfig(
        "folder", SourceOptions(target=str(LIVINGROOM), max_frames=2), live_engine.url, "wrong", Transport.WS
    )
    with pytest.raises(EngineError) as refused:
        await run_stream(config)
    assert "refused the token" in (explain(refused.value, config) or "")


def test_registry_lists_every_source() -> None:
    assert set(SOURCES) == {"folder", "realsense", "bag", "openxr+realsense", "webcam"}

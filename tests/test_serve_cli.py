"""`xrseg serve` as a user runs it: a real process, a real client, real checkpoints (random weights)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from clients.ws_client import XrsegClient
from engine.core import PointPrompt, Prompt
from engine.protocol import ImageCodec
from models.mobile_sam.build import build_mobile_sam_architecture
from tests.conftest import block_frame


@contextmanager
def serving(tmp_path: Path, *args: str) -> Iterator[str]:
    """Start `xrseg serve` on a free port; yield its ws:// URL once it listens."""
    env = {**os.environ, "XRSEG_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "xrseg", "serve", "--port", "0", "--webrtc-port", "0", "--token", "t0k",
           "--log-level", "WARNING", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if match := re.search(r"ws://[\d.]+:\d+", line):
                yield match.group(0)
                break
        else:
            raise AssertionError("engine exited before listening:\n" + "".join(lines))
    finally:
        proc.terminate()
        assert proc.wait(30) == 0  # SIGTERM is a clean shutdown


async def _one_prompt(url: str) -> tuple[str, int]:
    frame, _ = block_frame(h=96, w=128)
    async with XrsegClient.connect(url, "t0k") as client:
        await client.send_frame(frame, ImageCodec.PNG)
        result = await client.prompt(Prompt(1, frame.frame_id, points=(PointPrompt(40, 48),)), timeout=120)
    return client.welcome.model, len(result.masks)


async def test_serve_geometric(tmp_path: Path) -> None:
    with serving(tmp_path) as url:
        assert await _one_prompt(url) == ("geometric", 3)


async def test_serve_mobile_sam_from_an_official_format_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    checkpoint = tmp_path / "mobile_sam.pt"
    torch.save(build_mobile_sam_architecture().state_dict(), checkpoint)  # the layout of the official file
    with serving(tmp_path, "--model", "mobile_sam", "--checkpoint", str(checkpoint)) as url:
        assert await _one_prompt(url) == ("mobile_sam", 3)


@pytest.mark.parametrize("content", [None, b"PK\x03\x04 not a whole checkpoint"])
def test_serve_refuses_a_missing_or_corrupt_checkpoint_with_a_clear_message(tmp_path: Path, content: bytes | None) -> None:
    checkpoint = tmp_path / "mobile_sam.pt"
    if content is not None:
        checkpoint.write_bytes(content)
    cmd = [sys.executable, "-m", "xrseg", "serve", "--token", "x", "--model", "mobile_sam", "--checkpoint", str(checkpoint)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "300"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out
    assert str(checkpoint) in out and "mobile_sam.pt" in out and "github.com/ChaoningZhang/MobileSAM" in out
    assert ("not found" in out) if content is None else ("corrupt or truncated" in out)

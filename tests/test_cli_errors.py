"""Every `xrseg` command a user can get wrong ends with one clear line on stderr and exit code 2,
never a traceback: run as the user runs it, a real process (`python -m xrseg`), against real
listeners or none.

Cases: a refused connection (WebSocket and WebRTC clients, port with nothing listening), a wrong
token (both transports, a live engine), a bad file (missing and corrupt checkpoint for serve and
demo, missing sequence and clip folders, a missing or bad certificate, a missing token secret).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest

from tests.browser_support import page_server, rgbd_frames, write_sequence_folder

ENV = {**os.environ, "COLUMNS": "300", "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def xrseg(*args: str, timeout: float = 180) -> tuple[int, str, str]:
    """Run `python -m xrseg ARGS` without blocking the event loop (a live engine may share it)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xrseg", *args, env=ENV,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


def assert_one_line(result: tuple[int, str, str], *needles: str) -> None:
    code, out, err = result
    assert "Traceback" not in out + err, out + err
    assert code == 2, (code, out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("xrseg"), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def sequence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sequence_folder(rgbd_frames(3), tmp_path_factory.mktemp("seq") / "room")


@pytest.mark.parametrize("transport", ["ws", "webrtc"])
async def test_refused_connection(sequence: Path, transport: str) -> None:
    scheme = "ws" if transport == "ws" else "http"
    url = f"{scheme}://127.0.0.1:{free_port()}"
    assert_one_line(await xrseg("stream", str(sequence), "--url", url), "connection refused", url)


async def test_refused_connection_webrtc_stream(sequence: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert_one_line(await xrseg("webrtc", "stream", str(sequence), "--url", url), "connection refused", url)


async def test_wrong_token_websocket(live_engine, sequence: Path) -> None:  # type: ignore[no-untyped-def]
    result = await xrseg("stream", str(sequence), "--url", live_engine.url, "--token", "wrong")
    assert_one_line(result, "refused the token", "--token")


async def test_wrong_token_webrtc(sequence: Path) -> None:
    async with page_server("right") as server:
        result = await xrseg("webrtc", "stream", str(sequence), "--url", server.url, "--token", "wrong")
    assert_one_line(result, "refused the token", "--token")


@pytest.mark.parametrize("command", ["serve", "demo"])
@pytest.mark.parametrize("content", [None, b"PK\x03\x04 not a whole checkpoint"])
async def test_missing_or_corrupt_checkpoint(tmp_path: Path, command: str, content: bytes | None) -> None:
    checkpoint = tmp_path / "mobile_sam.pt"
    if content is not None:
        checkpoint.write_bytes(content)
    extra = ["--token", "t"] if command == "serve" else ["--out", str(tmp_path / "out"), "--synthetic", "--max-frames", "2"]
    result = await xrseg(command, "--model", "mobile_sam", "--checkpoint", str(checkpoint), *extra)
    assert_one_line(result, str(checkpoint), "not found" if content is None else "corrupt or truncated")


@pytest.mark.parametrize("content", [None, b"PK\x03\x04 not a whole checkpoint"])
async def test_models_check_of_a_missing_or_corrupt_checkpoint(tmp_path: Path, content: bytes | None) -> None:
    checkpoint = tmp_path / "mobile_sam.pt"
    if content is not None:
        checkpoint.write_bytes(content)
    result = await xrseg("models", "check", str(checkpoint), "--model", "mobile_sam")
    assert_one_line(result, str(checkpoint), "not found" if content is None else "corrupt or truncated")


async def test_missing_sequence_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert_one_line(await xrseg("demo", "--sequence", str(missing), "--out", str(tmp_path)), "--sequence", "is not a folder")
    assert_one_line(await xrseg("stream", str(missing), "--url", "ws://127.0.0.1:9"), "is not a folder")
    assert_one_line(await xrseg("webrtc", "stream", str(missing)), "is not a folder")


async def test_missing_clip_folder(tmp_path: Path) -> None:
    result = await xrseg("serve", "--token", "t", "--clip", str(tmp_path / "nope"))
    assert_one_line(result, "--clip", str(tmp_path / "nope"), "is not a folder")


@pytest.mark.parametrize("exists", [False, True])
async def test_bad_certificate(tmp_path: Path, exists: bool) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    if exists:
        cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        key.write_text("not a key")
    result = await xrseg("serve", "--token", "t", "--tls-cert", str(cert), "--tls-key", str(key), "--port", "0")
    assert_one_line(result, "--tls-cert", "cannot load TLS certificate", str(cert))


async def test_missing_token_secret(tmp_path: Path) -> None:
    missing = tmp_path / "secret"
    assert_one_line(await xrseg("token", "--secret-file", str(missing), "--identity", "a"), str(missing))
    assert_one_line(await xrseg("serve", "--token-secret-file", str(missing)), "--token-secret-file", str(missing))

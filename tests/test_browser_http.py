"""The page's HTTP rules on the engine's aiohttp app: token for data, origins only when configured.

Real engine, real aiohttp server on loopback, real HTTP client; no browser needed (the CORS
headers are what a browser acts on, so they are checked as sent).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import aiohttp
import pytest

from engine.protocol import FrameMessage, decode_message
from tests.browser_support import page_server, rgbd_frames, write_sequence_folder

TOKEN = "http-token"
ELSEWHERE = "https://viewer.example.org"


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sequence_folder(rgbd_frames(2), tmp_path_factory.mktemp("clips") / "room")


async def test_page_is_served_and_clips_need_the_token(clip_folder: Path) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with page_server(TOKEN, clips=(clip_folder,)) as server, aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/") as r:
            assert r.status == 200 and "text/html" in r.content_type
            assert '<script type="module" src="app.js">' in await r.text()
        async with http.get(f"{server.url}/app.js") as r:
            assert r.status == 200 and len(await r.read()) > 10_000
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            async with http.get(f"{server.url}/web/clips", headers=headers) as r:
                assert r.status == 401 and (await r.json())["code"] == "unauthorized"
        async with http.get(f"{server.url}/web/clips", headers=auth) as r:
            assert r.status == 200
            assert (await r.json())["clips"] == [
                {"name": "room", "frames": 2, "width": 640, "height": 480, "fps": 8.0}
            ]
        async with http.get(f"{server.url}/web/clips/room/frames/1", headers=auth) as r:
            assert r.status == 200
            msg = decode_message(await r.read())
        assert isinstance(msg, FrameMessage) and msg.frame.frame_id == 1
        assert msg.frame.depth is not None and msg.frame.depth.any() and msg.frame.pose is not None
        for path in ("room/frames/2", "room/frames/x", "hall/frames/0"):
            async with http.get(f"{server.url}/web/clips/{path}", headers=auth) as r:
                text = await r.text()
                assert r.status == 404 and ("frames 0..1" in text or "no clip 'hall'" in text), text


async def test_other_origins_are_refused_unless_configured(clip_folder: Path) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with page_server(TOKEN, clips=(clip_folder,)) as server, aiohttp.ClientSession() as http:
        own = {"Origin": server.url}
        async with http.get(f"{server.url}/web/clips", headers={**auth, **own}) as r:
            assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
        foreign = {"Origin": ELSEWHERE}
        async with http.get(f"{server.url}/web/clips", headers={**auth, **foreign}) as r:
            body = await r.json()
            assert r.status == 403 and f"--cors-origin {ELSEWHERE}" in body["message"]
        offer = {"sdp": "v=0", "type": "offer", "token": TOKEN}
        async with http.post(f"{server.url}/webrtc/offer", json=offer, headers=foreign) as r:
            assert r.status == 403  # refused before any session is opened
        assert not server.engine.sessions

    async with page_server(TOKEN, clips=(clip_folder,), cors_origins=(ELSEWHERE,)) as server:
        async with aiohttp.ClientSession() as http:
            preflight = {"Origin": ELSEWHERE, "Access-Control-Request-Method": "GET",
                         "Access-Control-Request-Headers": "authorization"}  # fmt: skip
            async with http.options(f"{server.url}/web/clips", headers=preflight) as r:
                assert r.status == 204
                assert r.headers["Access-Control-Allow-Origin"] == ELSEWHERE
                assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
            async with http.get(f"{server.url}/web/clips", headers={**auth, "Origin": ELSEWHERE}) as r:
                assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == ELSEWHERE
            async with http.get(f"{server.url}/web/clips", headers={"Origin": ELSEWHERE}) as r:
                assert r.status == 401  # an allowed origin still needs the token
                assert r.headers["Access-Control-Allow-Origin"] == ELSEWHERE  # so its page can read why
            async with http.get(f"{server.url}/web/clips", headers={"Origin": "https://evil.example"}) as r:
                assert r.status == 403


async def test_xrseg_serve_prints_the_page_url(tmp_path: Path, clip_folder: Path) -> None:
    """What the README's quick start says: run `xrseg serve`, open the printed URL, get the page."""
    env = {**os.environ, "XRSEG_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    with socket.socket() as s:  # a free port for the page (--webrtc-port 0 means "no WebRTC")
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "xrseg", "serve", "--port", "0", "--webrtc-port", str(port),
           "--token", "t0k", "--clip", str(clip_folder), "--log-level", "WARNING"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    watchdog = threading.Timer(120, proc.kill)  # never wait forever on a silent process
    watchdog.start()
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if match := re.search(r"web page: (http://[\d.]+:\d+)/#token=t0k", line):
                break
        else:
            raise AssertionError("xrseg serve exited before printing the page URL:\n" + "".join(seen))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{match.group(1)}/") as r:
                assert r.status == 200 and "<title>xrseg</title>" in await r.text()
            async with http.get(f"{match.group(1)}/web/clips", headers={"Authorization": "Bearer t0k"}) as r:
                assert [c["name"] for c in (await r.json())["clips"]] == ["room"]
    finally:
        watchdog.cancel()
        proc.terminate()
        assert proc.wait(30) == 0

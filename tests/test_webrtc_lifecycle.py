"""Peers come and go: a killed client is noticed, its session resumes by token, then is reaped.

The first client runs in its own process and is killed with SIGKILL mid-stream, as a crashed
headset app would be: it sends no bye, no DTLS close, nothing.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from clients.sources.folder import open_sequence
from clients.webrtc_client import XrsegRtcClient
from clients.ws_client import EngineError
from engine.config import EngineConfig
from engine.core import PointPrompt, Prompt
from engine.protocol import ErrorCode
from engine.transport.webrtc import WebRTCConfig
from tests.test_webrtc_support import CLIENT, LIVINGROOM, LOOPBACK, TOKEN, live_rtc

REPO = Path(__file__).resolve().parent.parent

# The doomed client: send 6 frames, get one answer, say which session it is, then idle (keepalives only).
DOOMED = """
import asyncio, sys, time
from dataclasses import replace
from clients.sources.folder import open_sequence
from clients.webrtc_client import RtcClientOptions, XrsegRtcClient
from engine.core import PointPrompt, Prompt

async def main(url, token, folder):
    seq = open_sequence(folder)
    options = RtcClientOptions(host_addresses=("127.0.0.1",), keepalive_s=0.2)
    client = await XrsegRtcClient.connect(url, token, "doomed", options=options)
    for i in range(6):  # a burst: depth only where the prompt needs it
        await client.send_frame(replace(seq[i], capture_ts=time.time()), with_depth=i == 5)
    click = Prompt(prompt_id=1, frame_id=seq[5].frame_id, points=(PointPrompt(320.0, 240.0),))
    await client.prompt(click, 60)
    print("SESSION", client.session_id, flush=True)
    await asyncio.Event().wait()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_killed_client_is_noticed_resumed_by_token_then_reaped() -> None:
    config = EngineConfig(tokens=(TOKEN,), session_linger_s=2.0)
    rtc = WebRTCConfig(port=0, host_addresses=LOOPBACK, idle_timeout_s=1.5)
    async with live_rtc(config, rtc) as live:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", DOOMED, live.url, TOKEN, str(LIVINGROOM),
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=asyncio.subprocess.PIPE,  # its stderr shows in the test report if it fails
        )  # fmt: skip
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line.startswith("SESSION "), f"doomed client did not start: {line!r}"
            session_id = line.split()[1]
            peer = live.transport.peers[session_id]
            session = live.engine.sessions[session_id]
            received = session.stats.frames_received
            assert received >= 1
        finally:
            proc.kill()  # SIGKILL: no bye, no close
            await proc.wait()

        await asyncio.wait_for(peer.closed.wait(), 10)  # the idle watchdog noticed
        assert session_id not in live.transport.peers
        assert session_id in live.engine.sessions and session.detached_at is not None

        reaped = asyncio.Event()
        close_session = live.engine.close_session

        async def watch(s):  # instrumentation: note when the reaper frees the session
            await close_session(s)
            if s.session_id == session_id:
                reaped.set()

        live.engine.close_session = watch  # type: ignore[method-assign]

        seq = open_sequence(LIVINGROOM)
        async with XrsegRtcClient.connect(live.url, TOKEN, session_id=session_id, options=CLIENT) as client:
            assert client.session_id == session_id
            assert (await client.stats()).frames_received == received  # the session's state survived
            frame = replace(seq[10], capture_ts=time.time())
            await client.send_frame(frame)
            prompt = Prompt(prompt_id=2, frame_id=frame.frame_id, points=(PointPrompt(320.0, 240.0),))
            result = await client.prompt(prompt, 60)
            assert result.frame_id == frame.frame_id
            await client.close(bye=False)  # gone without a word again; this time nobody comes back

        await asyncio.wait_for(reaped.wait(), 15)
        assert session_id not in live.engine.sessions
        with pytest.raises(EngineError) as info:
            await XrsegRtcClient.connect(live.url, TOKEN, session_id=session_id, options=CLIENT)
        assert info.value.code == ErrorCode.UNAUTHORIZED

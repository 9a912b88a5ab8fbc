"""Bad input over WebRTC: each malformed thing gets a coded error, and no session goes down.

Two real clients: one sends every kind of garbage on both data channels, the other streams
normally beside it; afterwards both still get answers. Signalling refuses bad offers with JSON
errors and leaks no session; health and metrics answer.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from dataclasses import replace

import aiohttp

from clients.sources.folder import open_sequence
from clients.webrtc_client import XrsegRtcClient
from engine.config import EngineConfig
from engine.core import PointPrompt, Prompt
from engine.protocol import DepthCodec, ErrorCode, ImageCodec, Limits
from engine.protocol.chunking import CHUNK_MAGIC
from engine.protocol.codec import encode_frame
from tests.test_webrtc_support import CLIENT, LIVINGROOM, TOKEN, live_rtc


def _header_only(header: dict) -> bytes:
    raw = json.dumps(header).encode()
    return b"XRSG" + struct.pack("<I", len(raw)) + raw


async def _answered(client: XrsegRtcClient, frame, prompt_id: int) -> None:
    frame = replace(frame, capture_ts=time.time())
    await client.send_frame(frame)
    prompt = Prompt(prompt_id=prompt_id, frame_id=frame.frame_id, points=(PointPrompt(320.0, 240.0),))
    result = await client.prompt(prompt, 60)
    assert result.frame_id == frame.frame_id and result.masks


async def test_malformed_messages_get_coded_errors_and_sessions_survive() -> None:
    seq = open_sequence(LIVINGROOM)
    config = EngineConfig(tokens=(TOKEN,), limits=Limits(max_message_bytes=256 * 1024))
    async with (
        live_rtc(config) as live,
        XrsegRtcClient.connect(live.url, TOKEN, "bad", options=CLIENT) as bad,
        XrsegRtcClient.connect(live.url, TOKEN, "good", options=CLIENT) as good,
    ):
        await _answered(bad, seq[0], 1)
        corrupt_depth = encode_frame(seq[3], ImageCodec.VIDEO, DepthCodec.RDZ).replace(
            b"XD\x01", b"XX\x01", 1
        )
        chunk = struct.Struct("<2sBBIHH")
        cases = [
            (b"\x00garbage", ErrorCode.MALFORMED, None),
            ("this is not json", ErrorCode.MALFORMED, None),
            (_header_only({"v": 1, "type": "teleport"}), ErrorCode.UNKNOWN_TYPE, None),
            (_header_only({"v": 99, "type": "prompt"}), ErrorCode.UNSUPPORTED_VERSION, None),
            (
                _header_only({"v": 1, "type": "prompt", "prompt_id": 7, "frame_id": 0, "items": []}),
                ErrorCode.BAD_PROMPT,
                7,
            ),
            (corrupt_depth, ErrorCode.BAD_DEPTH, seq[3].frame_id),
            (
                chunk.pack(CHUNK_MAGIC, 1, 0, 9, 0, 60000) + b"x",
                ErrorCode.TOO_LARGE,
                None,
            ),  # 60000 chunks claimed
            (
                chunk.pack(CHUNK_MAGIC, 1, 0, 10, 1, 2) + b"x",
                ErrorCode.MALFORMED,
                None,
            ),  # chunk 1 without chunk 0
        ]
        for data, code, ref_id in cases:
            await bad.send_raw(data)
            error = await bad.next_error(30)
            assert (error.code, error.ref_id) == (code, ref_id), (data[:40], error)
        bad.channel.gaze.send(_header_only({"v": 1, "type": "ping", "t": 1.0}))  # gaze channel: prompts only
        assert (await bad.next_error(30)).code == ErrorCode.INVALID_FIELD
        bad.channel.send_chunked(b"XRSG" + b"\0" * (300 * 1024))  # chunked by the client, over the 256 KiB limit
        assert (await bad.next_error(30)).code == ErrorCode.TOO_LARGE
        await bad.stats()  # a round trip: everything sent before it has been handled
        assert bad._replies.errors.empty(), "one refused message must cost one error, not one per chunk"

        await _answered(good, seq[1], 2)
        await _answered(bad, seq[2], 3)  # the misbehaving session is still fine
        errors = {sid: peer.session.stats.errors_sent for sid, peer in live.transport.peers.items()}
        assert errors == {bad.session_id: len(cases) + 2, good.session_id: 0}


async def test_signalling_refuses_bad_offers_and_reports_health() -> None:
    async with live_rtc() as live, aiohttp.ClientSession() as http:
        url = f"{live.url}/webrtc/offer"
        bad_offers = [
            ({"sdp": "v=0", "type": "offer", "token": "wrong"}, 401, ErrorCode.UNAUTHORIZED),
            ({"sdp": "v=0", "type": "offer"}, 401, ErrorCode.UNAUTHORIZED),
            ({"type": "offer", "token": TOKEN}, 400, ErrorCode.INVALID_FIELD),
            (
                {"sdp": "v=0", "type": "offer", "token": TOKEN, "video_pts_per_frame": 0},
                400,
                ErrorCode.INVALID_FIELD,
            ),
            (
                {"sdp": "v=0", "type": "offer", "token": TOKEN, "session_id": "nope"},
                401,
                ErrorCode.UNAUTHORIZED,
            ),
            ({"sdp": "this is not sdp", "type": "offer", "token": TOKEN}, 400, ErrorCode.MALFORMED),
            (
                {"sdp": "v=0\r\nm=audio 9 RTP/AVP 0\r\n", "type": "offer", "token": TOKEN},
                400,
                ErrorCode.MALFORMED,
            ),
        ]
        for body, status, code in bad_offers:
            async with http.post(url, json=body) as response:
                assert response.status == status, body
                assert (await response.json())["code"] == code
        async with http.post(url, data=b"{not json") as response:
            assert response.status == 400 and (await response.json())["code"] == ErrorCode.MALFORMED
        async with http.post(url, data=b"x" * (live.transport.config.max_offer_bytes + 1)) as response:
            assert response.status == 413
        assert live.engine.sessions == {} and live.transport.peers == {}  # nothing leaked
        async with http.get(f"{live.url}/health") as response:
            assert response.status == 401  # health and metrics need a bearer token
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with http.get(f"{live.url}/health", headers=auth) as response:
            assert await response.json() == {"status": "ok", "sessions": 0, "peers": 0}


async def test_unreliable_gaze_channel_answers_on_loopback() -> None:
    """Gaze prompts travel unordered without retransmission; on loopback they arrive and are answered."""
    seq = open_sequence(LIVINGROOM)
    async with live_rtc() as live, XrsegRtcClient.connect(live.url, TOKEN, options=CLIENT) as client:
        frame = replace(seq[0], capture_ts=time.time())
        await client.send_frame(frame)
        futures = [
            client.gaze_nowait(
                Prompt(prompt_id=i, frame_id=frame.frame_id, points=(PointPrompt(300.0 + i, 240.0),))
            )
            for i in range(3)
        ]
        done, _ = await asyncio.wait(futures, timeout=60)
        assert done, "no gaze-channel prompt was answered"
        for future in done:
            assert future.result().result.frame_id == frame.frame_id

"""Hostile clients over real aiortc peers on loopback: a malformed message must not kill the
peer's message loop (before, the peer stayed "connected", never answered and was never freed),
and a flood is dropped and counted while another peer keeps being answered."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace

import psutil

from clients.sources.folder import open_sequence
from clients.webrtc_client import XrsegRtcClient
from engine.admission import AdmissionConfig
from engine.config import EngineConfig
from engine.core import PointPrompt, Prompt
from engine.protocol import PromptMessage, encode_message
from engine.transport.webrtc import WebRTCConfig
from tests.test_fuzz_protocol import CRASHERS
from tests.test_webrtc_support import CLIENT, LIVINGROOM, LOOPBACK, TOKEN, live_rtc

RSS_BOUND = 200 * 1024 * 1024


async def _answered(client: XrsegRtcClient, frame, prompt_id: int) -> None:
    frame = replace(frame, capture_ts=time.time())
    await client.send_frame(frame)
    result = await client.prompt(Prompt(prompt_id, frame.frame_id, points=(PointPrompt(320.0, 240.0),)), 60)
    assert result.frame_id == frame.frame_id and result.masks


async def test_handler_crash_inputs_get_coded_errors_and_the_peer_keeps_answering() -> None:
    seq = open_sequence(LIVINGROOM)
    rss0 = psutil.Process(os.getpid()).memory_info().rss
    async with (
        live_rtc(EngineConfig(tokens=(TOKEN,))) as live,
        XrsegRtcClient.connect(live.url, TOKEN, "bad", options=CLIENT) as bad,
        XrsegRtcClient.connect(live.url, TOKEN, "good", options=CLIENT) as good,
    ):
        await _answered(bad, seq[0], 1)
        for case, (data, code) in CRASHERS.items():
            if case in ("10^6 points", "missing token", "lone surrogate in token"):
                continue  # 35 MB over SCTP (too_large by size) / hello-only cases (tests/test_hostile_ws.py)
            if isinstance(data, str):
                if len(data.encode()) > 15000:
                    continue  # too big for one text data-channel message (sent as text over the WebSocket)
                await bad.send_raw(data)
            else:
                bad.channel.send_chunked(data)
            error = await bad.next_error(30)
            assert error.code == code, (case, error)
        peer = live.transport.peers[bad.session_id]
        assert all(not t.done() for t in peer._tasks[:2]), "the peer's message loop and watchdog are alive"
        await _answered(bad, seq[5], 2)
        await _answered(good, seq[6], 3)
        assert (await good.stats()).prompts_dropped == 0
    assert psutil.Process(os.getpid()).memory_info().rss - rss0 < RSS_BOUND


# A tighter inbound rate than the default, so that a flood aiortc's own client can sustain exceeds it
# (the 5,000-message flood at full speed is tests/test_hostile_ws.py).
FLOOD_CONFIG = EngineConfig(tokens=(TOKEN,), admission=AdmissionConfig(messages_per_s=50, message_burst=100))


async def test_a_message_flood_is_dropped_and_counted_and_the_other_peer_answered() -> None:
    seq = open_sequence(LIVINGROOM)
    async with (
        live_rtc(FLOOD_CONFIG, WebRTCConfig(port=0, host_addresses=LOOPBACK, idle_timeout_s=60)) as live,
        XrsegRtcClient.connect(live.url, TOKEN, "flood", options=CLIENT) as flood,
        XrsegRtcClient.connect(live.url, TOKEN, "good", options=CLIENT) as good,
    ):
        await _answered(flood, seq[0], 1)
        frame_id = seq[0].frame_id
        for pid in range(2, 1002):
            flood.channel.send_chunked(
                encode_message(PromptMessage(Prompt(pid, frame_id, points=(PointPrompt(300.0, 240.0),))))
            )
            if pid % 50 == 0:
                await asyncio.sleep(
                    0.25
                )  # 200 messages/s, 4x the limit; aiortc's SCTP dropped the association on faster bursts
        for i in range(5):
            await _answered(good, seq[3 + i], 100 + i)
        assert (await good.stats()).prompts_dropped == 0
        deadline = time.monotonic() + 60
        while flood.channel.control.bufferedAmount > 0 and time.monotonic() < deadline:  # all 5000 delivered
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        peer = live.transport.peers.get(flood.session_id)
        assert peer is not None, ("the flooding peer is still connected", flood.channel.pc.connectionState)

        def refused() -> float:
            sample = live.engine.metrics.registry.get_sample_value
            return sum(
                sample("xrseg_messages_refused_total", {"transport": "webrtc", "reason": r}) or 0.0
                for r in ("rate", "inbox_full")
            )

        while peer.session.stats.prompts_received + refused() < 1000 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # the last ones are still in the peer's inbox
        assert refused() > 0  # bounded: refused at the door, and counted
        assert peer.session.stats.prompts_received + refused() >= 1000  # (+ its keepalive pings)
        await asyncio.sleep(2.5)  # the bucket refills: the flooder itself is answered again
        await _answered(flood, seq[9], 9999)

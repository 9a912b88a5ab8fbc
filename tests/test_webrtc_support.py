"""Shared pieces of the WebRTC tests: a live engine with its WebRTC front door on loopback.

Every peer here gathers ICE candidates on 127.0.0.1 only and uses no STUN server, so no packet
leaves the loopback interface (checked on the SDPs by assert_loopback_only).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from clients.webrtc_client import RtcClientOptions, XrsegRtcClient
from engine.config import EngineConfig
from engine.server import Engine
from engine.transport.webrtc import WebRTCConfig, WebRTCTransport

TOKEN = "rtc-test-token"
LOOPBACK = ("127.0.0.1",)
LIVINGROOM = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "rgbd" / "livingroom1_micro"
CLIENT = RtcClientOptions(host_addresses=LOOPBACK, keepalive_s=0.3)


@dataclass
class LiveRtc:
    engine: Engine
    transport: WebRTCTransport

    @property
    def url(self) -> str:
        return self.transport.url


@asynccontextmanager
async def live_rtc(
    config: EngineConfig | None = None, rtc: WebRTCConfig | None = None
) -> AsyncIterator[LiveRtc]:
    """An Engine (geometric model) and a started WebRTCTransport on 127.0.0.1, both stopped after."""
    config = config or EngineConfig(tokens=(TOKEN,))
    rtc = rtc or WebRTCConfig(port=0, host_addresses=LOOPBACK)
    async with Engine(config) as engine:
        transport = WebRTCTransport(engine, rtc)
        await transport.start()
        try:
            yield LiveRtc(engine, transport)
        finally:
            await transport.stop()


def assert_loopback_only(client: XrsegRtcClient) -> None:
    """Both SDPs offer only 127.0.0.1 candidates: no traffic can leave the machine."""
    for sdp in (client.channel.pc.localDescription.sdp, client.channel.pc.remoteDescription.sdp):
        addresses = set(re.findall(r"a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ", sdp))
        assert addresses == {"127.0.0.1"}, f"non-loopback ICE candidates offered: {addresses}"

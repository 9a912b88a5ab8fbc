"""Fixtures that build real things small: a ray-cast-free RGB-D frame, a live engine on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np
import pytest

from engine.config import EngineConfig
from engine.core import CameraIntrinsics, Pose, RGBDFrame
from engine.protocol import Limits
from engine.server import Engine
from engine.transport.websocket import WebSocketTransport

TOKEN = "test-token"


def block_frame(frame_id: int = 1, h: int = 120, w: int = 160, depth_scale: float = 1000.0) -> tuple[RGBDFrame, np.ndarray]:
    """A grey wall 2 m away with a red block 1.4 m away: (frame, true block mask (H, W) bool)."""
    yy, xx = np.mgrid[0:h, 0:w]
    block = (xx >= w // 4) & (xx < w // 2) & (yy >= h // 3) & (yy < 2 * h // 3)
    rgb = np.full((h, w, 3), 150, np.uint8)
    rgb[block] = (200, 40, 30)
    depth_m = np.where(block, 1.4, 2.0) + 0.002 * np.sin(xx / 3.0)
    depth = np.round(depth_m * depth_scale).astype(np.uint16)
    k = CameraIntrinsics(w, h, 130.0, 130.0, w / 2 - 0.5, h / 2 - 0.5)
    return RGBDFrame(frame_id, rgb, depth, k, depth_scale, Pose.identity(), 0.0), block


@dataclass
class LiveEngine:
    engine: Engine
    transport: WebSocketTransport

    @property
    def url(self) -> str:
        return self.transport.url


@asynccontextmanager
async def serve_live(config: EngineConfig) -> AsyncIterator[LiveEngine]:
    """An engine with its WebSocket transport on a free loopback port, stopped on exit."""
    async with Engine(config) as engine:
        transport = WebSocketTransport(engine, "127.0.0.1", 0)
        await transport.start()
        try:
            yield LiveEngine(engine, transport)
        finally:
            await transport.stop()


@pytest.fixture
async def live_engine() -> AsyncIterator[LiveEngine]:
    config = EngineConfig(port=0, tokens=(TOKEN,), limits=Limits(max_message_bytes=1 << 20), session_linger_s=60.0)
    async with serve_live(config) as live:
        yield live

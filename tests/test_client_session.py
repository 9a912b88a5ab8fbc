"""One ClientSession API over both transports: the same calls (hello, frames, prompt, track,
cancel, stats, resume, close) against a real engine over a real WebSocket and real aiortc peers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import pytest

from clients.channel import ChannelClosed
from clients.replies import EngineError
from clients.session import ClientSession, Transport
from clients.sources.synthetic import (
    DepthDegradation,
    default_intrinsics,
    make_scene,
    orbit_poses,
    render_sequence,
)
from clients.webrtc_client import WebRTCChannel
from clients.ws_client import WebSocketChannel
from engine.config import EngineConfig
from engine.core import BoxPrompt, PointPrompt, Prompt
from engine.protocol import ErrorCode, ResultKind
from engine.server import Engine
from engine.tracking import interior_point
from engine.transport.webrtc import WebRTCConfig, WebRTCTransport
from engine.transport.websocket import WebSocketTransport
from tests.test_webrtc_support import CLIENT, LOOPBACK

TOKEN = "session-token"
K = default_intrinsics(320, 240, 262.5, 262.5)


@asynccontextmanager
async def engine_url(transport: Transport) -> AsyncIterator[str]:
    """A real engine with the given front door on 127.0.0.1; yields the URL a client connects to."""
    async with Engine(EngineConfig(port=0, tokens=(TOKEN,), session_linger_s=30.0)) as engine:
        door = (
            WebSocketTransport(engine, "127.0.0.1", 0)
            if transport == Transport.WS
            else WebRTCTransport(engine, WebRTCConfig(port=0, host_addresses=LOOPBACK))
        )
        await door.start()
        try:
            yield door.url
        finally:
            await door.stop()


def _select(synth, object_id: int, prompt_id: int) -> Prompt:  # type: ignore[no-untyped-def]
    visible = synth.visible_mask(object_id)
    ys, xs = np.nonzero(visible)
    x, y = interior_point(visible & (synth.frame.depth_m > 0))
    box = BoxPrompt(float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
    return Prompt(prompt_id, synth.frame.frame_id, points=(PointPrompt(x, y),), box=box)


@pytest.mark.parametrize("transport", [Transport.WS, Transport.WEBRTC])
async def test_same_session_api_on_both_transports(transport: Transport) -> None:
    scene = make_scene(3)
    frames = render_sequence(scene, orbit_poses(scene, 100)[:8], K, DepthDegradation(), seed=2)
    target = max(scene.object_ids, key=lambda o: frames[0].visible_mask(o).sum())
    async with engine_url(transport) as url:
        client = await ClientSession.connect(
            url, TOKEN, "api-test", options=CLIENT
        )  # scheme picks the channel
        assert isinstance(client.channel, WebSocketChannel if transport == Transport.WS else WebRTCChannel)
        await client.send_frame(frames[0].frame)
        first = await asyncio.wait_for(client.track(_select(frames[0], target, 3)), 60)
        assert first.kind is ResultKind.ANSWER and first.result.frame_id == 0 and first.result.masks
        for synth in frames[1:5]:
            await client.send_frame(synth.frame)
            update = await client.next_result(60)
            assert update.kind is ResultKind.TRACK and update.result.prompt_id == 3
            assert update.result.frame_id == synth.frame.frame_id
        await client.cancel(3)
        tracked = (await client.stats()).track_results
        assert tracked == 4
        await client.send_frame(frames[5].frame)
        answer = await client.prompt(_select(frames[5], target, 4), 60)
        assert answer.frame_id == 5
        stats = await client.ping()
        assert stats.track_results == tracked and stats.prompts_answered == 2  # nothing tracked after cancel
        with pytest.raises(EngineError) as refused:  # an error tied to its prompt fails that prompt's future
            await client.prompt(Prompt(9, 5, points=(PointPrompt(5000.0, 1.0),)), 60)
        assert refused.value.code == ErrorCode.BAD_PROMPT and refused.value.ref_id == 9

        session_id = client.session_id
        await client.close(bye=False)  # gone without a word: the session lingers and can be resumed
        await client.close()  # idempotent
        async with ClientSession.connect(url, TOKEN, session_id=session_id, options=CLIENT) as again:
            assert again.session_id == session_id
            assert (await again.stats()).prompts_answered == 2  # the session's state survived
            await again.send_frame(frames[6].frame)
            assert (await again.prompt(_select(frames[6], target, 5), 60)).frame_id == 6
        with pytest.raises(ChannelClosed):
            await again.channel.send(b"x")


@pytest.mark.parametrize("transport", [Transport.WS, Transport.WEBRTC])
async def test_wrong_token_is_refused_with_its_code(transport: Transport) -> None:
    async with engine_url(transport) as url:
        with pytest.raises(EngineError) as refused:
            await ClientSession.connect(url, "wrong", options=CLIENT)
    assert refused.value.code == ErrorCode.UNAUTHORIZED


def test_transport_from_url() -> None:
    assert Transport.for_url("ws://h:1") == Transport.WS and Transport.for_url("wss://h") == Transport.WS
    assert Transport.for_url("http://h:8766") == Transport.WEBRTC
    with pytest.raises(ValueError, match="ws://"):
        Transport.for_url("ftp://h")

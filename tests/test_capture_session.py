"""3D capture through the protocol: a tracked object, capture start, frames, stop -> a stored mesh.

A real engine and WebSocket transport on loopback, the Python client's capture API, and the
engine's capture store on disk: the whole path a headset or camera client takes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from clients.session import ClientSession
from engine.config import EngineConfig
from engine.core import PointPrompt, Prompt
from engine.protocol import ErrorCode, ImageCodec, ResultKind
from engine.protocol.capture import CaptureAction, CaptureProgressMessage, CaptureSaved
from engine.server import Engine
from engine.tracking import interior_point
from engine.transport.websocket import WebSocketTransport
from tests.capture_scenes import capture_sequence
from tests.conftest import TOKEN


async def test_capture_of_a_tracked_object_over_the_protocol(tmp_path: Path) -> None:
    _, oid, frames = capture_sequence(seed=1, n=24, count=14)
    x, y = interior_point(frames[0].visible_mask(oid) & (frames[0].frame.depth_m > 0))
    config = EngineConfig(port=0, tokens=(TOKEN,), capture_dir=tmp_path, warm_up=False)
    async with Engine(config) as engine:
        transport = WebSocketTransport(engine, "127.0.0.1", 0)
        await transport.start()
        try:
            async with ClientSession.connect(transport.url, TOKEN) as client:
                await client.send_frame(frames[0].frame, ImageCodec.PNG)
                await asyncio.wait_for(
                    client.prompt_nowait(Prompt(1, 0, points=(PointPrompt(x, y),)), track=True), 60
                )
                await client.capture(CaptureAction.START, 7)  # prompt 7 tracks nothing
                refused = await client.next_error(30)
                assert refused.code is ErrorCode.CAPTURE_FAILED and refused.ref_id == 7
                await client.capture(CaptureAction.START, 1, name="red box")
                started = await client.next_capture()
                assert isinstance(started, CaptureProgressMessage) and started.prompt_id == 1
                for synth in frames[1:]:
                    await client.send_frame(synth.frame, ImageCodec.PNG)
                    update = await client.next_result(60)
                    while (
                        update.kind is not ResultKind.TRACK or update.result.frame_id != synth.frame.frame_id
                    ):
                        update = await client.next_result(60)
                await client.capture(CaptureAction.STOP, 1)
                saved = await client.next_capture(120)
                while not isinstance(saved, CaptureSaved):
                    saved = await client.next_capture(120)
        finally:
            await transport.stop()
        store = await engine.capture_store()
    assert saved.prompt_id == 1 and saved.name == "red box" and saved.frames >= 8 and saved.triangles > 50
    stored = store.get(saved.capture_id)
    names = {f.name for f in stored.files}
    assert {"mesh.ply", "mesh.obj", "mesh.glb", "view0.png"} <= names
    assert len(store.read(saved.capture_id, "mesh.glb")) > 1000

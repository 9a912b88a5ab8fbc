"""The engine over a real WebSocket: answers, isolation between sessions, bad input, resume."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import cv2
import numpy as np
import pytest

from clients.ws_client import EngineError, XrsegClient
from engine.core import BoxPrompt, PointPrompt, Prompt
from engine.masks.metrics import mask_iou
from engine.protocol import ErrorCode, ImageCodec, pack
from tests.conftest import TOKEN, LiveEngine, block_frame


async def test_point_prompt_returns_masks_and_a_3d_segment(live_engine: LiveEngine) -> None:
    frame, block = block_frame()
    async with XrsegClient.connect(live_engine.url, TOKEN) as client:
        assert client.welcome.model == "geometric"
        await client.send_frame(frame, ImageCodec.PNG)
        result = await client.prompt(Prompt(1, frame.frame_id, points=(PointPrompt(60, 60),)))
    assert result.prompt_id == 1 and result.frame_id == frame.frame_id and len(result.masks) == 3
    best = result.masks[result.best].mask.decode()
    assert mask_iou(best, block) > 0.9
    seg = result.segment
    assert seg is not None and seg.status == "ok" and seg.frame == "world"
    assert abs(seg.centroid[2] - 1.4) < 0.02 and len(seg.points) > 10
    ts = result.timestamps
    assert ts.receive <= ts.frame_decode <= ts.encode <= ts.decode <= ts.lift <= ts.send


async def test_box_prompt_and_embedding_reuse(live_engine: LiveEngine) -> None:
    frame, block = block_frame()
    async with XrsegClient.connect(live_engine.url, TOKEN) as client:
        await client.send_frame(frame, ImageCodec.PNG)
        first = await client.prompt(Prompt(1, frame.frame_id, box=BoxPrompt(38, 38, 82, 82)))
        second = await client.prompt(Prompt(2, frame.frame_id, points=(PointPrompt(10, 10),)))
        stats = await client.stats()
    assert mask_iou(first.masks[first.best].mask.decode(), block) > 0.8
    wall = second.masks[second.best].mask.decode()
    assert (wall & block).sum() < 0.05 * block.sum() and wall.sum() > 0.5 * (~block).sum()  # the wall, not the block
    assert stats.frames_decoded == 1 and stats.prompts_answered == 2


async def test_bad_input_gets_coded_errors_while_another_session_keeps_working(live_engine: LiveEngine) -> None:
    frame, block = block_frame()
    async with XrsegClient.connect(live_engine.url, TOKEN, "good") as good, XrsegClient.connect(
        live_engine.url, TOKEN, "bad"
    ) as bad:
        await good.send_frame(frame, ImageCodec.PNG)

        async def good_prompt(pid: int) -> None:
            result = await good.prompt(Prompt(pid, frame.frame_id, points=(PointPrompt(60, 60),)))
            assert mask_iou(result.masks[result.best].mask.decode(), block) > 0.9

        await good_prompt(1)
        # prompt before any frame
        with pytest.raises(EngineError) as info:
            await bad.prompt(Prompt(1, 1, points=(PointPrompt(5, 5),)))
        assert info.value.code == ErrorCode.NO_FRAME
        # malformed bytes, unknown message type, unsupported version
        for data, code in [
            (b"\x00garbage bytes", ErrorCode.MALFORMED),
            (json.dumps({"v": 1, "type": "teleport"}), ErrorCode.UNKNOWN_TYPE),
            (json.dumps({"v": 9, "type": "ping", "t": 0}), ErrorCode.UNSUPPORTED_VERSION),
            (json.dumps({"v": 1, "type": "result"}), ErrorCode.UNKNOWN_TYPE),
        ]:
            await bad.send_raw(data)
            assert (await bad.next_error()).code == code
        await good_prompt(2)
        # oversized message (engine limit in the fixture: 1 MiB)
        await bad.send_raw(b"XRSG" + b"\x00" * (2 << 20))
        assert (await bad.next_error()).code == ErrorCode.TOO_LARGE
        # wrong image size (header says 160x120, colour is 80x60) and depth/colour size mismatch:
        # both reported when the frame arrives, naming the frame
        small, _ = block_frame(2, h=60, w=80)
        header = {"type": "frame", "frame_id": 2, "width": 160, "height": 120,
                  "intrinsics": {"fx": 130, "fy": 130, "cx": 80, "cy": 60}}
        rgb_small = cv2.imencode(".png", small.rgb)[1].tobytes()
        rgb_full = cv2.imencode(".png", frame.rgb)[1].tobytes()
        depth_small = cv2.imencode(".png", small.depth)[1].tobytes()
        await bad.send_raw(pack(header, [("rgb", "png", rgb_small)]))
        err = await bad.next_error()
        assert err.code == ErrorCode.BAD_IMAGE and err.ref_id == 2 and "80x60" in err.message
        await bad.send_raw(pack(header, [("rgb", "png", rgb_full), ("depth", "png16", depth_small)]))
        err = await bad.next_error()
        assert err.code == ErrorCode.BAD_DEPTH and err.ref_id == 2
        # all-zero depth and NaN depth: the geometric model needs depth
        zero = replace(frame, frame_id=3, depth=np.zeros_like(frame.depth))
        await bad.send_frame(zero, ImageCodec.PNG)
        with pytest.raises(EngineError) as info:  # the error names the prompt (33), not the frame (3)
            await bad.prompt(Prompt(33, 3, points=(PointPrompt(60, 60),)))
        assert info.value.code == ErrorCode.BAD_DEPTH and "no valid depth" in info.value.message
        nan = replace(frame, frame_id=4, depth=np.full(frame.depth.shape, np.nan, np.float32), depth_scale=1.0)
        await bad.send_frame(nan, ImageCodec.PNG)
        with pytest.raises(EngineError) as info:
            await bad.prompt(Prompt(4, 4, points=(PointPrompt(60, 60),)))
        assert info.value.code == ErrorCode.BAD_DEPTH
        await good_prompt(3)
        # prompts outside the image, unknown prompt types, text without a text encoder
        await bad.send_frame(frame, ImageCodec.PNG)
        with pytest.raises(EngineError) as info:
            await bad.prompt(Prompt(5, frame.frame_id, points=(PointPrompt(500, 5),)))
        assert info.value.code == ErrorCode.BAD_PROMPT and "outside" in info.value.message
        await bad.send_raw(json.dumps({"v": 1, "type": "prompt", "prompt_id": 6, "frame_id": 1, "items": [{"type": "lasso"}]}))
        err = await bad.next_error()
        assert err.code == ErrorCode.UNKNOWN_PROMPT and err.ref_id == 6
        with pytest.raises(EngineError) as info:
            await bad.prompt(Prompt(7, frame.frame_id, text="the mug"))
        assert info.value.code == ErrorCode.UNSUPPORTED_PROMPT
        # after all that, the bad session itself still answers good prompts
        result = await bad.prompt(Prompt(8, frame.frame_id, points=(PointPrompt(60, 60),)))
        assert mask_iou(result.masks[result.best].mask.decode(), block) > 0.9
        await good_prompt(4)
        bad_stats, good_stats = await bad.stats(), await good.stats()
    assert bad_stats.errors_sent == 13 and good_stats.errors_sent == 0 and good_stats.prompts_answered == 4


async def test_wrong_token_is_refused_and_other_sessions_unaffected(live_engine: LiveEngine) -> None:
    frame, _ = block_frame()
    async with XrsegClient.connect(live_engine.url, TOKEN) as good:
        await good.send_frame(frame, ImageCodec.PNG)
        with pytest.raises(EngineError) as info:
            await XrsegClient.connect(live_engine.url, "wrong")
        assert info.value.code == ErrorCode.UNAUTHORIZED
        assert (await good.prompt(Prompt(1, 1, points=(PointPrompt(60, 60),)))).masks


async def test_newest_frame_wins(live_engine: LiveEngine) -> None:
    async with XrsegClient.connect(live_engine.url, TOKEN) as client:
        for i in range(1, 21):
            frame, _ = block_frame(i)
            await client.send_frame(frame, ImageCodec.PNG)
        result = await client.prompt(Prompt(1, 20, points=(PointPrompt(60, 60),)))
        stats = await client.stats()
    assert result.frame_id == 20
    assert stats.frames_received == 20 and stats.frames_decoded == 1
    assert stats.frames_dropped == 20 - live_engine.engine.config.frame_window


async def test_resume_after_disconnect_then_reap(live_engine: LiveEngine) -> None:
    frame, block = block_frame(5)
    client = await XrsegClient.connect(live_engine.url, TOKEN)
    await client.send_frame(frame, ImageCodec.PNG)
    session_id = client.session_id
    await client.close(bye=False)  # connection lost, no goodbye
    async with XrsegClient.connect(live_engine.url, TOKEN, session_id=session_id) as again:
        assert again.session_id == session_id
        result = await again.prompt(Prompt(1, 5, points=(PointPrompt(60, 60),)))  # frame kept across reconnect
        assert result.frame_id == 5 and mask_iou(result.masks[result.best].mask.decode(), block) > 0.9
        await again.close(bye=False)
    engine = live_engine.engine
    await asyncio.wait_for(_until(lambda: engine.sessions[session_id].detached_at is not None), 5)
    object.__setattr__(engine, "config", replace(engine.config, session_linger_s=0.0))
    assert await engine.reap_idle() == 1 and session_id not in engine.sessions
    with pytest.raises(EngineError) as info:
        await XrsegClient.connect(live_engine.url, TOKEN, session_id=session_id)
    assert info.value.code == ErrorCode.UNAUTHORIZED


async def _until(predicate) -> None:  # type: ignore[no-untyped-def]
    while not predicate():
        await asyncio.sleep(0.01)

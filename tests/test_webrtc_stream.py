"""Two real aiortc peers on loopback: 200 frames of livingroom1_micro with prompts on both channels.

Colour rides the VP8 video track, depth (rdz) and metadata the reliable channel, and so do the
prompts (clicks and gaze samples, alternately; the unreliable gaze channel is tested elsewhere,
since a result for every prompt is not its contract). Every prompt must be answered on the frame it
named (so the aligner paired colour and metadata correctly), and the depth the engine decoded
must equal the file's, bit for bit.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import numpy as np

from clients.sources.folder import open_sequence
from clients.webrtc_client import XrsegRtcClient
from engine.config import EngineConfig
from engine.core import GazeSample, PointPrompt, Prompt
from engine.session import PendingFrame
from engine.transport.webrtc import WebRTCConfig
from tests.test_webrtc_support import CLIENT, LIVINGROOM, LOOPBACK, TOKEN, assert_loopback_only, live_rtc
from xrseg.demo.scripts import gaze_script_for

FRAMES = 200
PROMPT_EVERY = 5
FPS = 15.0


async def test_200_frames_every_prompt_answered_on_its_frame_with_bit_exact_depth() -> None:
    seq = open_sequence(LIVINGROOM)
    frames = [seq[i] for i in range(FRAMES)]
    script = gaze_script_for(LIVINGROOM, frames)
    # Roomy queues: this test is about the transport, not about the engine keeping pace on a busy machine.
    config = EngineConfig(tokens=(TOKEN,), frame_window=64, prompt_queue=64)
    options = replace(CLIENT, fps=FPS, depth_every=PROMPT_EVERY)
    rtc = WebRTCConfig(port=0, host_addresses=LOOPBACK, pair_wait_s=5.0, pair_window=96, video_window=48)
    async with (
        live_rtc(config, rtc) as live,
        XrsegRtcClient.connect(live.url, TOKEN, options=options) as client,
    ):
        assert_loopback_only(client)
        session = live.engine.sessions[client.session_id]
        offered: dict[int, PendingFrame] = {}
        offer_frame = session.offer_frame

        def record(pending: PendingFrame) -> None:  # instrumentation: keep what the engine received
            if pending.frame_id % PROMPT_EVERY == 0:
                offered[pending.frame_id] = pending
            offer_frame(pending)

        session.offer_frame = record  # type: ignore[method-assign]
        futures = {}
        start = time.perf_counter()
        for index, recorded in enumerate(frames):
            delay = start + index / FPS - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # the camera's clock, not a wait for a condition
            frame = replace(recorded, capture_ts=time.time())
            await client.send_frame(frame)
            if index % PROMPT_EVERY:
                continue
            gaze = script.gaze(index, frame, frame.capture_ts) or GazeSample(frame.capture_ts, 320.0, 240.0)
            if (index // PROMPT_EVERY) % 2:
                futures[index] = client.prompt_nowait(
                    Prompt(prompt_id=index, frame_id=frame.frame_id, gaze=(gaze,))
                )
            else:
                click = PointPrompt(gaze.x, gaze.y)
                futures[index] = client.prompt_nowait(
                    Prompt(prompt_id=index, frame_id=frame.frame_id, points=(click,))
                )
        results = {i: await asyncio.wait_for(f, 60) for i, f in futures.items()}
        peer = live.transport.peers[client.session_id]
        counters = peer.aligner.counters

    assert len(results) == FRAMES // PROMPT_EVERY
    for index, timed in results.items():
        assert timed.result.frame_id == frames[index].frame_id, f"prompt {index} answered on another frame"
        assert timed.result.masks and timed.result.segment is not None
    for index in results:
        frame_id = frames[index].frame_id
        assert offered[frame_id].used, f"frame {frame_id} was prompted but never decoded"
        np.testing.assert_array_equal(offered[frame_id].frame().depth, frames[index].depth)
    assert counters.paired >= 0.9 * FRAMES, counters

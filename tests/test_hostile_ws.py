"""Hostile clients against a real Engine over a real WebSocket on loopback.

Each case checks: a coded error or a bounded, counted drop; the engine alive; a second,
well-behaved session still answered with none of its prompts dropped; server memory bounded.
(The second session's latency while the first misbehaves is a figure of bench.hostile.)
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import AsyncIterator

import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from clients.ws_client import XrsegClient
from engine.admission import AdmissionConfig
from engine.config import EngineConfig
from engine.core import PointPrompt, Prompt
from engine.protocol import (
    ErrorCode,
    ErrorMessage,
    Hello,
    ImageCodec,
    Limits,
    PromptMessage,
    decode_message,
    encode_frame,
    encode_message,
)
from engine.server import Engine
from tests.conftest import TOKEN, LiveEngine, block_frame, serve_live
from tests.test_fuzz_protocol import CRASHERS

RSS_BOUND = 200 * 1024 * 1024  # growth allowed during one hostile case (was +660 MB in 60 s)


def _rss() -> int:
    return psutil.Process(os.getpid()).memory_info().rss


def _sample(engine: Engine, name: str, **labels: str) -> float:
    value = engine.metrics.registry.get_sample_value(name, labels or None)
    return value or 0.0


@pytest.fixture
async def hostile_engine() -> AsyncIterator[LiveEngine]:
    config = EngineConfig(
        port=0, tokens=(TOKEN,), limits=Limits(max_message_bytes=8 << 20), session_linger_s=60.0, hello_timeout_s=1.0,
        admission=AdmissionConfig(max_pending_per_address=32, outbox_messages=16),
    )  # fmt: skip
    async with serve_live(config) as live:
        yield live


async def _good_session_answers(url: str, prompts: int, start_id: int = 1) -> list[int]:
    """A well-behaved client: one frame, then prompts one after another; returns answered ids."""
    frame, _ = block_frame()
    answered = []
    async with XrsegClient.connect(url, TOKEN, "good") as good:
        await good.send_frame(frame, ImageCodec.PNG)
        for pid in range(start_id, start_id + prompts):
            result = await good.prompt(Prompt(pid, frame.frame_id, points=(PointPrompt(60, 60),)), timeout=60)
            answered.append(result.prompt_id)
        stats = await good.stats()
    assert stats.prompts_dropped == 0 and stats.errors_sent == 0
    return answered


async def test_a_client_that_never_reads_loses_only_its_own_replies(hostile_engine: LiveEngine) -> None:
    engine, url = hostile_engine.engine, hostile_engine.url
    rss0 = _rss()
    sock = socket.create_connection(("127.0.0.1", hostile_engine.transport.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never read: the window closes at once
    frame, _ = block_frame(h=480, w=640)
    async with connect(url, sock=sock, max_queue=1, compression=None, max_size=None) as rude:
        await rude.send(encode_message(Hello(TOKEN, "rude")))
        await rude.send(encode_frame(frame, ImageCodec.PNG))
        tasks_before = len(asyncio.all_tasks())
        for pid in range(1, 1501):  # each answered with masks and a 3D segment, or superseded with an error
            await rude.send(_prompt_msg(pid, frame.frame_id))
            if pid % 100 == 0:
                await asyncio.sleep(0.05)
        answered = await _good_session_answers(url, 20)
        assert answered == list(range(1, 21))
        assert (
            _sample(engine, "xrseg_replies_dropped_total", transport="websocket") > 0
        )  # bounded, counted drop
        await asyncio.sleep(1.0)  # the rude client is still connected and still not reading
        left = [t for t in asyncio.all_tasks() if "report" in repr(t.get_coro())]
        assert not left and len(asyncio.all_tasks()) <= tasks_before + 2, (
            "error reports must not pile up as tasks"
        )
        assert _rss() - rss0 < RSS_BOUND


def _prompt_msg(pid: int, frame_id: int) -> bytes:
    return encode_message(PromptMessage(Prompt(pid, frame_id, points=(PointPrompt(60 + pid % 50, 60),))))


async def test_200_connections_that_never_say_hello_are_capped_and_timed_out(
    hostile_engine: LiveEngine,
) -> None:
    engine, url = hostile_engine.engine, hostile_engine.url
    rss0 = _rss()
    good = asyncio.create_task(_good_session_answers(url, 10))
    await asyncio.sleep(0.5)
    silent = await asyncio.gather(
        *(connect(url, open_timeout=10) for _ in range(200)), return_exceptions=True
    )
    opened = [c for c in silent if not isinstance(c, BaseException)]
    closes = []
    for ws in opened:
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except ConnectionClosed as exc:
            closes.append(exc.rcvd.code if exc.rcvd else None)
    assert await good == list(range(1, 11))
    refused = _sample(
        engine, "xrseg_connections_refused_total", transport="websocket", reason="pending_per_address"
    )
    timed_out = _sample(engine, "xrseg_hello_timeouts_total", transport="websocket")
    # Every connection the client saw open was refused or timed out (on a loaded machine a few
    # connects give up on the client's side first: those may or may not have reached the server).
    assert len(opened) <= refused + timed_out <= 200
    assert timed_out <= 32 + 1  # at most the per-address cap of pending hellos (+ the good session's)
    assert sorted(set(closes)) == [1008, 1013] and len(closes) == len(opened)
    await asyncio.sleep(0.2)
    assert engine.gate.open == 0 and engine.gate.pending() == 0
    assert _rss() - rss0 < RSS_BOUND


async def test_a_flood_of_5000_messages_is_dropped_and_counted_and_the_other_session_is_answered(
    hostile_engine: LiveEngine,
) -> None:
    engine, url = hostile_engine.engine, hostile_engine.url
    rss0 = _rss()
    frame, _ = block_frame()
    async with XrsegClient.connect(url, TOKEN, "flood") as flood:
        await flood.send_frame(frame, ImageCodec.PNG)
        good = asyncio.create_task(_good_session_answers(url, 20))
        t0 = time.monotonic()
        for pid in range(1, 5001):
            await flood.send_raw(_prompt_msg(pid, frame.frame_id))
        await asyncio.sleep(1.0)
        read = _sample(engine, "xrseg_messages_received_total", transport="websocket")
        # Over its rate, a connection is read no faster than the rate (a dropped message per token
        # at most): the rest of the flood waits in TCP, not on the event loop.
        a = engine.config.admission
        assert read <= a.message_burst + 2 * a.messages_per_s * (time.monotonic() - t0) + 50
        assert await good == list(range(1, 21))
        refused = _sample(engine, "xrseg_messages_refused_total", transport="websocket", reason="rate")
        assert refused > 0
        codes = set()
        while not flood._replies.errors.empty() or not codes:
            codes.add((await flood.next_error(10)).code)
        assert ErrorCode.OVERLOADED in codes
        # Over its rate a connection is read no faster than the rate (the rest waits in TCP): once
        # the engine has read the whole flood and the bucket has refilled, the flooder is answered again.
        for _ in range(600):
            if _sample(engine, "xrseg_messages_received_total", transport="websocket") >= 5001 + 21:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.5)
        result = await flood.prompt(Prompt(9999, frame.frame_id, points=(PointPrompt(60, 60),)), timeout=60)
        assert result.prompt_id == 9999
    assert _rss() - rss0 < RSS_BOUND


async def test_inputs_that_crashed_the_handler_get_coded_errors_on_the_same_connection(
    hostile_engine: LiveEngine,
) -> None:
    url = hostile_engine.url
    rss0 = _rss()
    frame, _ = block_frame()
    async with XrsegClient.connect(url, TOKEN, "bad") as bad:
        await bad.send_frame(frame, ImageCodec.PNG)
        for case, (data, code) in CRASHERS.items():
            if case in ("10^6 points", "missing token", "lone surrogate in token"):
                continue  # 35 MB (too_large, covered by the codec test) / hello-only cases below
            await bad.send_raw(data)
            error = await bad.next_error(30)
            assert error.code == code, (case, error)
        # frame ids going backwards are accepted (a restarted client): the prompt is answered
        for fid in (50, 40, 30):
            back, _ = block_frame(frame_id=fid)
            await bad.send_frame(back, ImageCodec.PNG)
        result = await bad.prompt(Prompt(1, 30, points=(PointPrompt(60, 60),)), timeout=60)
        assert result.frame_id == 30
        assert await _good_session_answers(url, 5) == list(range(1, 6))
    for hello, expected in [
        (json.dumps({"v": 1, "type": "hello", "client": "x"}), ErrorCode.UNAUTHORIZED),  # was invalid_field
        (
            json.dumps({"v": 1, "type": "hello", "token": "t\u00f6ken"}),
            ErrorCode.UNAUTHORIZED,
        ),  # was a TypeError
        ('{"v":1,"type":"hello","token":"\\udfff"}', ErrorCode.INVALID_FIELD),
        ('{"v":1,"type":"hello","token":' + "[" * 30000 + "]" * 30000 + "}", ErrorCode.MALFORMED),
    ]:
        async with connect(url) as ws:
            await ws.send(hello)
            reply = decode_message(await ws.recv())
            assert isinstance(reply, ErrorMessage) and reply.code == expected, (hello[:60], reply)
    assert _rss() - rss0 < RSS_BOUND

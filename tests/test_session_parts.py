"""The session's parts on their own: frame window, prompt queue, handler table, error mapping."""

from __future__ import annotations

import numpy as np

from engine.core import BoxPrompt, GazeSample, PointPrompt, Prompt
from engine.core.prompts import PromptError
from engine.errors import BadPrompt, NoDepth, NoFrame, Overloaded, SessionClosed, UnsupportedPrompt
from engine.protocol import ErrorCode, EverythingRequest, PromptMessage, ProtocolError
from engine.session import FrameWindow, PendingFrame
from engine.session.handlers import HANDLERS, PromptKind, prompt_kind
from engine.session.prompt_queue import PromptJob, PromptQueue
from engine.session.wire import error_message
from models.interfaces import ModelError
from tests.conftest import block_frame


def _pending(frame_id: int, has_depth: bool = True) -> PendingFrame:
    frame, _ = block_frame(frame_id)
    return PendingFrame(frame_id, lambda: frame, 0.0, frame.pose, has_depth)


def test_frame_window_keeps_the_newest_and_counts_unused_drops() -> None:
    window = FrameWindow(3)
    frames = [_pending(i, has_depth=i % 2 == 0) for i in range(6)]
    frames[1].frame()  # used before it leaves
    for p in frames:
        window.offer(p)
    assert window.newest() is frames[-1] and window.is_newest(frames[-1])
    assert window.get(2) is None and window.get(4) is frames[4]
    assert window.received == 6 and window.dropped == 2  # frames 0 and 2 left unused; 1 was decoded
    assert window.decoded == 1
    frames[5].frame()
    assert window.decoded == 2
    assert window.depth_between(3, 5) is True and window.depth_between(4, 5) is False


def test_prompt_queue_drops_the_oldest_when_full() -> None:
    async def run() -> None:
        queue = PromptQueue(2)
        jobs = [PromptJob(PromptMessage(Prompt(i, 0, points=(PointPrompt(1, 1),))), float(i)) for i in range(4)]
        assert queue.push(jobs[0]) is None and queue.push(jobs[1]) is None
        assert queue.push(jobs[2]) is jobs[0] and queue.push(jobs[3]) is jobs[1]
        assert [queue.pop().prompt_id for _ in range(len(queue))] == [2, 3]
        assert queue.received == 4 and queue.dropped == 2

    import asyncio

    asyncio.run(run())


def test_every_prompt_kind_has_exactly_one_handler() -> None:
    assert set(HANDLERS) == set(PromptKind)
    point = Prompt(1, 0, points=(PointPrompt(3, 4),))
    box = Prompt(1, 0, box=BoxPrompt(1, 1, 5, 5))
    gaze = Prompt(1, 0, gaze=(GazeSample(0.0, 3, 4),))
    text = Prompt(1, 0, points=(PointPrompt(3, 4),), text="the mug")
    assert prompt_kind(PromptMessage(point)) is PromptKind.SPATIAL
    assert prompt_kind(PromptMessage(box)) is PromptKind.SPATIAL
    assert prompt_kind(PromptMessage(gaze)) is PromptKind.GAZE
    assert prompt_kind(PromptMessage(text)) is PromptKind.TEXT
    assert prompt_kind(PromptMessage(point, everything=EverythingRequest())) is PromptKind.EVERYTHING


def test_domain_errors_map_to_wire_codes_in_one_place() -> None:
    cases = [
        (BadPrompt("outside"), ErrorCode.BAD_PROMPT),
        (PromptError("empty"), ErrorCode.BAD_PROMPT),
        (UnsupportedPrompt("no text encoder"), ErrorCode.UNSUPPORTED_PROMPT),
        (NoFrame("send a frame"), ErrorCode.NO_FRAME),
        (NoDepth("no depth"), ErrorCode.BAD_DEPTH),
        (Overloaded("dropped"), ErrorCode.OVERLOADED),
        (SessionClosed("closed"), ErrorCode.UNAUTHORIZED),
        (ProtocolError(ErrorCode.BAD_IMAGE, "bad"), ErrorCode.BAD_IMAGE),
        (ModelError("nan"), ErrorCode.INTERNAL),
        (RuntimeError("bug"), ErrorCode.INTERNAL),
    ]
    for exc, code in cases:
        message = error_message(exc, 7)
        assert message.code is code and message.ref_id == 7, exc
    assert error_message(BadPrompt("x", 3)).ref_id == 3  # the error's own id when the item has none
    assert "engine error" in error_message(RuntimeError("bug")).message


def test_pending_frame_decodes_once_and_only_when_used() -> None:
    calls: list[int] = []
    frame, _ = block_frame(9)

    def decode():  # type: ignore[no-untyped-def]
        calls.append(1)
        return frame

    pending = PendingFrame(9, decode, 0.0)
    assert not pending.used and calls == []
    assert pending.frame() is frame and pending.frame() is frame
    assert pending.used and calls == [1]
    assert np.array_equal(pending.frame().rgb, frame.rgb)

"""Matching the engine's replies to what a client waits for; shared by every transport's client.

Results resolve the future of their prompt; results nobody waits for (tracking updates) and
errors not tied to a waiting prompt go to bounded queues (the oldest unread item is dropped);
stats wake whoever asked for them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from engine.core import SegmentationResult
from engine.protocol.capture import CaptureProgressMessage, CaptureSaved
from engine.protocol import (
    ErrorCode,
    ErrorMessage,
    Message,
    ResultKind,
    ResultMessage,
    SessionStats,
    StatsMessage,
)


class EngineError(RuntimeError):
    """The engine refused a message; code is an engine.protocol.ErrorCode."""

    def __init__(self, code: ErrorCode, message: str, ref_id: int | None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.ref_id = ref_id


@dataclass(frozen=True)
class TimedResult:
    """A result with the client-side times it was asked and answered (time.time())."""

    result: SegmentationResult
    sent: float
    received: float
    kind: ResultKind = ResultKind.ANSWER
    mapping: str = "identity"

    @property
    def latency_ms(self) -> float:
        return (self.received - self.sent) * 1000.0


class ReplyRouter:
    """Pending prompts, unsolicited results, loose errors and the latest stats of one session."""

    def __init__(self, queue_size: int = 256) -> None:
        self._pending: dict[int, tuple[asyncio.Future[TimedResult], float]] = {}
        self.errors: asyncio.Queue[ErrorMessage] = asyncio.Queue(maxsize=queue_size)
        self.streamed: asyncio.Queue[TimedResult] = asyncio.Queue(maxsize=queue_size)
        self.captures: asyncio.Queue[CaptureProgressMessage | CaptureSaved] = asyncio.Queue(maxsize=queue_size)
        self.stats: SessionStats | None = None
        self.stats_event = asyncio.Event()

    def expect(self, prompt_id: int) -> asyncio.Future[TimedResult]:
        """A future for prompt_id's result, timed from now."""
        future: asyncio.Future[TimedResult] = asyncio.get_running_loop().create_future()
        self._pending[prompt_id] = (future, time.time())
        return future

    def dispatch(self, msg: Message, now: float) -> None:
        match msg:
            case ResultMessage(result=result):
                entry = self._pending.pop(result.prompt_id, None)
                if entry is not None and not entry[0].done():
                    entry[0].set_result(TimedResult(result, entry[1], now, msg.kind, msg.mapping))
                else:
                    _put_newest(self.streamed, TimedResult(result, now, now, msg.kind, msg.mapping))
            case ErrorMessage(ref_id=ref_id) if ref_id in self._pending:
                future, _ = self._pending.pop(ref_id)
                if not future.done():
                    future.set_exception(EngineError(msg.code, msg.message, ref_id))
            case ErrorMessage():
                _put_newest(self.errors, msg)
            case CaptureProgressMessage() | CaptureSaved():
                _put_newest(self.captures, msg)
            case StatsMessage(stats=stats):
                self.stats = stats
                self.stats_event.set()

    def fail_all(self, reason: str) -> None:
        """The connection is gone: every waiting prompt fails now rather than at its timeout."""
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError(reason))
        self._pending.clear()


def _put_newest(queue: asyncio.Queue, item: object) -> None:
    if queue.full():
        queue.get_nowait()  # bounded: the oldest unread item goes
    queue.put_nowait(item)

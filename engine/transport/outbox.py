"""One connection's replies: a bounded queue and one writer task.

Why: a client that never reads must not grow the engine's memory, and must not hold up the
code that produces replies. `send` (the session's SendFn) encodes the message, counts it, and
queues the bytes without ever waiting; one writer task per connection writes them in order.
When the queue holds `max_messages` or `max_bytes`, a new reply is dropped and counted
(`dropped`, and xrseg_replies_dropped_total): the client sees a gap, the engine stays bounded.

Error replies therefore cost no task of their own: code that used to `ensure_future(report(...))`
per dropped prompt now finishes at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from engine.metrics import EngineMetrics
from engine.protocol import Message, encode_message

log = logging.getLogger(__name__)

Writer = Callable[[bytes], Awaitable[None]]


class Outbox:
    """Lifecycle: start() -> send()* -> close(). send never blocks; close is idempotent."""

    def __init__(
        self,
        write: Writer,
        metrics: EngineMetrics,
        transport: str,
        max_messages: int,
        max_bytes: int,
        name: str = "",
    ) -> None:
        self._write = write
        self._metrics = metrics
        self._transport = transport
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._queue: deque[bytes] = deque()
        self._bytes = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._name = name
        self.dropped = 0
        self.sent = 0
        self.closed = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"outbox-{self._transport}-{self._name}")

    async def send(self, msg: Message) -> None:
        """The session's SendFn: queue msg (or drop and count it); returns without waiting."""
        self.offer(msg)

    def offer(self, msg: Message) -> bool:
        """Queue msg; False if it was dropped (closed, or the client is not reading)."""
        if self.closed:
            return False
        full = len(self._queue) >= self._max_messages  # checked first: encoding a reply costs the loop
        data = b"" if full else encode_message(msg)
        if full or self._bytes + len(data) > self._max_bytes:
            self.dropped += 1
            self._metrics.replies_dropped.labels(self._transport).inc()
            return False
        self._queue.append(data)
        self._bytes += len(data)
        self._metrics.on_reply(msg)
        self._wake.set()
        return True

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def congested(self) -> bool:
        """The client is not keeping up (queue at least half full): a session may skip work whose
        reply would only be dropped (e.g. supersede queued prompts instead of answering them)."""
        return len(self._queue) * 2 >= self._max_messages or self._bytes * 2 >= self._max_bytes

    async def flush(self, timeout: float) -> None:
        """Wait (at most timeout) until everything queued is written; for a polite close."""

        async def drained() -> None:
            while self._queue and not self.closed:
                await asyncio.sleep(0.005)

        try:
            await asyncio.wait_for(drained(), timeout)
        except TimeoutError:
            pass

    async def close(self) -> None:
        self.closed = True
        self._queue.clear()
        self._bytes = 0
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            data = self._queue.popleft()
            self._bytes -= len(data)
            try:
                await self._write(data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the connection is gone: stop writing, the transport cleans up
                log.debug("outbox %s: write failed (%r); dropping the rest", self._name, exc)
                self.closed = True
                self._queue.clear()
                self._bytes = 0
                return
            self.sent += 1

"""Replies on their way to the client: bounded, sent by one task, dropped (and counted) when full.

Why: a transport's send can block (a client that does not read fills the socket buffers). If
the session awaited each send, that client would stall its own prompts; if it started a task
per reply, memory would grow without bound. One sender task draining a bounded queue keeps both
the session and the engine's memory independent of how fast the client reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from engine.protocol import Message

log = logging.getLogger(__name__)

SendFn = Callable[[Message], Awaitable[None]]


class Outbox:
    """Event-loop only. `send` is the current transport's send (None while detached)."""

    def __init__(self, capacity: int, name: str, on_sent: Callable[[], None]) -> None:
        self.send: SendFn | None = None
        self.dropped = 0
        self._queue: asyncio.Queue[Message] = asyncio.Queue(capacity)
        self._unsent = 0
        self._empty = asyncio.Event()
        self._empty.set()
        self._name = name
        self._on_sent = on_sent

    @property
    def unsent(self) -> int:
        """Messages posted and not yet handed to the transport."""
        return self._unsent

    def post(self, message: Message) -> None:
        """Queue a message; dropped while detached (nobody to tell) or when the client is not reading."""
        if self.send is None:
            return
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1
            return
        self._unsent += 1
        self._empty.clear()

    async def run(self) -> None:
        """The sender task: hand messages to the transport one at a time, in order."""
        while True:
            message = await self._queue.get()
            try:
                if self.send is not None:
                    await self.send(message)
            except Exception as exc:  # the transport is going away; its close detaches the session
                log.debug("%s: send failed: %r", self._name, exc)
            finally:
                self._unsent -= 1
                if not self._unsent:
                    self._empty.set()
                self._on_sent()

    async def drain(self, timeout: float) -> None:
        """Until every posted message is handed to the transport (a goodbye's stats), or timeout."""
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
        except TimeoutError:
            log.debug("%s: %d replies unsent at close", self._name, self._unsent)

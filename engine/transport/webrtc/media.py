"""Draining an aiortc video track so that its unbounded queue never grows.

aiortc's RemoteStreamTrack queues every decoded frame in an unbounded asyncio.Queue; if the
consumer falls behind, latency and memory grow forever. TrackDrain pulls frames as fast as
they come and hands each to a callback that must be O(1) (the aligner: no pixel conversion,
no model); colour conversion and depth decoding happen later on the worker pool, and only for
frames a prompt uses. A frame overtaken by a newer one is simply dropped there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

log = logging.getLogger(__name__)


class TrackDrain:
    """Lifecycle: start() -> ... -> stop(). on_frame(frame, arrival_time) runs on the event loop."""

    def __init__(
        self, track: MediaStreamTrack, on_frame: Callable[[Any, float], None], name: str = ""
    ) -> None:
        self._track = track
        self._on_frame = on_frame
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self.ended = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"track-drain-{self._name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        try:
            while True:
                frame = await self._track.recv()
                self._on_frame(frame, time.time())
        except MediaStreamError:
            log.info("video track of %s ended", self._name)
        finally:
            self.ended.set()

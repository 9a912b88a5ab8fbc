"""The one place that configures logging: records are queued on the calling thread and written
by a listener thread, so a slow handler (rich formatting, a tty, a file) never runs on the event
loop. LogThrottle keeps a flood of rejected messages from becoming a flood of log lines.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import time

from rich.logging import RichHandler

_LISTENER_ATTR = "_xrseg_listener"  # the listener hangs off the root logger, not a module global


def configure_logging(level: str = "INFO") -> None:
    """Root logger -> QueueHandler -> (listener thread) -> RichHandler. Safe to call again."""
    root = logging.getLogger()
    old = getattr(root, _LISTENER_ATTR, None)
    if old is not None:
        atexit.unregister(old.stop)  # stopped now; stopping it again at exit would raise
        old.stop()
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    target = RichHandler(show_path=False, rich_tracebacks=True)
    target.setFormatter(logging.Formatter("%(name)s: %(message)s", datefmt="[%X]"))
    listener = logging.handlers.QueueListener(records, target, respect_handler_level=True)
    # The queue handler formats the message only (%(message)s); the listener adds name and level.
    logging.basicConfig(
        level=level.upper(), format="%(message)s", handlers=[logging.handlers.QueueHandler(records)], force=True
    )
    setattr(root, _LISTENER_ATTR, listener)
    listener.start()
    atexit.register(listener.stop)


class LogThrottle:
    """Allows one log line per key per interval; counts what it suppressed (for the next line)."""

    def __init__(self, interval_s: float = 5.0, max_keys: int = 256) -> None:
        self._interval = interval_s
        self._max_keys = max_keys
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        if last is None and len(self._last) >= self._max_keys:
            return False
        self._last[key] = now
        return True

    def take_suppressed(self, key: str) -> int:
        return self._suppressed.pop(key, 0)

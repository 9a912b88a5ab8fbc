"""A session's recent frames: kept undecoded, decoded at most once and only when something uses them.

Newest frame wins: the window holds the last `size` frames; a frame pushed out before anything
decoded it is counted as dropped. Prompts may name any frame still in the window (or get the
newest); the keyframe source and the tracker look at the newest.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from engine.config import EngineConfig
from engine.core import Pose, RGBDFrame
from engine.protocol import Envelope, FrameMessage, check_frame, decode_envelope


class PendingFrame:
    """A frame as it arrived: decoded at most once, and only if something needs it.

    pose is known from the header without decoding, so the keyframe scheduler can see camera
    motion on every frame for free; has_depth (a depth payload came with it) tells it which frames
    a depth-needing encoder can use at all (WebRTC clients send depth only with some frames).

    Thread safety: `frame()` may be called from the worker pool and the encoder thread at once
    (a prompt and a keyframe encode of the same frame); the lock makes the decode happen once.
    The decoded frame is the only thing written there, and it never changes afterwards.
    """

    def __init__(
        self,
        frame_id: int,
        decode: Callable[[], RGBDFrame],
        received: float,
        pose: Pose | None = None,
        has_depth: bool = True,
    ) -> None:
        self.frame_id = frame_id
        self.received = received
        self.pose = pose
        self.has_depth = has_depth
        self._decode = decode
        self._frame: RGBDFrame | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_envelope(cls, env: Envelope, config: EngineConfig, received: float) -> PendingFrame:
        """Validate everything but the pixels now (errors reach the client at once); decode later."""
        header = check_frame(env, config.limits)

        def decode() -> RGBDFrame:
            msg = decode_envelope(env, config.limits)
            assert isinstance(msg, FrameMessage)
            return msg.frame

        return cls(header.frame_id, decode, received, header.pose, "depth" in env.payloads)

    @classmethod
    def from_frame(cls, frame: RGBDFrame, received: float) -> PendingFrame:
        pending = cls(frame.frame_id, lambda: frame, received, frame.pose, frame.depth is not None)
        pending._frame = frame
        return pending

    @property
    def used(self) -> bool:
        """Decoded already (by a prompt, a tracking step or an encode)."""
        return self._frame is not None

    def frame(self) -> RGBDFrame:
        """The decoded frame (decodes on the calling thread the first time)."""
        if self._frame is None:
            with self._lock:
                if self._frame is None:
                    self._frame = self._decode()
        return self._frame


class FrameWindow:
    """The newest `size` frames of one session, oldest first. Event-loop only."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._frames: OrderedDict[int, PendingFrame] = OrderedDict()
        self.received = 0
        self.dropped = 0
        self._decoded_gone = 0  # frames that left the window after being decoded

    def offer(self, pending: PendingFrame) -> None:
        """Keep a new frame; push out the oldest beyond the window (counted when never used)."""
        self.received += 1
        old = self._frames.pop(pending.frame_id, None)
        if old is not None and old.used:
            self._decoded_gone += 1
        self._frames[pending.frame_id] = pending
        while len(self._frames) > self._size:
            _, gone = self._frames.popitem(last=False)
            if gone.used:
                self._decoded_gone += 1
            else:
                self.dropped += 1

    @property
    def decoded(self) -> int:
        """Frames decoded so far (counted here, on the loop, not by the threads that decode)."""
        return self._decoded_gone + sum(p.used for p in self._frames.values())

    def newest(self) -> PendingFrame | None:
        return next(reversed(self._frames.values())) if self._frames else None

    def is_newest(self, pending: PendingFrame) -> bool:
        return pending is self.newest()

    def get(self, frame_id: int) -> PendingFrame | None:
        return self._frames.get(frame_id)

    def depth_between(self, after_id: int, before_id: int) -> bool:
        """Any frame with depth whose id lies strictly between the two ids."""
        return any(p.has_depth and after_id < p.frame_id < before_id for p in self._frames.values())

    def clear(self) -> None:
        self._frames.clear()

    def __len__(self) -> int:
        return len(self._frames)

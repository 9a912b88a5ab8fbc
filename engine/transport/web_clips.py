"""RGB-D clips the engine serves to its web page, so a browser without a depth camera gets 3D.

    GET /web/clips                   {"clips": [{"name", "frames", "width", "height", "fps"}]}
    GET /web/clips/{name}/frames/{i}  one schema-v1 frame message (application/octet-stream):
                                      JPEG colour, rdz depth, intrinsics, camera-to-world pose;
                                      frame_id = i, capture_ts from the folder (the page stamps its own)

Why a frame message and not two image files: the page passes it on to the engine as it is (after
stamping frame id and capture time), so the page needs no JPEG encoder, no depth codec and no
knowledge of the folder layouts; it only speaks the protocol.

The engine does not read folders: the command that assembles the server (xrseg/clips.py) opens
each --clip folder with the clients' sequence readers and hands in `Clip`s, anything with a
length, intrinsics and indexable RGBDFrames (`ClipFrames`). That keeps engine/ free of clients/
(tests/test_layering.py) and lets any recording format feed the page.

Frames are read and encoded on a worker thread (~20 ms each: a JPEG decode and re-encode, a PNG
decode, an rdz encode), never on the event loop, and the last `cache_frames` answers are kept:
a clip loops, and two pages may play the same one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from engine.core import CameraIntrinsics, RGBDFrame
from engine.protocol import DepthCodec, ImageCodec
from engine.protocol.codec import encode_frame

log = logging.getLogger(__name__)


class ClipFrames(Protocol):
    """A recorded RGB-D sequence as the page's clip routes need it; frames are read on access."""

    @property
    def intrinsics(self) -> CameraIntrinsics: ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> RGBDFrame: ...


@dataclass(frozen=True)
class Clip:
    """One clip offered to the page: its name in the URL and its frames."""

    name: str
    frames: ClipFrames


@dataclass(frozen=True)
class ClipInfo:
    name: str
    frames: int
    width: int
    height: int
    fps: float


class ClipLibrary:
    """Named RGB-D clips; encoded frames cached (bounded). Event loop only."""

    def __init__(self, clips: tuple[Clip, ...], cache_frames: int = 64, fps: float = 8.0) -> None:
        self._sequences: dict[str, ClipFrames] = {}
        for clip in clips:
            if clip.name in self._sequences:
                raise ValueError(f"two clips are named {clip.name!r}; rename one folder")
            self._sequences[clip.name] = clip.frames
        self._cache: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._cache_frames = cache_frames
        self._fps = fps
        self._inflight: dict[tuple[str, int], asyncio.Future[bytes]] = {}

    def list(self) -> list[ClipInfo]:
        out = []
        for name, seq in self._sequences.items():
            k = seq.intrinsics
            out.append(ClipInfo(name, len(seq), k.width, k.height, self._fps))
        return out

    def has(self, name: str) -> bool:
        return name in self._sequences

    def length(self, name: str) -> int:
        return len(self._sequences[name])

    async def frame_message(self, name: str, index: int) -> bytes:
        """Frame `index` of clip `name` as a schema-v1 frame message (KeyError/IndexError if absent)."""
        sequence = self._sequences[name]
        if not 0 <= index < len(sequence):
            raise IndexError(f"clip {name!r} has frames 0..{len(sequence) - 1}, not {index}")
        key = (name, index)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        future = self._inflight.get(key)
        if future is None:  # one read per frame even when several pages ask at once
            future = asyncio.ensure_future(asyncio.to_thread(_encode, sequence, index))
            self._inflight[key] = future
            future.add_done_callback(lambda _f: self._inflight.pop(key, None))
        data = await asyncio.shield(future)
        self._cache[key] = data
        while len(self._cache) > self._cache_frames:
            self._cache.popitem(last=False)
        return data


def _encode(sequence: ClipFrames, index: int) -> bytes:
    frame = sequence[index]
    return encode_frame(frame, ImageCodec.JPEG, DepthCodec.RDZ)

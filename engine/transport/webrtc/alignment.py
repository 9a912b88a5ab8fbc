"""Pairing colour frames from the video track with their metadata from the data channel.

The client sends, for each frame, a schema-v1 frame message on the reliable channel (frame id,
capture time, intrinsics, pose, depth as rdz) whose rgb payload has codec "video", and puts the
pixels on the video track with pts = frame_id * pts_per_frame (90 kHz clock). aiortc's receiver
rewrites RTP timestamps relative to the first frame it assembled, so a received pts is
(frame_id - first_frame_id) * pts_per_frame, give or take a tick of rounding in aiortc's time
base conversion: frame ids are known up to one offset, which the
aligner locks from the first pair: the first colour frame aiortc assembled belongs to the oldest
metadata still waiting (the client sends each frame's metadata before its pixels, and the
metadata channel is reliable and ordered). The offset holds for the life of the track; a new
track (reconnect) resets it. If the very first video frame never assembled (lost beyond NACK
recovery), every pair would be off by the frames lost: a known limit, see README.

Both halves wait at most `max_wait_s`; a half whose partner never comes, or that a newer pair
overtakes, is dropped and counted. Everything here is O(1) per arrival and runs on the event
loop; no pixel is touched.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, eq=False)
class PairedFrame:
    """Metadata and colour of one frame.

    metadata is whatever the caller attached to the frame id (the transport: its envelope and
    checked header); video is an av.VideoFrame, decoded by aiortc, not yet converted to RGB.
    """

    frame_id: int
    metadata: Any
    video: Any
    metadata_arrival: float
    video_arrival: float


@dataclass
class AlignmentCounters:
    paired: int = 0
    metadata_dropped: int = 0  # metadata whose colour never came (or was overtaken)
    video_dropped: int = 0  # colour whose metadata never came (or was overtaken)
    off_grid: int = 0  # video frames whose pts is not frame_id * pts_per_frame (client fillers)
    locks: int = 0  # times the pts -> frame id offset was established (once per video track)


class FrameAligner:
    """Matches (frame_id, metadata) with video frames by pts. Not thread-safe: event loop only."""

    def __init__(
        self, pts_per_frame: int, max_wait_s: float, max_pending: int = 32, max_video: int = 8
    ) -> None:
        if pts_per_frame <= 0:
            raise ValueError(f"pts_per_frame must be positive, got {pts_per_frame}")
        self.pts_per_frame = pts_per_frame
        self.max_wait_s = max_wait_s
        self._max_pending = max_pending
        self._max_video = max_video
        self._metadata: OrderedDict[int, tuple[Any, float]] = OrderedDict()
        self._video: OrderedDict[int, tuple[Any, float]] = OrderedDict()  # keyed by pts step
        self._offset: int | None = None  # frame_id = offset + round(pts / pts_per_frame)
        self._last_paired = -1
        self.counters = AlignmentCounters()

    def add_metadata(self, frame_id: int, metadata: Any, now: float) -> PairedFrame | None:
        self.expire(now)
        if frame_id <= self._last_paired:
            self.counters.metadata_dropped += 1  # older than a frame already paired
            return None
        if self._offset is None and self._video:
            step = next(iter(self._video))
            self._lock(frame_id - step)
        step = frame_id - self._offset if self._offset is not None else None
        if step is not None and step in self._video:
            video, arrival = self._video.pop(step)
            return self._pair(frame_id, metadata, now, video, arrival)
        self._metadata[frame_id] = (metadata, now)
        while len(self._metadata) > self._max_pending:
            self._metadata.popitem(last=False)
            self.counters.metadata_dropped += 1
        return None

    def add_video(self, video: Any, now: float) -> PairedFrame | None:
        """video.pts is in 1/90000 s, relative to the first frame aiortc assembled."""
        self.expire(now)
        pts = int(video.pts or 0)
        step = (pts + self.pts_per_frame // 2) // self.pts_per_frame  # aiortc rounds: 12000 -> 11999
        if abs(pts - step * self.pts_per_frame) > self.pts_per_frame // 4:
            self.counters.off_grid += 1  # a client's filler frame (half an interval late), or not ours
            return None
        if self._offset is None and self._metadata:
            self._lock(next(iter(self._metadata)) - step)
        if self._offset is not None:
            frame_id = self._offset + step
            entry = self._metadata.pop(frame_id, None)
            if entry is not None:
                return self._pair(frame_id, entry[0], entry[1], video, now)
        self._video[step] = (video, now)
        while len(self._video) > self._max_video:  # decoded colour is the big half (~460 KB at VGA)
            self._video.popitem(last=False)
            self.counters.video_dropped += 1
        return None

    def waiting_for(self, frame_id: int) -> bool:
        """True while this frame's metadata has arrived and its colour has not (yet)."""
        return frame_id in self._metadata

    def expire(self, now: float) -> None:
        """Drop halves that waited longer than max_wait_s."""
        while self._metadata and now - next(iter(self._metadata.values()))[1] > self.max_wait_s:
            self._metadata.popitem(last=False)
            self.counters.metadata_dropped += 1
        while self._video and now - next(iter(self._video.values()))[1] > self.max_wait_s:
            self._video.popitem(last=False)
            self.counters.video_dropped += 1

    def reset(self) -> None:
        """A new video track (reconnect): pts restart, so the offset must be found again."""
        self.counters.metadata_dropped += len(self._metadata)
        self.counters.video_dropped += len(self._video)
        self._metadata.clear()
        self._video.clear()
        self._offset = None
        self._last_paired = -1

    def _pair(self, frame_id: int, metadata: Any, meta_at: float, video: Any, video_at: float) -> PairedFrame:
        self._last_paired = frame_id
        for older in [k for k in self._metadata if k < frame_id]:
            del self._metadata[older]
            self.counters.metadata_dropped += 1
        step = frame_id - (self._offset or 0)
        for older in [k for k in self._video if k < step]:
            del self._video[older]
            self.counters.video_dropped += 1
        self.counters.paired += 1
        return PairedFrame(frame_id, metadata, video, meta_at, video_at)

    def _lock(self, offset: int) -> None:
        if self._offset is not None:
            return
        self._offset = offset
        self.counters.locks += 1

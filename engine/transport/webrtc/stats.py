"""Per-peer counters and rates for the metrics endpoint.

Counters are plain ints bumped on the event loop; decode times are appended from worker
threads (deque.append is atomic in CPython). Rates are computed over a sliding window when
read, so nothing runs periodically.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

from engine.transport.webrtc.alignment import AlignmentCounters


@dataclass(frozen=True)
class PeerStatsSnapshot:
    """What /metrics reports for one peer. Rates are over the last `window_s` seconds."""

    session_id: str
    connection_state: str
    age_s: float
    idle_s: float
    video_frames_in: int
    metadata_in: int
    frames_paired: int
    metadata_dropped: int
    video_dropped: int
    messages_in: int
    messages_rejected: int
    results_out: int
    fps_in: float
    fps_out: float
    decode_ms_p50: float | None
    decode_ms_p95: float | None
    metadata_latency_ms_p50: float | None
    depth_metadata_latency_ms_p50: float | None
    video_latency_ms_p50: float | None
    bytes_in_per_s: float
    rtt_ms: float | None

    def as_dict(self) -> dict:
        return asdict(self)


class PeerStats:
    """Counters of one peer connection; snapshot() is cheap enough to call per HTTP request."""

    def __init__(self, session_id: str, window_s: float = 5.0) -> None:
        self.session_id = session_id
        self.window_s = window_s
        self.started = time.monotonic()
        self.last_activity = self.started
        self.video_frames_in = 0
        self.metadata_in = 0
        self.messages_in = 0
        self.messages_rejected = 0
        self.results_out = 0
        self._in_times: deque[float] = deque(maxlen=512)
        self._out_times: deque[float] = deque(maxlen=512)
        self._bytes: deque[tuple[float, int]] = deque(maxlen=4096)
        self.decode_ms: deque[float] = deque(maxlen=256)
        self.metadata_ms: deque[float] = deque(maxlen=256)  # capture -> metadata arrived
        self.depth_metadata_ms: deque[float] = deque(maxlen=256)  # the same, for metadata carrying depth
        self.video_ms: deque[float] = deque(maxlen=256)  # capture -> colour frame decoded by aiortc

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def on_video(self) -> None:
        self.video_frames_in += 1
        self._in_times.append(time.monotonic())
        self.touch()

    def on_message(self, size: int) -> None:
        self.messages_in += 1
        self._bytes.append((time.monotonic(), size))
        self.touch()

    def on_result(self) -> None:
        self.results_out += 1
        self._out_times.append(time.monotonic())

    def snapshot(self, state: str, alignment: AlignmentCounters, rtt_ms: float | None) -> PeerStatsSnapshot:
        now = time.monotonic()
        decode = np.array(tuple(self.decode_ms)) if self.decode_ms else None  # tuple(): one atomic copy
        recent_bytes = sum(n for t, n in self._bytes if now - t <= self.window_s)
        return PeerStatsSnapshot(
            session_id=self.session_id,
            connection_state=state,
            age_s=now - self.started,
            idle_s=now - self.last_activity,
            video_frames_in=self.video_frames_in,
            metadata_in=self.metadata_in,
            frames_paired=alignment.paired,
            metadata_dropped=alignment.metadata_dropped,
            video_dropped=alignment.video_dropped,
            messages_in=self.messages_in,
            messages_rejected=self.messages_rejected,
            results_out=self.results_out,
            fps_in=self._rate(self._in_times, now),
            fps_out=self._rate(self._out_times, now),
            decode_ms_p50=float(np.percentile(decode, 50)) if decode is not None else None,
            decode_ms_p95=float(np.percentile(decode, 95)) if decode is not None else None,
            metadata_latency_ms_p50=float(np.median(tuple(self.metadata_ms))) if self.metadata_ms else None,
            depth_metadata_latency_ms_p50=(
                float(np.median(tuple(self.depth_metadata_ms))) if self.depth_metadata_ms else None
            ),
            video_latency_ms_p50=float(np.median(tuple(self.video_ms))) if self.video_ms else None,
            bytes_in_per_s=recent_bytes / min(self.window_s, max(now - self.started, 1e-3)),
            rtt_ms=rtt_ms,
        )

    def _rate(self, times: deque[float], now: float) -> float:
        recent = sum(1 for t in times if now - t <= self.window_s)
        return recent / min(self.window_s, max(now - self.started, 1e-3))

"""Recorded eye-tracker traces, replayed with a recorded RGB-D sequence.

Why: the whole gaze path (samples -> fixations -> dwell -> masks) should run on real recorded
gaze without a headset. A trace is a file of samples; `GazeTraceSource` wraps any source and
attaches to each frame the samples recorded since the previous frame, in that frame's pixels.

File formats (one sample per row / line; a sample is a pixel or a ray):
- CSV with a header row: ``t,x,y[,confidence]`` (pixel of the frame at time t) or
  ``t,ox,oy,oz,dx,dy,dz[,confidence]`` (gaze ray: origin and direction).
- JSON lines (``.jsonl`` / ``.ndjson``): ``{"t": 1.25, "x": 320.5, "y": 240.0, "confidence": 0.9}``
  or ``{"t": 1.25, "origin": [x, y, z], "direction": [x, y, z], "confidence": 0.9}``.

t is seconds on the sequence's clock: the frames' device timestamps (Redwood and slambook
folders: frame index / 30; TUM: its timestamps; RealSense recordings: the recorded device
time). A ray is in the sequence's world (the frame of its camera-to-world poses; for frames
without a pose, the camera's own OpenCV frame) and becomes a pixel through the frame's pose,
intrinsics and depth (`xr_geometry.gaze_ray_to_pixel`). confidence is 0..1 (default 1).
Samples that fall outside the image are dropped.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from clients.gaze_script import GazeScript
from clients.sources.base import Source, SourceError, SourceFrame, SourceInfo
from clients.sources.xr_geometry import gaze_ray_to_pixel
from engine.core import GazeSample, Pose, RGBDFrame

FIRST_FRAME_WINDOW_S = 0.1
"""Samples this long before the first frame still belong to it."""


@dataclass(frozen=True, eq=False)
class GazeTrace:
    """Samples sorted by time.

    t: (N,); pixels: (N, 2) or rays: (N, 6) origin + direction; confidence: (N,).
    """

    t: np.ndarray
    confidence: np.ndarray
    pixels: np.ndarray | None = None
    rays: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.t)

    def between(self, t0: float, t1: float) -> np.ndarray:
        """Indices of samples with t0 < t <= t1."""
        return np.arange(np.searchsorted(self.t, t0, side="right"), np.searchsorted(self.t, t1, side="right"))

    def samples_for(self, frame: RGBDFrame, t0: float, t1: float) -> tuple[GazeSample, ...]:
        """The samples of (t0, t1] in frame's pixels, oldest first."""
        out = []
        depth_m = frame.depth_m if self.rays is not None and frame.depth is not None else None
        pose = frame.pose or Pose.identity()
        k = frame.intrinsics
        for i in self.between(t0, t1):
            if self.pixels is not None:
                x, y = self.pixels[i]
                if not (0 <= x < k.width and 0 <= y < k.height):
                    continue
            else:
                assert self.rays is not None
                pixel = gaze_ray_to_pixel(self.rays[i, :3], self.rays[i, 3:], pose, k, depth_m)
                if pixel is None:
                    continue
                x, y = pixel
            out.append(
                GazeSample(t=float(self.t[i]), x=float(x), y=float(y), confidence=float(self.confidence[i]))
            )
        return tuple(out)


def read_gaze_trace(path: Path) -> GazeTrace:
    """Read a CSV or JSON-lines trace (see the module docstring). Raises SourceError with the line."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"gaze trace {path} not found")
    rows = _read_jsonl(path) if path.suffix.lower() in (".jsonl", ".ndjson", ".json") else _read_csv(path)
    if not rows:
        raise SourceError(f"gaze trace {path} holds no samples")
    kinds = {len(r) for r in rows}
    if len(kinds) != 1:
        raise SourceError(f"gaze trace {path} mixes pixel and ray samples; use one kind per file")
    data = np.asarray(rows, dtype=np.float64)
    if not np.all(np.isfinite(data)):
        raise SourceError(f"gaze trace {path} has NaN or infinite values")
    data = data[np.argsort(data[:, 0], kind="stable")]
    confidence = data[:, -1]
    if np.any((confidence < 0) | (confidence > 1)):
        raise SourceError(f"gaze trace {path}: confidence must be within 0..1")
    if data.shape[1] == 4:
        return GazeTrace(data[:, 0], confidence, pixels=data[:, 1:3])
    rays = data[:, 1:7]
    if np.any(np.linalg.norm(rays[:, 3:], axis=1) == 0):
        raise SourceError(f"gaze trace {path}: a ray has a zero direction")
    return GazeTrace(data[:, 0], confidence, rays=rays)


def write_gaze_trace(path: Path, trace: GazeTrace) -> None:
    """Write a trace as CSV (the reader's format), e.g. from a GazeScript or an eye tracker's export."""
    with Path(path).open("w", newline="") as f:
        writer = csv.writer(f)
        if trace.pixels is not None:
            writer.writerow(["t", "x", "y", "confidence"])
            body = np.column_stack([trace.t, trace.pixels, trace.confidence])
        else:
            writer.writerow(["t", "ox", "oy", "oz", "dx", "dy", "dz", "confidence"])
            body = np.column_stack([trace.t, trace.rays, trace.confidence])
        writer.writerows(body.tolist())


def trace_from_script(script: GazeScript, frames: list[RGBDFrame]) -> GazeTrace:
    """A pixel trace from a GazeScript (one sample per frame at its capture_ts): scripted gaze
    saved as a file, the way a real eye tracker's export is replayed."""
    rows = []
    for index, frame in enumerate(frames):
        sample = script.gaze(index, frame, frame.capture_ts)
        if sample is not None:
            rows.append((sample.t, sample.x, sample.y, sample.confidence))
    data = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    return GazeTrace(data[:, 0], data[:, 3], pixels=data[:, 1:3])


class GazeTraceSource:
    """Any source, with the trace's samples attached to each frame (replacing the source's own)."""

    def __init__(self, inner: Source, trace: GazeTrace) -> None:
        self._inner = inner
        self._trace = trace
        self._last_ts: float | None = None

    def start(self) -> SourceInfo:
        info = self._inner.start()
        return replace(info, name=f"{info.name} + gaze trace ({len(self._trace)} samples)", has_gaze=True)

    def read(self) -> SourceFrame | None:
        item = self._inner.read()
        if item is None:
            return None
        t0 = item.device_ts - FIRST_FRAME_WINDOW_S if self._last_ts is None else self._last_ts
        self._last_ts = item.device_ts
        return replace(item, gaze=self._trace.samples_for(item.frame, t0, item.device_ts))

    def stop(self) -> None:
        self._inner.stop()


def _read_csv(path: Path) -> list[list[float]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        fields = [name.strip() for name in reader.fieldnames or []]
        if {"t", "x", "y"} <= set(fields):
            columns = ["t", "x", "y"]
        elif {"t", "ox", "oy", "oz", "dx", "dy", "dz"} <= set(fields):
            columns = ["t", "ox", "oy", "oz", "dx", "dy", "dz"]
        else:
            raise SourceError(
                f"{path}: header must have t,x,y[,confidence] or t,ox,oy,oz,dx,dy,dz[,confidence]; "
                f"got {','.join(fields)}"
            )
        rows = []
        for number, row in enumerate(reader, 2):
            row = {k.strip(): v for k, v in row.items() if k is not None}
            try:
                values = [float(row[c]) for c in columns]
                values.append(float(row["confidence"]) if row.get("confidence") not in (None, "") else 1.0)
            except (TypeError, ValueError) as exc:
                raise SourceError(f"{path}:{number}: {exc}") from None
            rows.append(values)
    return rows


def _read_jsonl(path: Path) -> list[list[float]]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if "x" in item:
                values = [float(item["t"]), float(item["x"]), float(item["y"])]
            else:
                values = [float(item["t"]), *map(float, item["origin"]), *map(float, item["direction"])]
                if len(values) != 7:
                    raise ValueError("origin and direction need 3 numbers each")
            values.append(float(item.get("confidence", 1.0)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SourceError(f"{path}:{number}: not a gaze sample ({exc})") from None
        rows.append(values)
    return rows

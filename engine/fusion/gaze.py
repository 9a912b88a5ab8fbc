"""Gaze samples -> fixations -> dwell selection, as a bounded-memory stream.

Why: a headset eye tracker sends 60-200 noisy samples a second, with blinks and tracking loss.
The engine must not prompt the decoder with every sample: it waits for the eye to *fixate* (the
moment a speculative decode can start, ARCHITECTURE principle 4) and for the fixation to *dwell*
long enough to count as a selection (the moment the answer is committed).

Method: I-VT, the velocity-threshold identification of Salvucci & Goldberg (2000), in the form of
Tobii's I-VT filter (Olsen 2012): gap fill, velocity over a window, threshold, merge of adjacent
fixations, discard of short ones. Every step works on *visual angle*, not pixels, so the
thresholds carry over between cameras: a gaze pixel is turned into a ray with the camera's
focal length and principal point (`GazeGeometry`), and angles are angles between rays.

Thresholds (`FixationConfig` defaults) and why:

- velocity 30 deg/s: the usual I-VT value (Salvucci & Goldberg 2000; Tobii's default). Fixation
  drift and tremor stay well below it, saccades peak at 200-700 deg/s (main sequence).
- velocity window 40 ms: velocity is the angle between the mean gaze ray of the 40 ms before a
  sample and of the 40 ms from it (each side at least 2 samples, so 60 Hz and dropouts do not
  leave a one-sample side), over the time between the two windows' mean timestamps (a
  smoothed derivative, like Nystroem & Holmqvist's 2010 Savitzky-Golay filter). Headset
  trackers have ~0.3-1 deg sample noise; differentiated sample to sample at 120 Hz that noise
  alone is ~60 deg/s, twice the threshold. Over 40 ms windows it is ~5-8 deg/s at 60-200 Hz,
  while even a 3 deg saccade still reads ~75 deg/s. Cost: samples are classified 40 ms late.
- minimum fixation 100 ms: the classic lower bound of a fixation (Salvucci & Goldberg 2000 use
  100-200 ms for I-DT); shorter stable stretches are not treated as fixations.
- merge gap 75 ms and merge angle 1 deg: two fixation pieces separated by faster-than-threshold
  samples spanning at most 75 ms (a velocity spike, a tracker glitch; bridged dropouts do not
  count), whose positions differ by less than 1 deg, are one
  fixation (Tobii uses 75 ms / 0.5 deg for lab trackers; 1 deg suits headset noise; true
  fixations after a saccade of more than ~1.5 deg stay separate).
- gap fill 75 ms: missing or low-confidence data shorter than that (a dropped sample, a partial
  eyelid) is bridged; longer loss (a blink lasts 100-400 ms) ends the fixation (Olsen 2012).
- confidence 0.5: samples below it are ignored as missing, never fatal.
- dwell 600 ms: dwell-time selection in gaze interfaces uses ~150 ms to 1 s (Jacob 1990 used
  150-250 ms where a wrong pick is cheap to undo, and longer dwells where it is not; ~500-1000 ms
  is common in AR/VR menus). Selecting an object to segment is a deliberate act; 600 ms also
  leaves a speculative decode started at `fixation_started` (~100 ms in) time to finish.

The eye is assumed to sit at the scene camera's centre: for a head-mounted camera a few cm from the
eye and targets beyond 0.5 m, the parallax error is a few degrees at most in position and
negligible in velocity.

Streaming use::

    detector = FixationDetector(GazeGeometry.from_intrinsics(frame.intrinsics))
    for sample in samples:
        for event in detector.push(sample):
            if event.kind is FixationEventKind.STARTED: ...   # start a speculative decode
            if event.kind is FixationEventKind.DWELL_COMPLETED: ...  # the selection fires

Memory is bounded: the detector keeps only the samples of the last two velocity windows plus
O(1) running sums for the open fixation.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from engine.core.frame import CameraIntrinsics
from engine.core.prompts import GazeSample


@dataclass(frozen=True)
class GazeGeometry:
    """Pinhole model that turns gaze pixels into viewing rays, so thresholds are in degrees.

    Attributes:
        fx, fy: focal lengths in pixels (> 0).
        cx, cy: principal point in pixels.
    """

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fx) and math.isfinite(self.fy) and self.fx > 0 and self.fy > 0):
            raise ValueError(f"GazeGeometry needs finite focal lengths > 0, got fx={self.fx}, fy={self.fy}")
        if not (math.isfinite(self.cx) and math.isfinite(self.cy)):
            raise ValueError(f"GazeGeometry needs a finite principal point, got ({self.cx}, {self.cy})")

    @classmethod
    def from_intrinsics(cls, intrinsics: CameraIntrinsics) -> GazeGeometry:
        """The geometry of the frame the gaze pixels are given in (the usual case)."""
        return cls(intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy)

    @classmethod
    def from_fov(cls, width: int, height: int, horizontal_fov_deg: float) -> GazeGeometry:
        """For clients that send no intrinsics: square pixels, centred principal point."""
        if not (0.0 < horizontal_fov_deg < 180.0) or width <= 0 or height <= 0:
            raise ValueError(
                f"from_fov needs a positive image size and 0 < horizontal_fov_deg < 180, "
                f"got {width}x{height} and {horizontal_fov_deg}"
            )
        f = (width / 2.0) / math.tan(math.radians(horizontal_fov_deg) / 2.0)
        return cls(f, f, (width - 1) / 2.0, (height - 1) / 2.0)

    def ray(self, x: float, y: float) -> tuple[float, float, float]:
        """Unit viewing ray (camera frame, OpenCV axes) through pixel (x, y)."""
        dx = (x - self.cx) / self.fx
        dy = (y - self.cy) / self.fy
        n = math.sqrt(dx * dx + dy * dy + 1.0)
        return dx / n, dy / n, 1.0 / n

    def pixel(self, ray: tuple[float, float, float]) -> tuple[float, float]:
        """Pixel (x, y) hit by a ray (any length, z > 0)."""
        x, y, z = ray
        return self.cx + self.fx * x / z, self.cy + self.fy * y / z


def angle_deg(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """Angle in degrees between two vectors of any (non-zero) length; accurate at small angles."""
    cx = a[1] * b[2] - a[2] * b[1]
    cy = a[2] * b[0] - a[0] * b[2]
    cz = a[0] * b[1] - a[1] * b[0]
    dot = a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
    return math.degrees(math.atan2(math.sqrt(cx * cx + cy * cy + cz * cz), dot))


@dataclass(frozen=True)
class FixationConfig:
    """Thresholds of the I-VT fixation filter; the module docstring says where each comes from.

    Attributes:
        velocity_threshold_deg_s: samples slower than this are fixation samples.
        velocity_window_s: length of each of the two windows whose mean rays give the velocity.
        min_fixation_s: a fixation is reported (``fixation_started``) once it lasted this long.
        merge_max_gap_s: fixation pieces separated by faster samples spanning at most this ...
        merge_max_angle_deg: ... and whose positions differ by at most this much are one fixation.
        max_gap_s: missing/low-confidence data up to this long is bridged; longer ends a fixation.
        min_confidence: samples with lower confidence (or non-finite coordinates) are missing.
        dwell_s: fixation duration at which ``dwell_completed`` fires (once per fixation).
        update_interval_s: ``fixation_updated`` is emitted at most this often per fixation.
    """

    velocity_threshold_deg_s: float = 30.0
    velocity_window_s: float = 0.040
    min_fixation_s: float = 0.100
    merge_max_gap_s: float = 0.075
    merge_max_angle_deg: float = 1.0
    max_gap_s: float = 0.075
    min_confidence: float = 0.5
    dwell_s: float = 0.600
    update_interval_s: float = 0.050

    def __post_init__(self) -> None:
        positive = {
            "velocity_threshold_deg_s": self.velocity_threshold_deg_s,
            "velocity_window_s": self.velocity_window_s,
            "min_fixation_s": self.min_fixation_s,
            "merge_max_angle_deg": self.merge_max_angle_deg,
            "max_gap_s": self.max_gap_s,
            "dwell_s": self.dwell_s,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"FixationConfig.{name} must be a positive number, got {value}")
        if not (math.isfinite(self.merge_max_gap_s) and self.merge_max_gap_s >= 0):
            raise ValueError(f"FixationConfig.merge_max_gap_s must be >= 0, got {self.merge_max_gap_s}")
        if not (math.isfinite(self.update_interval_s) and self.update_interval_s >= 0):
            raise ValueError(f"FixationConfig.update_interval_s must be >= 0, got {self.update_interval_s}")
        if not (0.0 <= self.min_confidence <= 1.0):
            raise ValueError(f"FixationConfig.min_confidence must be in [0, 1], got {self.min_confidence}")
        if self.dwell_s < self.min_fixation_s:
            raise ValueError(
                f"FixationConfig.dwell_s ({self.dwell_s}) must be >= min_fixation_s ({self.min_fixation_s}): "
                "a dwell is a fixation that lasted long enough"
            )


@dataclass(frozen=True)
class Fixation:
    """A fixation, or the part of one seen so far.

    Attributes:
        start, end: timestamps (seconds, the gaze samples' clock) of its first and last sample.
        x, y: centroid in pixels of the gaze frame: the pixel of the mean gaze ray.
        dispersion_deg: RMS angle in degrees between its samples' rays and the mean ray.
        sample_count: gaze samples it contains.
    """

    start: float
    end: float
    x: float
    y: float
    dispersion_deg: float
    sample_count: int

    @property
    def duration(self) -> float:
        """end - start, seconds."""
        return self.end - self.start


class FixationEventKind(StrEnum):
    """What happened to a fixation; values are the wire names."""

    STARTED = "fixation_started"  # lasted min_fixation_s: start a speculative decode here
    UPDATED = "fixation_updated"  # still going; centroid refined
    DWELL_COMPLETED = "dwell_completed"  # lasted dwell_s: the selection fires
    ENDED = "fixation_ended"  # saccade, long data loss or end of stream


@dataclass(frozen=True)
class FixationEvent:
    """One event of one fixation. fixation_id counts fixations from 0 within one detector."""

    kind: FixationEventKind
    fixation_id: int
    fixation: Fixation


@dataclass(frozen=True)
class GazeStats:
    """Counters of what the detector did with its input (for logs and tests)."""

    samples: int
    low_confidence: int
    out_of_order: int
    fixations: int


class _Point(NamedTuple):
    t: float
    ray: tuple[float, float, float]


_MIN_SIDE = 2
"""Fewest samples on each side of the velocity estimate (where the buffer has them)."""


def _mean(window: deque[_Point], i0: int, i1: int) -> tuple[tuple[float, float, float], float]:
    """Sum of the rays and mean timestamp of window[i0:i1] (non-empty)."""
    x = y = z = t = 0.0
    for k in range(i0, i1):
        q = window[k]
        x += q.ray[0]
        y += q.ray[1]
        z += q.ray[2]
        t += q.t
    return (x, y, z), t / (i1 - i0)


class _Group:
    """The open fixation (or candidate, before min_fixation_s): running sums only."""

    __slots__ = (
        "id",
        "start",
        "last",
        "sx",
        "sy",
        "sz",
        "n",
        "confirmed",
        "dwelled",
        "last_update",
        "fast_first",
    )

    def __init__(self, p: _Point) -> None:
        self.id = -1  # assigned when confirmed, so ids count reported fixations only
        self.start = p.t
        self.last = p.t
        self.sx, self.sy, self.sz = p.ray
        self.n = 1
        self.confirmed = False
        self.dwelled = False
        self.last_update = p.t
        self.fast_first: float | None = None  # first faster-than-threshold sample since `last`

    def add(self, p: _Point) -> None:
        self.last = p.t
        self.sx += p.ray[0]
        self.sy += p.ray[1]
        self.sz += p.ray[2]
        self.n += 1
        self.fast_first = None

    @property
    def mean_ray(self) -> tuple[float, float, float]:
        return self.sx, self.sy, self.sz

    def snapshot(self, geometry: GazeGeometry) -> Fixation:
        x, y = geometry.pixel(self.mean_ray)
        resultant = math.sqrt(self.sx * self.sx + self.sy * self.sy + self.sz * self.sz) / self.n
        dispersion = math.degrees(math.sqrt(max(0.0, 2.0 * (1.0 - min(1.0, resultant)))))
        return Fixation(self.start, self.last, x, y, dispersion, self.n)


class FixationDetector:
    """Streaming I-VT fixation and dwell detector for one gaze stream (one session).

    Feed samples in timestamp order with `push`; each call returns the events it caused (usually
    none, at most a few). Call `finish` at the end of the stream to close an open fixation.
    Samples are classified ``velocity_window_s`` late (the velocity needs that much future), so
    events lag the eye by that much.
    """

    def __init__(self, geometry: GazeGeometry, config: FixationConfig = FixationConfig()) -> None:
        self.geometry = geometry
        self.config = config
        self._window: deque[_Point] = deque()  # valid samples, oldest first
        self._next = 0  # index in _window of the oldest sample not yet classified
        self._group: _Group | None = None
        self._last_valid_t: float | None = None
        self._last_t: float | None = None
        self._next_id = 0
        self._samples = 0
        self._low_confidence = 0
        self._out_of_order = 0

    @property
    def stats(self) -> GazeStats:
        return GazeStats(self._samples, self._low_confidence, self._out_of_order, self._next_id)

    @property
    def buffered_samples(self) -> int:
        """Samples held for the velocity windows; bounded by the sample rate times 2 windows."""
        return len(self._window)

    def current(self) -> Fixation | None:
        """The open fixation so far (None before one lasted min_fixation_s, or between fixations)."""
        g = self._group
        return g.snapshot(self.geometry) if g is not None and g.confirmed else None

    def push(self, sample: GazeSample) -> tuple[FixationEvent, ...]:
        """Add one sample (timestamps must increase; repeats and older ones are counted and ignored).

        Samples with confidence below ``min_confidence`` or non-finite coordinates are treated as
        missing data: they only advance the clock, which ends the open fixation once data has
        been missing for more than ``max_gap_s``.
        """
        self._samples += 1
        t = float(sample.t)
        if not math.isfinite(t) or (self._last_t is not None and t <= self._last_t):
            self._out_of_order += 1
            return ()
        self._last_t = t
        events: list[FixationEvent] = []
        valid = (
            sample.confidence >= self.config.min_confidence
            and math.isfinite(sample.x)
            and math.isfinite(sample.y)
        )
        if self._last_valid_t is not None and t - self._last_valid_t > self.config.max_gap_s:
            events.extend(self._close_stream())
            self._last_valid_t = None
        if not valid:
            self._low_confidence += 1
            return tuple(events)
        self._last_valid_t = t
        self._window.append(_Point(t, self.geometry.ray(sample.x, sample.y)))
        self._classify_ready(events, force=False)
        return tuple(events)

    def finish(self) -> tuple[FixationEvent, ...]:
        """End of stream: classify what is buffered and end the open fixation, if any."""
        events = list(self._close_stream())
        self._last_valid_t = None
        return tuple(events)

    # -- internals ---------------------------------------------------------------------------

    def _close_stream(self) -> list[FixationEvent]:
        """Data stopped (long gap or end): classify the rest with shortened windows, end the group."""
        events: list[FixationEvent] = []
        self._classify_ready(events, force=True)
        if self._group is not None:
            events.extend(self._end_group())
        self._window.clear()
        self._next = 0
        return events

    def _classify_ready(self, events: list[FixationEvent], force: bool) -> None:
        """Classify every buffered sample whose forward window is complete (all when force)."""
        window = self._window
        horizon = self.config.velocity_window_s
        newest = window[-1].t if window else 0.0
        while self._next < len(window):
            if not force and window[self._next].t > newest - horizon:
                break
            self._classify(self._next, events)
            self._next += 1
        # Keep one window before the next unclassified sample, and at least MIN_SIDE samples.
        keep_from = window[self._next].t - horizon if self._next < len(window) else newest - horizon
        while self._next > _MIN_SIDE and window[0].t <= keep_from:
            window.popleft()
            self._next -= 1

    def _classify(self, i: int, events: list[FixationEvent]) -> None:
        """Velocity of sample window[i] from the mean rays before and from it; then the state machine.

        Each side is the samples within ``velocity_window_s``, widened to at least MIN_SIDE samples
        where the buffer has them, so that a dropout next to the sample does not leave a one-sample
        (noisy) side. A dropout between the sides is bridged: the eye may have moved unseen, and the
        rays before and after it say so.
        """
        window = self._window
        p = window[i]
        h = self.config.velocity_window_s
        a0 = i
        while a0 > 0 and (window[a0 - 1].t > p.t - h or i - a0 < _MIN_SIDE):
            a0 -= 1
        b1 = i + 1
        while b1 < len(window) and (window[b1].t <= p.t + h or b1 - i < _MIN_SIDE):
            b1 += 1
        if a0 == i:
            return  # first sample after a reset: no velocity yet, nothing to classify
        before = _mean(window, a0, i)
        after = _mean(window, i, b1)
        velocity = angle_deg(before[0], after[0]) / (after[1] - before[1])
        if velocity < self.config.velocity_threshold_deg_s:
            smoothed = (before[0][0] + after[0][0], before[0][1] + after[0][1], before[0][2] + after[0][2])
            self._on_slow(p, smoothed, events)
        else:
            self._on_fast(p, events)

    def _on_slow(self, p: _Point, smoothed: tuple[float, float, float], events: list[FixationEvent]) -> None:
        cfg = self.config
        g = self._group
        if g is not None and g.fast_first is not None:
            near = angle_deg(smoothed, g.mean_ray) <= cfg.merge_max_angle_deg
            if not near:
                events.extend(self._end_group())
                g = None
        if g is None:
            self._group = _Group(p)
            return
        g.add(p)
        duration = g.last - g.start
        if not g.confirmed:
            if duration >= cfg.min_fixation_s:
                g.confirmed = True
                g.id = self._next_id
                self._next_id += 1
                g.last_update = p.t
                events.append(FixationEvent(FixationEventKind.STARTED, g.id, g.snapshot(self.geometry)))
        elif not g.dwelled and duration >= cfg.dwell_s:
            g.dwelled = True
            g.last_update = p.t
            events.append(FixationEvent(FixationEventKind.DWELL_COMPLETED, g.id, g.snapshot(self.geometry)))
        elif p.t - g.last_update >= cfg.update_interval_s:
            g.last_update = p.t
            events.append(FixationEvent(FixationEventKind.UPDATED, g.id, g.snapshot(self.geometry)))

    def _on_fast(self, p: _Point, events: list[FixationEvent]) -> None:
        """A faster sample interrupts the open fixation; more than merge_max_gap_s of them end it.

        The interruption is timed from the first to the last fast sample, so bridged dropouts
        around a noise spike do not count towards it (as with Tobii's gap fill before merging).
        """
        g = self._group
        if g is None:
            return
        if g.fast_first is None:
            g.fast_first = p.t
        if p.t - g.fast_first > self.config.merge_max_gap_s:
            events.extend(self._end_group())

    def _end_group(self) -> list[FixationEvent]:
        g = self._group
        self._group = None
        if g is None or not g.confirmed:
            return []  # a candidate shorter than min_fixation_s is not a fixation: no events
        return [FixationEvent(FixationEventKind.ENDED, g.id, g.snapshot(self.geometry))]


def detect_fixations(
    samples: Iterable[GazeSample],
    geometry: GazeGeometry,
    config: FixationConfig = FixationConfig(),
) -> list[Fixation]:
    """All fixations of a whole trace, in time order: the streaming detector run to the end.

    Args:
        samples: gaze samples in timestamp order, pixel coordinates of the frame `geometry`
            describes.
        geometry: the frame's pinhole model (`GazeGeometry.from_intrinsics`).
        config: see FixationConfig.
    """
    detector = FixationDetector(geometry, config)
    out: list[Fixation] = []
    for s in samples:
        out.extend(e.fixation for e in detector.push(s) if e.kind is FixationEventKind.ENDED)
    out.extend(e.fixation for e in detector.finish() if e.kind is FixationEventKind.ENDED)
    return out

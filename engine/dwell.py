"""One session's gaze: samples -> fixations -> dwell selection, and the speculative answer at a fixation.

Why: a user selects by looking. The fixation detector (engine/fusion/gaze.py) says when the eye
settled (`fixation_started`, ~100 ms in) and when it stayed long enough to mean it
(`dwell_completed`, 600 ms). The half second between the two is free time: the session decodes
the mask at the fixation then (ARCHITECTURE principle 4), so when the dwell completes the answer
is already there and only needs sending.

`GazeState` keeps the detector and the one speculation a session may hold. It does no decoding
itself: the session asks `wanted()` what to decode when it is idle, hands the answer to
`store()`, and asks `serve()` whether a stored answer fits a prompt.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from engine.core import CameraIntrinsics, GazeSample, RGBDFrame
from engine.fusion import (
    Fixation,
    FixationConfig,
    FixationDetector,
    FixationEvent,
    FixationEventKind,
    GazeGeometry,
)
from engine.pipeline import Answer


@dataclass(frozen=True)
class DwellConfig:
    """Fixation thresholds (see engine/fusion/gaze.py) and when a speculative answer may be reused.

    Attributes:
        fixation: I-VT and dwell thresholds.
        reuse_radius_px: a speculative answer serves a prompt whose gaze point is within this
            distance of the point it was decoded at (8 px at fx 525 is ~0.9 deg, inside the
            fixation's own dispersion).
        respeculate_px: decode again while the fixation lasts only when its centroid moved this far.
    """

    fixation: FixationConfig = FixationConfig()
    reuse_radius_px: float = 8.0
    respeculate_px: float = 4.0


@dataclass(frozen=True)
class SpeculationRequest:
    """Decode here: the open fixation's centroid (pixels of the gaze frame)."""

    fixation_id: int
    x: float
    y: float


@dataclass(frozen=True, eq=False)
class Speculation:
    """A decode done at a fixation before it was asked for: its answer is in `frame`'s pixels."""

    fixation_id: int
    x: float
    y: float
    frame: RGBDFrame
    answer: Answer


@dataclass(frozen=True)
class GazeUpdate:
    """What one prompt's samples did: the events, and the dwell selection if one fired."""

    events: tuple[FixationEvent, ...]
    dwell: FixationEvent | None
    fixation: Fixation | None  # the open fixation after the samples, if any


class GazeState:
    """Per-session fixation detector plus its speculation slot (bounded: one request, one answer)."""

    def __init__(self, config: DwellConfig = DwellConfig()) -> None:
        self.config = config
        self._detector: FixationDetector | None = None
        self._want: SpeculationRequest | None = None
        self._held: Speculation | None = None

    @property
    def active(self) -> bool:
        """A fixation is open (the user is looking at something)."""
        return self._detector is not None and self._detector.current() is not None

    def push(self, samples: Iterable[GazeSample], intrinsics: CameraIntrinsics) -> GazeUpdate:
        """Feed a prompt's samples (any order; they are sorted by time) into the detector."""
        if self._detector is None:
            self._detector = FixationDetector(GazeGeometry.from_intrinsics(intrinsics), self.config.fixation)
        events: list[FixationEvent] = []
        for sample in sorted(samples, key=lambda s: s.t):
            events.extend(self._detector.push(sample))
        dwell = None
        for event in events:
            fx = event.fixation
            if event.kind in (FixationEventKind.STARTED, FixationEventKind.UPDATED):
                held = self._held
                same = held is not None and held.fixation_id == event.fixation_id
                if not same or math.dist((held.x, held.y), (fx.x, fx.y)) > self.config.respeculate_px:
                    self._want = SpeculationRequest(event.fixation_id, fx.x, fx.y)
            elif event.kind is FixationEventKind.DWELL_COMPLETED:
                dwell = event
            elif event.kind is FixationEventKind.ENDED:
                if self._want is not None and self._want.fixation_id == event.fixation_id:
                    self._want = None
                if self._held is not None and self._held.fixation_id == event.fixation_id and dwell is None:
                    self._held = None
        return GazeUpdate(tuple(events), dwell, self._detector.current())

    def wanted(self) -> SpeculationRequest | None:
        """The speculative decode to run next (taken: asking again returns None until a new one)."""
        want, self._want = self._want, None
        return want

    def has_wanted(self) -> bool:
        return self._want is not None

    def want(self, request: SpeculationRequest) -> None:
        """Ask again for a speculation that could not run yet (no keyframe), unless a newer one is asked."""
        if self._want is None:
            self._want = request

    def store(self, speculation: Speculation) -> None:
        self._held = speculation

    def serve(self, fixation_id: int | None, x: float, y: float) -> Speculation | None:
        """The held answer if it was decoded for this fixation (or any, when None) near (x, y)."""
        held = self._held
        if held is None or (fixation_id is not None and held.fixation_id != fixation_id):
            return None
        if math.dist((held.x, held.y), (x, y)) > self.config.reuse_radius_px:
            return None
        return held

"""One session's gaze: samples -> fixations -> dwell selection, and the held answer at a gaze point.

Why: a user selects by looking. The fixation detector (engine/fusion/gaze.py) says when the eye
settled (`fixation_started`, ~100 ms in) and when it stayed long enough to mean it
(`dwell_completed`, 600 ms). The half second between the two is free time: the session decodes
the mask at the fixation then (ARCHITECTURE principle 4), so when the dwell completes the answer
is already there and only needs sending.

The same slot holds the answer to the latest gaze prompt: gaze comes with every frame and stays on
one object for hundreds of milliseconds, so a gaze prompt that lands within `reuse_radius_px` of
the held answer's point (compared in the new frame's pixels, through depth and pose) is answered
by moving that answer's masks into the new frame, without decoding again, as long as the held
answer is younger than `reuse_max_s`. Past that, while the gaze stays on the held answer's mask,
the next decode renews it as the same object (engine/renewal.py: how a long fixation keeps one
object instead of letting each frame decide afresh what the gaze point belongs to).

`GazeState` keeps the detector and that one slot. It does no decoding itself: the session asks
`wanted()` what to decode when it is idle, hands answers to `store()`, asks `serve()` whether
the held answer fits a prompt as it is, and `on_object()` whether a decode should renew it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from engine.core import CameraIntrinsics, GazeSample, RGBDFrame, gaze_point
from engine.fusion import (
    Fixation,
    FixationConfig,
    FixationDetector,
    FixationEvent,
    FixationEventKind,
    GazeGeometry,
)
from engine.mapping import FrameMapping, MappingConfig
from engine.pipeline import Answer
from engine.renewal import lands_on
from engine.tracking import TrackState


@dataclass(frozen=True)
class DwellConfig:
    """Fixation thresholds (see engine/fusion/gaze.py) and when a held answer may be reused.

    Attributes:
        fixation: I-VT and dwell thresholds.
        reuse_radius_px: a held answer serves a prompt whose gaze point is within this distance of
            the point it was decoded at, both in the prompt frame's pixels (8 px at fx 525 is ~0.9
            deg, inside a fixation's own dispersion).
        reuse_max_s: ... and when it is younger than this (its masks are warped to the new frame;
            surfaces that came into view since then are not in them).
        respeculate_px: decode again while the fixation lasts only when its centroid moved this far.
        on_object_px: a gaze point within this distance of the held answer's mask (in its frame)
            is on the held object: the next decode renews that object (engine/renewal.py).
        renew_min_px: a renewed mask smaller than this lost the object: decode afresh instead.
    """

    fixation: FixationConfig = field(default_factory=FixationConfig)
    reuse_radius_px: float = 8.0
    reuse_max_s: float = 1.0
    respeculate_px: float = 4.0
    on_object_px: int = 2
    renew_min_px: int = 64


@dataclass(frozen=True)
class SpeculationRequest:
    """Decode here: the open fixation's centroid (pixels of the gaze frame)."""

    fixation_id: int
    x: float
    y: float


@dataclass(frozen=True, eq=False)
class Speculation:
    """A held answer at a gaze point: decoded at a fixation before it was asked for, or the answer
    to the latest gaze prompt. (x, y) and the answer's masks are in `frame`'s pixels; made is
    time.time() when it was decoded; fixation_id is None when no fixation was open; track is the
    tracker state a renewal left (engine/renewal.py), None for an answer decoded afresh.
    object_id names the object it holds: a renewal passes on the renewed answer's, an answer
    decoded afresh gets a new one from `GazeState.store` (None here); the session's world anchor
    (engine/anchor.py) fuses over the answers of one object_id and starts afresh on another."""

    fixation_id: int | None
    x: float
    y: float
    frame: RGBDFrame
    answer: Answer
    made: float
    track: TrackState | None = None
    object_id: int | None = None


@dataclass(frozen=True)
class GazeUpdate:
    """What one prompt's samples did: the events, and the dwell selection if one fired."""

    events: tuple[FixationEvent, ...]
    dwell: FixationEvent | None
    fixation: Fixation | None  # the open fixation after the samples, if any


class GazeState:
    """Per-session fixation detector plus its one held answer and one wanted speculation."""

    def __init__(self, config: DwellConfig | None = None) -> None:
        self.config = config or DwellConfig()
        self._detector: FixationDetector | None = None
        self._want: SpeculationRequest | None = None
        self._held: Speculation | None = None
        self._open_id: int | None = None
        self._last_gaze: tuple[float, float] | None = None
        self._objects = 0  # object ids handed out (Speculation.object_id)

    @property
    def active(self) -> bool:
        """A fixation is open (the user is looking at something)."""
        return self._detector is not None and self._detector.current() is not None

    @property
    def last_gaze(self) -> tuple[float, float] | None:
        """Where the eye was in the latest prompt: the confidence-weighted mean of its samples
        (pixels of that prompt's frame, as the prompt's own gaze point), or None before any."""
        return self._last_gaze

    @property
    def open_fixation_id(self) -> int | None:
        """Id of the fixation open after the last samples, or None."""
        return self._open_id if self.active else None

    def push(self, samples: Iterable[GazeSample], intrinsics: CameraIntrinsics) -> GazeUpdate:
        """Feed a prompt's samples (any order; they are sorted by time) into the detector."""
        if self._detector is None:
            self._detector = FixationDetector(GazeGeometry.from_intrinsics(intrinsics), self.config.fixation)
        events: list[FixationEvent] = []
        ordered = sorted(samples, key=lambda s: s.t)
        for sample in ordered:
            events.extend(self._detector.push(sample))
        if ordered:
            self._last_gaze = gaze_point(ordered)
        dwell = None
        for event in events:
            fx = event.fixation
            if event.kind in (FixationEventKind.STARTED, FixationEventKind.UPDATED):
                self._open_id = event.fixation_id
                held = self._held
                same = held is not None and held.fixation_id == event.fixation_id
                if not same or math.dist((held.x, held.y), (fx.x, fx.y)) > self.config.respeculate_px:
                    self._want = SpeculationRequest(event.fixation_id, fx.x, fx.y)
            elif event.kind is FixationEventKind.DWELL_COMPLETED:
                dwell = event
            elif event.kind is FixationEventKind.ENDED:
                self._open_id = None
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

    def store(self, speculation: Speculation) -> Speculation:
        """Hold `speculation`; one without an object_id (decoded afresh) gets a new one. Returns
        what is held."""
        if speculation.object_id is None:
            self._objects += 1
            speculation = replace(speculation, object_id=self._objects)
        self._held = speculation
        return speculation

    def serve(
        self,
        fixation_id: int | None,
        x: float,
        y: float,
        frame: RGBDFrame,
        now: float,
        mapping: MappingConfig,
    ) -> Speculation | None:
        """The held answer if it was decoded for this fixation (or any, when None), is fresh, and its
        point lands within reuse_radius_px of (x, y) in `frame`'s pixels."""
        held = self._held
        if held is None or (fixation_id is not None and held.fixation_id != fixation_id):
            return None
        if now - held.made > self.config.reuse_max_s:
            return None
        hx, hy = held.x, held.y
        if held.frame.frame_id != frame.frame_id:
            if held.frame.pose is None or frame.pose is None:
                return None
            moved = FrameMapping.between(held.frame, frame, mapping).points([[held.x, held.y]])
            if not moved.visible[0]:
                return None
            hx, hy = float(moved.xy[0, 0]), float(moved.xy[0, 1])
        if math.dist((hx, hy), (x, y)) > self.config.reuse_radius_px:
            return None
        return held

    def on_object(
        self, fixation_id: int | None, x: float, y: float, frame: RGBDFrame, mapping: MappingConfig
    ) -> Speculation | None:
        """The held answer if gaze point (x, y) of `frame` lands on its mask (mapped by depth +
        pose) and it was decoded for this fixation (or for none, or `fixation_id` is None): the eye
        is still on its object, so a decode there should renew it (engine/renewal.py).

        Ask with where the eye is now (the prompt's gaze point, `last_gaze`), not with a fixation's
        centroid: that averages pixels over the whole fixation, and while the head turns the eye
        stays on a world point whose pixel moves, so the centroid can lie off the object."""
        held = self._held
        if held is None:
            return None
        if fixation_id is not None and held.fixation_id not in (None, fixation_id):
            return None
        if not lands_on(held.answer.mask, held.frame, x, y, frame, mapping, self.config.on_object_px):
            return None
        return held


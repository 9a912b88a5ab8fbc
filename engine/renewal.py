"""Renew a held gaze answer while the eye stays on its object, so a long fixation keeps one object.

Why: a held gaze answer is reused (its masks moved into each new frame, engine/dwell.py) only while
it is younger than `DwellConfig.reuse_max_s`, because moved masks miss the surfaces that came into
view since. Decoding the gaze point afresh after that lets one frame alone decide what the point
belongs to, and that answer changes with the view although the user never looked away: on the
posed livingroom1_micro sequence the gazed chair seat is "the seat" in frames 0-16 and "seat and
back" from frame 18 on (bench/selection_stability.py, a 44 cm jump of the world centroid). A user
who keeps looking at what they got expects to keep it.

So while the gaze point lands on the held answer's mask (the point mapped by depth + pose into
the held answer's frame: `lands_on`), the next decode renews that answer the way the tracker keeps
an object (engine/tracking.py `track_step`): the held mask, mapped into the keyframe, is the mask
prompt; the 3D segment gives the point; the granularity the first answer selected is kept while
it agrees. The result is a fresh mask on the current frame (new surfaces included) of the same
object. A decode starts afresh when the gaze leaves the mask, when the fixation ends (which drops
the held answer), or when a renewal loses the object (its mask empty or under `min_px` pixels).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from engine.core import RGBDFrame, StageTimestamps
from engine.mapping import FrameMapping, MappingConfig
from engine.pipeline import Answer, Pipeline
from engine.scheduler import Keyframe
from engine.tracking import TrackingConfig, TrackState, track_step


@dataclass(frozen=True, eq=False)
class Renewal:
    """A renewed answer (masks in the new frame's pixels) and the tracker state the next renewal
    continues from (so the user's granularity survives a chain of renewals)."""

    answer: Answer
    state: TrackState


def lands_on(
    mask: np.ndarray,
    mask_frame: RGBDFrame,
    x: float,
    y: float,
    frame: RGBDFrame,
    mapping: MappingConfig,
    radius_px: int,
) -> bool:
    """Whether gaze pixel (x, y) of `frame` lands on `mask` ((H, W) bool in `mask_frame`'s pixels).

    The point is mapped into `mask_frame` by depth + pose (not visible there, e.g. hidden behind a
    nearer surface: False); any mask pixel within `radius_px` of it counts (gaze noise at an edge).
    Frames without a pose cannot be compared: False, unless they are the same frame.
    """
    if mask_frame.frame_id != frame.frame_id:
        if mask_frame.pose is None or frame.pose is None:
            return False
        moved = FrameMapping.between(frame, mask_frame, mapping).points([[x, y]])
        if not moved.visible[0]:
            return False
        x, y = float(moved.xy[0, 0]), float(moved.xy[0, 1])
    h, w = mask.shape
    c, r = int(round(x)), int(round(y))
    if not (0 <= c < w and 0 <= r < h):
        return False
    window = mask[max(r - radius_px, 0) : r + radius_px + 1, max(c - radius_px, 0) : c + radius_px + 1]
    return bool(window.any())


def renew(
    pipeline: Pipeline,
    held_answer: Answer,
    held_frame: RGBDFrame,
    held_state: TrackState | None,
    frame: RGBDFrame,
    keyframe: Keyframe,
    prompt_id: int,
    want_3d: bool,
    stamps: StageTimestamps,
    tracking: TrackingConfig,
    min_px: int,
) -> Renewal | None:
    """The held answer decoded again on `frame` as the same object (worker thread, pure).

    `held_state` is the state a previous renewal left (None: start from the held answer itself).
    None when the object is lost: the held mask maps to nothing in the keyframe, or the renewed
    mask has fewer than `min_px` pixels; the caller then decodes the gaze point afresh.
    """
    state = held_state or TrackState.from_answer(prompt_id, held_frame, held_answer, want_3d)
    state = replace(state, prompt_id=prompt_id, want_3d=want_3d)
    answer, new_state = track_step(pipeline, state, frame, keyframe, stamps, tracking)
    if int(np.count_nonzero(answer.mask)) < min_px:
        return None
    return Renewal(answer, new_state)

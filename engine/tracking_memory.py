"""Tracking with the model's own video memory (SAM 2.1 / EdgeTAM video checkpoints), when it has one.

Why: SAM 2's memory attention (past masks and object pointers conditioning the next frame) is
what those checkpoints were trained to track with; it follows an object through appearance
change and short occlusion better than re-prompting it from keyframes. A model whose
`SegmentationModel.tracker` is set gets it; the geometric default and SAM 1 keep the keyframe
tracker of engine/tracking.py. `TrackingConfig.video_memory=False` forces the keyframe tracker.

Cost: SAM 2 encodes every frame it tracks on, so with video memory tracking runs at the image
encoder's rate (newest frame wins, as for the keyframe tracker); prompts still come from keyframes.

Threading: the memory (`TrackMemory`) belongs to one session and is read and written only inside
that session's worker-pool calls, which its `SerialRunner` runs one at a time; the event loop
creates it and drops it, and never reads it. It is the one session part written off the loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from engine.core import MaskCandidate, RGBDFrame, RLEMask, SegmentationResult, StageTimestamps
from engine.mapping import MappingMethod
from engine.pipeline import Answer, Pipeline, image_input
from engine.tracking import TrackState, interior_point, world_points
from models.interfaces import ImageInput, PromptInput, VideoTracker


@dataclass(eq=False)
class TrackMemory:
    """One session's video memory: the tracker, its streaming state, the object ids it holds."""

    tracker: VideoTracker
    state: Any
    objects: set[int] = field(default_factory=set)

    @classmethod
    def start(cls, tracker: VideoTracker, max_memory_frames: int) -> TrackMemory:
        return cls(tracker, tracker.start(max_memory_frames))


def memory_track_step(
    pipeline: Pipeline,
    memory: TrackMemory,
    states: dict[int, TrackState],
    frame: RGBDFrame,
    stamps: StageTimestamps,
) -> dict[int, tuple[Answer, TrackState]]:
    """Propagate every tracked object to `frame` through the video memory; clean and lift each mask.

    Objects new since the last step join the memory on the frame their selection was answered on
    (their mask is the memory's prompt); objects no longer in `states` (cancelled) leave it.
    """
    tracker = memory.tracker
    for gone in sorted(memory.objects - states.keys()):
        tracker.remove_object(memory.state, gone)
        memory.objects.discard(gone)
    joined: dict[int, ImageInput] = {}  # one memory frame per selection frame, shared by its objects
    for prompt_id, state in states.items():
        if prompt_id not in memory.objects:
            image = joined.setdefault(state.frame.frame_id, image_input(state.frame))
            tracker.add_object(memory.state, image, prompt_id, PromptInput(mask=state.mask, multimask=False))
            memory.objects.add(prompt_id)
    predictions = tracker.track(memory.state, image_input(frame))
    stamps = replace(stamps, encode=time.time(), decode=time.time())
    out = {}
    for prompt_id, state in states.items():
        prediction = predictions[prompt_id]
        raw = np.asarray(prediction.masks[0], bool)
        anchor = interior_point(raw)
        mask = pipeline.clean_mask(raw, frame, anchor)
        segment, lifted = pipeline.lift(mask, frame, anchor, state.want_3d, stamps)
        visible = float(prediction.scores[0])
        result = SegmentationResult(
            prompt_id,
            frame.frame_id,
            frame.frame_id,
            (MaskCandidate(RLEMask.encode(mask), visible, "memory"),),
            0,
            segment,
            frame.pose,
            lifted,
        )
        points = world_points(segment, frame) if segment is not None else None
        new_state = TrackState(
            prompt_id,
            frame,
            mask,
            points if points is not None else state.points_world,
            state.want_3d,
            0 if mask.any() else state.lost_steps + 1,
            state.granularity,
        )
        out[prompt_id] = (Answer(result, mask, MappingMethod.IDENTITY, prediction), new_state)
    return out

"""Keep a selected object segmented on every new frame, between and across keyframes.

Why: a user who picked the mug expects its outline to follow it as the head moves, without
prompting again, and a headset wants a fresh world-anchored segment as more of it comes into view.

One step (`track_step`) on a new frame C, with the session's keyframe K:
1. prompts in K's pixels, derived from what is known about the object:
   - its 3D segment (world points, cleaned by the lift) projected into K; the visible projected
     point nearest their median is the positive point (on the object even for a torus or a mug
     handle, where a centroid would fall in the hole);
   - the previous mask, warped from its frame into K (depth + pose, engine/mapping.py), as the
     mask prompt;
2. decode in K, warp every candidate back to C, clean it (engine/masks);
3. choose the candidate at the granularity the user picked (the selected one of the first
   answer's multimask outputs) as long as it agrees with the previous mask warped into K (IoU >=
   `lock_agreement`), else the candidate that agrees best; never simply the one the model scores
   highest. Choosing by agreement alone drifts: a mask that lost a sliver matches the finer
   candidate a little better every frame, until a box is tracked as one of its faces. When no
   candidate agrees (IoU < `min_agreement` with the previous mask warped into C: the decoder lost
   the object), the warped previous mask is kept for this frame ("coasting");
4. lift the chosen mask to a new 3D segment: the next step's prompts.

An object that leaves the view gives results with an empty mask until it comes back. This
tracker works with any backend, the geometric default included; a model with a video memory
(SAM 2.1 / EdgeTAM video checkpoints) is tracked by engine/tracking_memory.py instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from engine.core import MaskCandidate, RGBDFrame, RLEMask, Segment3D, SegmentationResult, StageTimestamps
from engine.mapping import FrameMapping, MappingMethod, project, transform_points
from engine.masks.metrics import mask_iou
from engine.pipeline import Answer, Pipeline
from engine.scheduler import Keyframe
from models.interfaces import PromptInput


@dataclass(frozen=True)
class TrackingConfig:
    """Attributes:
    max_objects: tracked objects per session (a new `track` prompt beyond it gets `overloaded`).
    min_agreement: IoU with the warped previous mask below which a decoded candidate is distrusted.
    lock_agreement: the candidate at the user's granularity is kept while its IoU with the warped
        previous mask is at least this.
    video_memory: track with the model's video memory when it has one (SAM 2.1 / EdgeTAM video
        checkpoints, engine/tracking_memory.py); False keeps this keyframe tracker for every model.
    memory_frames: spatial memories kept per object by the video memory (SAM 2.1 is trained on 7).
    """

    max_objects: int = 4
    min_agreement: float = 0.3
    lock_agreement: float = 0.5
    video_memory: bool = True
    memory_frames: int = 7


@dataclass(frozen=True, eq=False)
class TrackState:
    """What is known about one tracked object after its last step.

    Attributes:
        prompt_id: the prompt that selected it; every tracking result carries this id.
        frame: the frame its mask is in.
        mask: (H, W) bool in `frame`'s pixels (empty when out of view).
        points_world: (N, 3) float32 its 3D segment's points (world, or camera frame of `frame`
            when that frame had no pose); None without depth.
        want_3d: lift every step (the original prompt's want_3d).
        lost_steps: consecutive steps that found nothing.
        granularity: index of the multimask output the user's answer selected, or None.
    """

    prompt_id: int
    frame: RGBDFrame
    mask: np.ndarray
    points_world: np.ndarray | None
    want_3d: bool = True
    lost_steps: int = 0
    granularity: int | None = None

    @classmethod
    def from_answer(cls, prompt_id: int, frame: RGBDFrame, answer: Answer, want_3d: bool) -> TrackState:
        multi = answer.prediction is not None and len(answer.prediction.scores) > 1
        granularity = answer.result.best if multi and len(answer.result.masks) > 1 else None
        return cls(
            prompt_id,
            frame,
            answer.mask,
            world_points(answer.result.segment, frame),
            want_3d,
            0,
            granularity,
        )


def world_points(segment: Segment3D | None, frame: RGBDFrame) -> np.ndarray | None:
    if segment is None or segment.status != "ok" or len(segment.points) == 0:
        return None
    if segment.frame == "camera" and frame.pose is not None:
        return frame.pose.transform(segment.points.astype(np.float64)).astype(np.float32)
    return segment.points


def interior_point(mask: np.ndarray) -> tuple[float, float] | None:
    """(x, y) of the pixel deepest inside a mask (distance transform maximum, on its bounding box)."""
    rows = np.flatnonzero(mask.any(1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    crop = np.pad(mask[r0:r1, c0:c1], 1).view(np.uint8)
    dist = cv2.distanceTransform(crop, cv2.DIST_L2, 3)
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(x - 1 + c0), float(y - 1 + r0)


def segment_point(
    points_world: np.ndarray | None, keyframe: RGBDFrame, inside: np.ndarray | None
) -> tuple[float, float] | None:
    """The 3D segment seen from the keyframe: the visible projected point nearest their median.

    Visible = inside the image, in front of the camera, and not behind a nearer surface in the
    keyframe's depth; when `inside` (a mask in the keyframe's pixels) is given, only points on it.
    """
    if points_world is None or keyframe.pose is None:
        return None
    cam = transform_points(keyframe.pose.inverse().matrix, points_world.astype(np.float64))
    uv, ok = project(cam, keyframe.intrinsics.matrix)
    h, w = keyframe.size
    u = np.floor(uv[:, 0] + 0.5).astype(np.int64)
    v = np.floor(uv[:, 1] + 0.5).astype(np.int64)
    ok &= (u >= 0) & (u < w) & (v >= 0) & (v < h)
    if keyframe.depth_m is not None:
        seen = np.zeros(len(u), np.float32)
        seen[ok] = keyframe.depth_m[v[ok], u[ok]]
        ok &= ~((seen > 0) & (seen < cam[:, 2] * 0.96 - 0.02))
    if inside is not None and inside.any():
        on = np.zeros(len(u), bool)
        on[ok] = inside[v[ok], u[ok]]
        if on.any():
            ok = on
    if not ok.any():
        return None
    pts = uv[ok]
    median = np.median(pts, 0)
    x, y = pts[int(np.argmin(((pts - median) ** 2).sum(1)))]
    return float(x), float(y)


def track_step(
    pipeline: Pipeline,
    state: TrackState,
    frame: RGBDFrame,
    keyframe: Keyframe,
    stamps: StageTimestamps,
    config: TrackingConfig = TrackingConfig(),
) -> tuple[Answer, TrackState]:
    """One tracking step on `frame` (see the module docstring). Returns the answer and the new state."""
    mapping = pipeline.mapping
    prev_in_key = FrameMapping.between(state.frame, keyframe.frame, mapping).mask(state.mask)
    to_frame = FrameMapping.between(state.frame, frame, mapping)
    prev_in_frame = to_frame.mask(state.mask)
    point = segment_point(state.points_world, keyframe.frame, prev_in_key) or interior_point(prev_in_key)
    anchor = interior_point(prev_in_frame)
    if point is None or not prev_in_key.any():
        return _lost(state, frame, keyframe, stamps, to_frame.method)
    request = PromptInput(np.array([point], np.float32), np.ones(1, np.int32), None, prev_in_key, True)

    def agree(masks: Sequence[np.ndarray], scores: np.ndarray) -> int:
        ious = [mask_iou(m, prev_in_key) for m in masks]
        lock = state.granularity
        if lock is not None and lock < len(masks) and ious[lock] >= config.lock_agreement:
            return lock
        return int(np.lexsort((-np.asarray(scores), -np.asarray(ious)))[0])

    answer = pipeline.answer_in_keyframe(
        frame, keyframe, request, anchor, state.prompt_id, stamps, False, agree, True
    )
    chosen = answer.mask
    candidate = answer.result.masks[0]
    if prev_in_frame.any() and mask_iou(chosen, prev_in_frame) < config.min_agreement:
        chosen = pipeline.clean_mask(prev_in_frame, frame, anchor)  # coast on the warped previous mask
        candidate = MaskCandidate(RLEMask.encode(chosen), 0.0, "coasting")
    segment, stamps = pipeline.lift(chosen, frame, anchor, True, answer.result.timestamps)
    result = replace(
        answer.result,
        masks=(candidate,),
        best=0,
        segment=segment if state.want_3d else None,
        timestamps=stamps,
    )
    new_state = TrackState(
        state.prompt_id,
        frame,
        chosen,
        world_points(segment, frame) if segment is not None else state.points_world,
        state.want_3d,
        0 if chosen.any() else state.lost_steps + 1,
        state.granularity,
    )
    return Answer(result, chosen, answer.mapping, answer.prediction), new_state


def _lost(
    state: TrackState, frame: RGBDFrame, keyframe: Keyframe, stamps: StageTimestamps, method: MappingMethod
) -> tuple[Answer, TrackState]:
    """The object is not in view: an empty mask for this frame; keep the 3D prior for its return."""
    h, w = frame.size
    empty = np.zeros((h, w), bool)
    result = SegmentationResult(
        state.prompt_id,
        frame.frame_id,
        keyframe.frame_id,
        (MaskCandidate(RLEMask.encode(empty), 0.0, "lost"),),
        0,
        None,
        frame.pose,
        stamps,
    )
    lost = replace(state, lost_steps=state.lost_steps + 1)
    return Answer(result, empty, method), lost

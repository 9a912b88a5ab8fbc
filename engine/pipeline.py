"""The hot path for one prompt: (frame, keyframe) -> masks in the frame's pixels -> clean -> 3D segment.

Plain synchronous code over typed inputs; the session runs it on the worker pool so the event
loop never blocks on pixels. The keyframe's embedding may be of an older frame than the one the
prompt was given on (engine/scheduler.py): then the prompt is mapped into the keyframe's pixels
before the decoder, and the masks are mapped back (engine/mapping.py). After decoding, masks are
cleaned (islands, holes, depth edges: engine/masks) and the selected one is lifted to 3D.

`Pipeline` holds only read-only things (the model and settings), so one instance serves every
session from every worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from engine.core import (
    CameraIntrinsics,
    MaskCandidate,
    Prompt,
    RGBDFrame,
    RLEMask,
    Segment3D,
    SegmentationResult,
    StageTimestamps,
)
from engine.core.prompts import PromptError
from engine.errors import BadPrompt, UnsupportedPrompt
from engine.everything import EverythingConfig, segment_everything
from engine.lift import LiftConfig, lift_mask
from engine.mapping import FrameMapping, MappingConfig, MappingMethod
from engine.masks import MaskCleanConfig
from engine.masks import clean_mask as _clean_mask
from engine.scheduler import Keyframe, KeyframeReason, require_depth, thumbnail
from models.interfaces import ImageEmbedding, ImageInput, MaskPrediction, PromptInput, SegmentationModel

Chooser = Callable[[Sequence[np.ndarray], np.ndarray], int]
"""Picks the selected mask from (masks in the keyframe's pixels, (K,) scores); default: best score."""


def image_input(frame: RGBDFrame) -> ImageInput:
    return ImageInput(rgb=frame.rgb, depth_m=frame.depth_m, camera_matrix=frame.intrinsics.matrix)


def encode_keyframe(model: SegmentationModel, frame: RGBDFrame) -> ImageEmbedding:
    """Run the heavy image encoder; the result is reused by every prompt on this frame."""
    require_depth(model, frame)
    return model.encoder.encode(image_input(frame))


def prompt_input(
    prompt: Prompt, height: int, width: int, gaze_xy: tuple[float, float] | None = None
) -> PromptInput:
    """Map a typed prompt onto the decoder's SAM-style arrays.

    Gaze becomes one positive point: `gaze_xy` when given (the open fixation's centroid, which
    the session knows better than one prompt's samples), else the samples' confidence-weighted mean.
    """
    try:
        prompt.validate(height, width)
    except PromptError as exc:
        raise BadPrompt(str(exc), prompt.prompt_id) from None
    if prompt.text:
        raise UnsupportedPrompt(
            "text prompts need a CLIP text encoder, which this engine was started without; "
            "send a point, box, mask or gaze, or start the engine with a text encoder",
            prompt.prompt_id,
        )
    coords, labels = prompt.anchor_points()
    if gaze_xy is not None and prompt.gaze:
        coords = coords.copy()
        coords[-1] = gaze_xy  # anchor_points appends the gaze point last
    box = None
    if prompt.box is not None:
        b = prompt.box
        box = np.array([b.x0, b.y0, b.x1, b.y1], np.float32)
    mask = prompt.mask.mask.astype(bool) if prompt.mask is not None else None
    return PromptInput(coords, labels, box, mask, prompt.multimask)


def anchor_of(request: PromptInput) -> tuple[float, float] | None:
    """The pixel the user pointed at: the first positive point, else the box centre, else None."""
    positives = request.point_coords[request.point_labels == 1]
    if len(positives):
        return float(positives[0, 0]), float(positives[0, 1])
    if request.box is not None:
        x0, y0, x1, y1 = (float(v) for v in request.box)
        return (x0 + x1) / 2, (y0 + y1) / 2
    return None


def map_request(request: PromptInput, mapping: FrameMapping) -> PromptInput | None:
    """The prompt in the keyframe's pixels, or None when nothing positive of it is visible there.

    Points hidden in the keyframe (off-image or occluded) are dropped; a prompt whose positive
    points, box and mask all vanish cannot be answered from this embedding.
    """
    if mapping.method is MappingMethod.IDENTITY:
        return request
    mapped = mapping.points(request.point_coords) if len(request.point_coords) else None
    coords, labels = request.point_coords, request.point_labels
    if mapped is not None:
        keep = mapped.visible
        coords, labels = mapped.xy[keep], request.point_labels[keep]
    box = mapping.box(request.box) if request.box is not None else None
    mask = mapping.mask(request.mask) if request.mask is not None else None
    if mask is not None and not mask.any():
        mask = None
    had_positive = bool((request.point_labels == 1).any())
    if had_positive and not (labels == 1).any():
        return None  # the object the user pointed at is not in the keyframe
    if not (labels == 1).any() and box is None and mask is None:
        return None
    return PromptInput(coords.astype(np.float32), labels.astype(np.int32), box, mask, request.multimask)


@dataclass(frozen=True, eq=False)
class Answer:
    """A SegmentationResult plus what the session needs to keep (selected mask, mapping used).

    Attributes:
        result: what goes to the client (masks in `result.frame_id`'s pixels).
        mask: (H, W) bool the selected (cleaned) mask, in the frame's pixels.
        mapping: how masks went from the keyframe to the frame.
        prediction: the raw decoder output in the keyframe's pixels (for tracking).
    """

    result: SegmentationResult
    mask: np.ndarray
    mapping: MappingMethod
    prediction: MaskPrediction | None = None


class Pipeline:
    """Answers prompts from keyframes. Stateless apart from read-only model and settings."""

    def __init__(
        self,
        model: SegmentationModel,
        lift: LiftConfig | None = None,
        clean: MaskCleanConfig | None = None,
        mapping: MappingConfig | None = None,
        everything: EverythingConfig | None = None,
        clean_masks: bool = True,
    ) -> None:
        """Settings left None take their defaults; clean_masks=False skips mask cleaning."""
        self.model = model
        self.lift_config = lift or LiftConfig()
        self.clean_config = (clean or MaskCleanConfig()) if clean_masks else None
        self.mapping = mapping or MappingConfig()
        self.everything_config = everything or EverythingConfig()

    def keyframe_now(self, frame: RGBDFrame) -> Keyframe:
        """Encode on the calling thread (the EVERY_FRAME baseline: the encoder on the prompt path)."""
        return Keyframe(
            frame, encode_keyframe(self.model, frame), time.time(), KeyframeReason.PROMPT, thumbnail(frame)
        )

    def answer(
        self,
        frame: RGBDFrame,
        keyframe: Keyframe,
        request: PromptInput,
        prompt_id: int,
        stamps: StageTimestamps,
        want_3d: bool = True,
        choose: Chooser | None = None,
    ) -> Answer | None:
        """Masks for `request` (in `frame`'s pixels) from `keyframe`, or None if it cannot see the prompt.

        Stamps `decode` when the decoder returned and `lift` after the 3D lift.
        """
        to_key = FrameMapping.between(frame, keyframe.frame, self.mapping)
        mapped = map_request(request, to_key)
        if mapped is None:
            return None
        return self.answer_in_keyframe(
            frame, keyframe, mapped, anchor_of(request), prompt_id, stamps, want_3d, choose
        )

    def answer_in_keyframe(
        self,
        frame: RGBDFrame,
        keyframe: Keyframe,
        request: PromptInput,
        anchor: tuple[float, float] | None,
        prompt_id: int,
        stamps: StageTimestamps,
        want_3d: bool = True,
        choose: Chooser | None = None,
        only_selected: bool = False,
    ) -> Answer:
        """Decode a request already in the keyframe's pixels, select a mask, map masks back to `frame`.

        `choose` picks among the decoded masks in the keyframe's pixels (default: best score). The
        selected mask is cleaned around `anchor` (a pixel of `frame`) and lifted; the other
        candidates are returned as decoded (mapped roughly, not cleaned: both cost O(mask), and only
        the selected mask is lifted), or dropped with only_selected.
        """
        prediction = self.model.decoder.predict(keyframe.embedding, request)
        stamps = replace(stamps, decode=time.time())
        scores = np.asarray(prediction.scores, np.float32)
        best = choose(list(prediction.masks), scores) if choose is not None else int(np.argmax(scores))
        back = FrameMapping.between(keyframe.frame, frame, self.mapping)
        names = prediction.granularity or ("",) * len(scores)
        keep = [best] if only_selected else list(range(len(scores)))
        masks = {i: back.mask(prediction.masks[i], rough=i != best) for i in keep}
        masks[best] = self.clean_mask(masks[best], frame, anchor)
        candidates = tuple(MaskCandidate(RLEMask.encode(masks[i]), float(scores[i]), names[i]) for i in keep)
        segment, stamps = self._lift(masks[best], frame, anchor, want_3d, stamps)
        selected = keep.index(best)
        result = SegmentationResult(
            prompt_id, frame.frame_id, keyframe.frame_id, candidates, selected, segment, frame.pose, stamps
        )
        return Answer(result, masks[best], back.method, prediction)

    def lift(
        self,
        mask: np.ndarray,
        frame: RGBDFrame,
        anchor: tuple[float, float] | None,
        want_3d: bool,
        stamps: StageTimestamps,
    ) -> tuple[Segment3D | None, StageTimestamps]:
        """The 3D segment of a mask in `frame` (None without depth or when not wanted), stamping `lift`."""
        return self._lift(mask, frame, anchor, want_3d, stamps)

    def everything(
        self,
        frame: RGBDFrame,
        keyframe: Keyframe,
        prompt_id: int,
        stamps: StageTimestamps,
        config: EverythingConfig | None = None,
        want_3d: bool = False,
    ) -> Answer:
        """Every mask of the keyframe (segment_everything), mapped to `frame`, best first."""
        found = segment_everything(self.model.decoder, keyframe.embedding, config or self.everything_config)
        stamps = replace(stamps, decode=time.time())
        to_frame = FrameMapping.between(keyframe.frame, frame, self.mapping)
        masks = [self.clean_mask(to_frame.mask(m), frame, None) for m in found.masks]
        keep = [i for i, m in enumerate(masks) if m.any()]
        masks = [masks[i] for i in keep]
        scores = found.scores[keep]
        candidates = tuple(
            MaskCandidate(RLEMask.encode(m), float(s), "everything")
            for m, s in zip(masks, scores, strict=True)
        )
        h, w = frame.size
        best_mask = masks[0] if masks else np.zeros((h, w), bool)
        segment, stamps = self._lift(best_mask, frame, None, want_3d and bool(masks), stamps)
        result = SegmentationResult(
            prompt_id, frame.frame_id, keyframe.frame_id, candidates, 0, segment, frame.pose, stamps
        )
        return Answer(result, best_mask, to_frame.method)

    def clean_mask(
        self, mask: np.ndarray, frame: RGBDFrame, anchor: tuple[float, float] | None
    ) -> np.ndarray:
        """Islands, holes and depth edges (engine/masks) around anchor; unchanged when cleaning is off."""
        if self.clean_config is None or not mask.any():
            return mask
        return _clean_mask(mask, frame.depth_m, anchor, self.clean_config)

    def _lift(
        self,
        mask: np.ndarray,
        frame: RGBDFrame,
        anchor: tuple[float, float] | None,
        want_3d: bool,
        stamps: StageTimestamps,
    ) -> tuple[Segment3D | None, StageTimestamps]:
        if not (want_3d and frame.depth_m is not None):
            return None, stamps
        segment = lift_mask(mask, frame.depth_m, frame.intrinsics, frame.pose, anchor, self.lift_config)
        return segment, replace(stamps, lift=time.time())


def warm_up(pipeline: Pipeline, width: int = 640, height: int = 480) -> Answer:
    """One prompt end to end (encode, decode, clean, lift) on a generated frame; its answer.

    Why: the first call of each stage pays one-off costs (lazy library initialisation, the
    allocator growing its pools, compiled kernels loading), tens of ms on a CPU. The engine runs
    this once at start so that the first user's first prompt does not pay them.
    The frame is a grey wall 2 m away with a textured box 1.4 m away in the middle.
    """
    rng = np.random.default_rng(0)
    rgb = np.full((height, width, 3), 140, np.uint8)
    depth = np.full((height, width), 2000, np.uint16)
    box = (slice(height // 3, 2 * height // 3), slice(width // 3, 2 * width // 3))
    rgb[box] = rng.integers(150, 220, rgb[box].shape, np.uint8)
    depth[box] = 1400
    intrinsics = CameraIntrinsics(width, height, 525.0, 525.0, (width - 1) / 2, (height - 1) / 2)
    frame = RGBDFrame(0, rgb, depth, intrinsics)
    keyframe = pipeline.keyframe_now(frame)
    request = PromptInput(np.array([[width / 2, height / 2]], np.float32), np.ones(1, np.int32))
    answer = pipeline.answer(frame, keyframe, request, 0, StageTimestamps())
    assert answer is not None  # the frame's own keyframe sees every prompt on it
    return answer

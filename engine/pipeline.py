"""The hot path for one prompt: frame -> embedding -> masks -> 3D segment.

Plain synchronous functions over typed inputs; the session runs them on the worker pool so
the event loop never blocks on pixels.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from engine.core import MaskCandidate, Prompt, RGBDFrame, RLEMask, SegmentationResult, StageTimestamps
from engine.core.prompts import PromptError
from engine.lift import LiftConfig, lift_mask
from engine.protocol import ErrorCode, ProtocolError
from models.interfaces import ImageEmbedding, ImageInput, PromptInput, SegmentationModel


def image_input(frame: RGBDFrame) -> ImageInput:
    return ImageInput(rgb=frame.rgb, depth_m=frame.depth_m, camera_matrix=frame.intrinsics.matrix)


def encode_keyframe(model: SegmentationModel, frame: RGBDFrame) -> ImageEmbedding:
    """Run the heavy image encoder; the result is reused by every prompt on this frame."""
    if model.needs_depth and not frame.has_valid_depth():
        raise ProtocolError(
            ErrorCode.BAD_DEPTH,
            f"frame {frame.frame_id} has no valid depth (all zero or NaN) and model {model.name!r} needs depth; "
            "send registered depth or choose an image-only model",
            frame.frame_id,
        )
    return model.encoder.encode(image_input(frame))


def prompt_input(prompt: Prompt, height: int, width: int) -> PromptInput:
    """Map a typed prompt onto the decoder's SAM-style arrays (gaze becomes a positive point)."""
    try:
        prompt.validate(height, width)
    except PromptError as exc:
        raise ProtocolError(ErrorCode.BAD_PROMPT, str(exc), prompt.prompt_id) from None
    if prompt.text:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_PROMPT,
            "text prompts need a CLIP text encoder, which this engine was started without; "
            "send a point, box, mask or gaze, or start the engine with a text encoder",
            prompt.prompt_id,
        )
    coords, labels = prompt.anchor_points()
    box = None
    if prompt.box is not None:
        b = prompt.box
        box = np.array([b.x0, b.y0, b.x1, b.y1], np.float32)
    mask = prompt.mask.mask.astype(bool) if prompt.mask is not None else None
    return PromptInput(coords, labels, box, mask, prompt.multimask)


def answer_prompt(
    model: SegmentationModel,
    frame: RGBDFrame,
    embedding: ImageEmbedding,
    keyframe_id: int,
    prompt: Prompt,
    lift_config: LiftConfig,
    timestamps: StageTimestamps,
) -> SegmentationResult:
    """Decode masks for prompt from embedding, pick the best, and lift it to 3D."""
    h, w = frame.size
    request = prompt_input(prompt, h, w)
    prediction = model.decoder.predict(embedding, request)
    timestamps = replace(timestamps, decode=time.time())
    names = prediction.granularity or ("",) * len(prediction.scores)
    candidates = tuple(
        MaskCandidate(RLEMask.encode(m), float(s), g) for m, s, g in zip(prediction.masks, prediction.scores, names, strict=True)
    )
    best = int(np.argmax(prediction.scores))
    segment = None
    if prompt.want_3d and frame.depth_m is not None:
        positives = request.point_coords[request.point_labels == 1]
        anchor = (float(positives[0, 0]), float(positives[0, 1])) if len(positives) else None
        segment = lift_mask(prediction.masks[best], frame.depth_m, frame.intrinsics, frame.pose, anchor, lift_config)
        timestamps = replace(timestamps, lift=time.time())
    return SegmentationResult(
        prompt_id=prompt.prompt_id,
        frame_id=frame.frame_id,
        keyframe_id=keyframe_id,
        masks=candidates,
        best=best,
        segment=segment,
        pose=frame.pose,
        timestamps=timestamps,
    )

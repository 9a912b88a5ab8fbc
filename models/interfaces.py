"""The small interfaces every model backend implements.

The engine talks to models only through these. They mirror segment-anything's split: a heavy
image encoder that runs once per keyframe and returns an embedding, and a light prompt decoder
that answers each prompt from that embedding in milliseconds. Backends are pure functions of
their inputs: the engine's session owns all state (which embedding belongs to which frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


class ModelError(RuntimeError):
    """A model cannot be built or run as asked; the message says what to do about it."""


class CheckpointError(ModelError):
    """A checkpoint file is missing, truncated, corrupt or for another model."""


@dataclass(frozen=True, eq=False)
class ImageInput:
    """What an image encoder sees.

    Attributes:
        rgb: (H, W, 3) uint8, RGB order.
        depth_m: (H, W) float32 metres, 0 where there is no measurement; None without depth.
        camera_matrix: (3, 3) pinhole K of the colour image, or None.
    """

    rgb: np.ndarray
    depth_m: np.ndarray | None = None
    camera_matrix: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.rgb.shape[0], self.rgb.shape[1]


@dataclass(frozen=True, eq=False)
class ImageEmbedding:
    """An encoder's output for one image, opaque to the engine.

    Attributes:
        backend: name of the backend that made it; a decoder refuses other backends' embeddings.
        original_size: (H, W) of the encoded image; prompts and masks are in these pixels.
        data: backend-specific payload (a tensor, a dict of feature maps, ...).
    """

    backend: str
    original_size: tuple[int, int]
    data: Any


@dataclass(frozen=True, eq=False)
class PromptInput:
    """A decoder prompt in the encoded image's pixel coordinates (SAM's predictor convention).

    Attributes:
        point_coords: (N, 2) float32 xy pixels, N >= 0.
        point_labels: (N,) int32, 1 = object, 0 = background.
        box: (4,) float32 x0, y0, x1, y1, or None.
        mask: (H, W) bool rough mask of the object, or None.
        multimask: return several granularities (SAM returns 3) instead of one mask.
    """

    point_coords: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))
    box: np.ndarray | None = None
    mask: np.ndarray | None = None
    multimask: bool = True


@dataclass(frozen=True, eq=False)
class MaskPrediction:
    """A decoder's answer.

    Attributes:
        masks: (K, H, W) bool at the encoded image's resolution, K = 3 for multimask else 1.
        scores: (K,) float32 model-estimated mask quality (SAM: predicted IoU), higher is better.
        granularity: K names ("part", "object", "region"), or empty when the model has none.
        low_res_logits: (K, h, w) float32 logits to feed back as a mask prompt, if the model has them.
    """

    masks: np.ndarray
    scores: np.ndarray
    granularity: tuple[str, ...] = ()
    low_res_logits: np.ndarray | None = None


@runtime_checkable
class ImageEncoder(Protocol):
    """Heavy: runs on keyframes, off the prompt path."""

    name: str

    def encode(self, image: ImageInput) -> ImageEmbedding: ...


@runtime_checkable
class PromptDecoder(Protocol):
    """Light: runs for every prompt against a cached embedding."""

    name: str

    def predict(self, embedding: ImageEmbedding, prompt: PromptInput) -> MaskPrediction: ...


@runtime_checkable
class BatchImageEncoder(Protocol):
    """Optional: an encoder that runs several images in one call (one GPU batch).

    The engine's keyframe scheduler batches keyframe encodes of several sessions; backends that
    implement `encode_batch` get them as one call, others are looped (`encode_images`).
    """

    def encode_batch(self, images: Sequence[ImageInput]) -> list[ImageEmbedding]: ...


@runtime_checkable
class BatchPromptDecoder(Protocol):
    """Optional: a decoder that answers many prompts on one embedding in one call.

    "Segment everything" sends a point grid (1024 prompts by default) through the decoder;
    backends that implement `predict_batch` get it in batches, others are looped (`predict_prompts`).
    """

    def predict_batch(self, embedding: ImageEmbedding, prompts: Sequence[PromptInput]) -> list[MaskPrediction]: ...


def encode_images(encoder: ImageEncoder, images: Sequence[ImageInput]) -> list[ImageEmbedding]:
    """Embeddings of images, in order: one `encode_batch` call when the encoder has it, else a loop."""
    if len(images) > 1 and isinstance(encoder, BatchImageEncoder):
        out = encoder.encode_batch(images)
        if len(out) != len(images):
            raise ModelError(f"{encoder.name}.encode_batch returned {len(out)} embeddings for {len(images)} images")
        return list(out)
    return [encoder.encode(image) for image in images]


def predict_prompts(decoder: PromptDecoder, embedding: ImageEmbedding, prompts: Sequence[PromptInput]) -> list[MaskPrediction]:
    """Predictions for prompts on one embedding, in order: `predict_batch` when available, else a loop."""
    if len(prompts) > 1 and isinstance(decoder, BatchPromptDecoder):
        out = decoder.predict_batch(embedding, prompts)
        if len(out) != len(prompts):
            raise ModelError(f"{decoder.name}.predict_batch returned {len(out)} predictions for {len(prompts)} prompts")
        return list(out)
    return [decoder.predict(embedding, prompt) for prompt in prompts]


@runtime_checkable
class TextEncoder(Protocol):
    """Maps phrases to L2-normalised embeddings (CLIP text tower)."""

    name: str

    def encode_text(self, texts: list[str]) -> np.ndarray:  # (N, D) float32, unit norm
        ...


@runtime_checkable
class TextImageEncoder(TextEncoder, Protocol):
    """A text encoder whose images land in the same space (CLIP): ranks image crops by a phrase.

    The engine ranks candidate masks for a voice prompt by the cosine similarity of their masked
    crops to the phrase (engine/fusion/text.py); one call embeds all crops (one batch).
    """

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:  # (N, D) float32, unit norm
        """(H_i, W_i, 3) uint8 RGB images of any sizes -> (N, D) float32 unit embeddings."""
        ...


@runtime_checkable
class VideoTracker(Protocol):
    """Optional, memory-based propagation of masks between keyframes (SAM 2 / EdgeTAM style).

    Streaming by design: frames arrive one at a time, objects are added or dropped at any frame,
    and the tracker keeps a bounded memory per object. State lives in the returned/passed
    `state` object, owned by the engine's session, so the tracker itself stays pure.
    """

    name: str

    def start(self, max_memory_frames: int) -> Any: ...

    def add_object(self, state: Any, frame: ImageInput, object_id: int, prompt: PromptInput) -> MaskPrediction: ...

    def remove_object(self, state: Any, object_id: int) -> None: ...

    def track(self, state: Any, frame: ImageInput) -> dict[int, MaskPrediction]: ...


@dataclass(frozen=True)
class SegmentationModel:
    """An encoder and the decoder that reads its embeddings.

    needs_depth: the encoder uses depth (the geometric default does; SAM does not).
    tracker: memory-based video tracker, when the checkpoint has one (SAM 2.1 / EdgeTAM video
        folders); None otherwise.
    """

    name: str
    encoder: ImageEncoder
    decoder: PromptDecoder
    needs_depth: bool = False
    tracker: VideoTracker | None = None

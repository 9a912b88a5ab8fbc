"""SAM-family backends (SAM ViT-B/L/H, MobileSAM): torch image encoder, ONNX Runtime prompt decoder.

The encoder runs segment-anything's own modules (or our TinyViT for MobileSAM) with the exact
preprocessing of `SamPredictor.set_image`; the decoder runs the exported `SamDecoderGraph`, so a
prompt costs one ONNX Runtime call and no torch. Both are pure: embedding in, masks out; the
engine's session keeps the embedding.

Coordinates follow `SamPredictor`: prompts and masks are in original-image pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import cv2
import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from models.checkpoints import (
    CheckpointFile,
    check_file,
    load_torch_state_dict,
    match_state_dict,
    mismatch_hint,
)
from models.interfaces import (
    ImageEmbedding,
    ImageInput,
    ModelError,
    PromptInput,
    SegmentationModel,
)
from models.onnx.decoder import DecoderSessions, OnnxPromptDecoder, open_sessions
from models.onnx.decoder import decoder_spec as onnx_decoder_spec
from models.onnx.export import GraphSpec, cached_export
from models.onnx.runtime import OnnxSession
from models.sam.decoder_graph import MaskPromptGraph, SamDecoderGraph, resize_taps

log = logging.getLogger(__name__)

SAM_VARIANTS = MappingProxyType({"sam_vit_b": "vit_b", "sam_vit_l": "vit_l", "sam_vit_h": "vit_h"})

DECODER_INPUTS = ("src", "point_coords", "point_labels", "row_idx", "row_w", "col_idx", "col_w")
DECODER_OUTPUTS = ("masks", "iou", "low_res")


def decoder_spec(multimask: bool) -> GraphSpec:
    return onnx_decoder_spec(multimask, DECODER_INPUTS, DECODER_OUTPUTS)


MASK_PROMPT_SPEC = GraphSpec("mask_prompt", 1, ("features", "mask_input"), ("src",))
ENCODER_SPEC = GraphSpec("encoder", 1, ("image",), ("features",))


@dataclass(frozen=True, eq=False)
class SamFeatures:
    """The payload of a SAM-family `ImageEmbedding`.

    Attributes:
        features: (1, 256, 64, 64) float32 image embedding.
        input_size: (h, w) of the image after resizing its long side to 1024, before padding.
    """

    features: np.ndarray
    input_size: tuple[int, int]


def load_sam(model: str, checkpoint: Path | str | None, build) -> tuple[Sam, CheckpointFile]:
    """Check a checkpoint, build the architecture with `build()`, and load the weights strictly.

    Args:
        model: registry name, for messages and the digest table.
        build: zero-argument callable returning the randomly initialised `Sam` of that model.

    Raises:
        CheckpointError: missing / corrupt / truncated file, or weights of another model.
    """
    ckpt = check_file(checkpoint, model)
    state = load_torch_state_dict(ckpt)
    sam = build()
    match_state_dict(ckpt, state, sam.state_dict(), mismatch_hint(state, model))
    sam.load_state_dict(state, strict=True)
    return sam.eval(), ckpt


def build_sam_vit(model: str):
    """The randomly initialised segment-anything architecture for sam_vit_b / _l / _h."""
    from segment_anything import sam_model_registry

    return sam_model_registry[SAM_VARIANTS[model]](checkpoint=None)


def preprocess(sam: Sam, rgb: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
    """`SamPredictor.set_image`'s transform: (H, W, 3) uint8 RGB -> (1, 3, 1024, 1024) normalised, padded."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ModelError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    resized = ResizeLongestSide(sam.image_encoder.img_size).apply_image(rgb)
    x = torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None]
    return sam.preprocess(x.to(sam.device)), (resized.shape[0], resized.shape[1])


class SamImageEncoder:
    """Heavy half: (H, W, 3) uint8 -> `SamFeatures`, with torch on the model's device."""

    def __init__(self, name: str, sam: Sam) -> None:
        self.name = name
        self.sam = sam

    @torch.inference_mode()
    def encode(self, image: ImageInput) -> ImageEmbedding:
        x, input_size = preprocess(self.sam, image.rgb)
        features = self.sam.image_encoder(x).float().cpu().numpy()
        return ImageEmbedding(self.name, image.size, SamFeatures(features, input_size))

    @torch.inference_mode()
    def encode_batch(self, images: Sequence[ImageInput]) -> list[ImageEmbedding]:
        """N images of any sizes in one encoder forward pass of batch N (each is resized and padded
        to 1024 x 1024 first, so they stack). Same embeddings as N `encode` calls, up to float
        summation order (tests: max |diff| <= 1e-4)."""
        if not images:
            return []
        prepared = [preprocess(self.sam, image.rgb) for image in images]
        features = self.sam.image_encoder(torch.cat([x for x, _ in prepared])).float().cpu().numpy()
        return [
            ImageEmbedding(self.name, image.size, SamFeatures(features[i : i + 1].copy(), size))
            for i, (image, (_, size)) in enumerate(zip(images, prepared, strict=True))
        ]


class OnnxSamImageEncoder:
    """The same encoder through an exported ONNX graph (input (1, 3, 1024, 1024) normalised)."""

    def __init__(self, name: str, sam: Sam, session: OnnxSession) -> None:
        self.name = name
        self.sam = sam
        self.session = session

    def encode(self, image: ImageInput) -> ImageEmbedding:
        x, input_size = preprocess(self.sam, image.rgb)
        (features,) = self.session.run({"image": x.cpu().numpy()})
        return ImageEmbedding(self.name, image.size, SamFeatures(features, input_size))


def mask_to_low_res(
    mask: np.ndarray, input_size: tuple[int, int], side: int = 256, pad: int = 1024
) -> np.ndarray:
    """A rough (H, W) bool mask in original pixels -> (1, 1, side, side) float32 logits in SAM's frame.

    The mask is resized to the model's input frame, padded like the image, and reduced to the
    decoder's mask-prompt grid; inside maps to +20, outside to -20 (confidently in or out).
    """
    h, w = input_size
    frame = np.zeros((pad, pad), np.float32)
    frame[:h, :w] = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    low = cv2.resize(frame, (side, side), interpolation=cv2.INTER_AREA)
    return ((low > 0.5).astype(np.float32) * 40.0 - 20.0)[None, None]


def encode_prompt(
    prompt: PromptInput, original_size: tuple[int, int], input_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Points and box -> the decoder's (1, N, 2) coords in the 1024 frame and (1, N) labels.

    Mirrors `SamPredictor.predict` + `PromptEncoder`: points first, then the box's two corners
    labelled 2 and 3; without a box, one padding point labelled -1 is appended.
    """
    scale = np.array([input_size[1] / original_size[1], input_size[0] / original_size[0]], np.float32)
    coords = [np.asarray(prompt.point_coords, np.float32).reshape(-1, 2) * scale]
    labels = [np.asarray(prompt.point_labels, np.float32).reshape(-1)]
    if len(coords[0]) != len(labels[0]):
        raise ModelError(f"{len(coords[0])} points but {len(labels[0])} labels")
    if prompt.box is not None:
        coords.append(np.asarray(prompt.box, np.float32).reshape(2, 2) * scale)
        labels.append(np.array([2.0, 3.0], np.float32))
    else:
        coords.append(np.zeros((1, 2), np.float32))
        labels.append(np.array([-1.0], np.float32))
    return np.concatenate(coords)[None], np.concatenate(labels)[None]


class SamOnnxDecoder(OnnxPromptDecoder):
    """Light half: `SamFeatures` + prompt -> masks at the original resolution, via ONNX Runtime."""

    def feeds(self, embedding: ImageEmbedding, prompt: PromptInput) -> dict[str, np.ndarray]:
        s = self.sessions
        data: SamFeatures = embedding.data
        coords, labels = encode_prompt(prompt, embedding.original_size, data.input_size)
        if prompt.mask is not None:
            low = (
                prompt.mask.astype(np.float32).reshape(1, 1, s.low_res_side, s.low_res_side)
                if prompt.mask.shape[-2:] == (s.low_res_side, s.low_res_side) and prompt.mask.dtype != bool
                else mask_to_low_res(prompt.mask, data.input_size, s.low_res_side, s.input_size)
            )
            (src,) = s.mask_prompt.run({"features": data.features, "mask_input": low})
        else:
            src = data.features + s.no_mask
        (h, w), (ih, iw) = embedding.original_size, data.input_size
        row_idx, row_w = resize_taps(s.low_res_side, s.input_size, ih, h)
        col_idx, col_w = resize_taps(s.low_res_side, s.input_size, iw, w)
        return {
            "src": src,
            "point_coords": coords,
            "point_labels": labels,
            "row_idx": row_idx,
            "row_w": row_w,
            "col_idx": col_idx,
            "col_w": col_w,
        }


def _example_decoder_inputs(n: int = 2) -> tuple[torch.Tensor, ...]:
    idx, w = resize_taps(256, 1024, 768, 48)
    cidx, cw = resize_taps(256, 1024, 1024, 64)
    return (
        torch.zeros(1, 256, 64, 64),
        torch.rand(1, n, 2) * 1000,
        torch.tensor([[1.0] * (n - 1) + [-1.0]]),
        torch.from_numpy(idx),
        torch.from_numpy(w),
        torch.from_numpy(cidx),
        torch.from_numpy(cw),
    )


def export_decoder(sam: Sam, model: str, sha256: str, cache_dir: Path | None = None) -> dict[str, Path]:
    """Export (or find cached) the decoder graphs of a loaded model. Returns {graph name: path}."""
    paths = {}
    for multimask in (True, False):
        spec = decoder_spec(multimask)
        paths[spec.name] = cached_export(
            SamDecoderGraph(sam, multimask), _example_decoder_inputs(), spec, model, sha256, cache_dir
        )
    paths[MASK_PROMPT_SPEC.name] = cached_export(
        MaskPromptGraph(sam),
        (torch.zeros(1, 256, 64, 64), torch.zeros(1, 1, 256, 256)),
        MASK_PROMPT_SPEC,
        model,
        sha256,
        cache_dir,
    )
    return paths


class _EncoderGraph(torch.nn.Module):
    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.image_encoder = sam.image_encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(image)


def export_encoder(sam: Sam, model: str, sha256: str, cache_dir: Path | None = None) -> Path:
    """Export the image encoder (input (1, 3, 1024, 1024) normalised and padded).

    Works for MobileSAM and SAM ViT-B/L; ViT-H's weights exceed protobuf's 2 GB limit for a
    single-file graph and are kept on torch.
    """
    size = sam.image_encoder.img_size
    return cached_export(
        _EncoderGraph(sam), (torch.zeros(1, 3, size, size),), ENCODER_SPEC, model, sha256, cache_dir
    )


def decoder_sessions(
    sam: Sam, model: str, sha256: str, device: str, cache_dir: Path | None = None
) -> DecoderSessions:
    paths = export_decoder(sam, model, sha256, cache_dir)
    with torch.no_grad():
        no_mask = sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).float().cpu().numpy()
    return open_sessions(
        paths,
        model,
        device,
        no_mask,
        low_res_side=int(sam.prompt_encoder.mask_input_size[0]),
        input_size=int(sam.image_encoder.img_size),
    )


def sam_segmentation_model(
    model: str, sam: Sam, ckpt: CheckpointFile, device: str = "cpu", cache_dir: Path | None = None
) -> SegmentationModel:
    """Compose a loaded SAM-family model into the engine's encoder + decoder pair."""
    sam = sam.to(device)
    sessions = decoder_sessions(sam, model, ckpt.sha256, device, cache_dir)
    return SegmentationModel(
        name=model, encoder=SamImageEncoder(model, sam), decoder=SamOnnxDecoder(model, sessions)
    )


def build_sam_backend(model: str, checkpoint: Path | None, device: str = "cpu") -> SegmentationModel:
    """Registry entry for sam_vit_b / sam_vit_l / sam_vit_h."""
    sam, ckpt = load_sam(model, checkpoint, lambda: build_sam_vit(model))
    return sam_segmentation_model(model, sam, ckpt, device)

"""SAM 2.1 (Hiera tiny / small / base+ / large) and EdgeTAM image backends through `transformers`.

Why `transformers` and not the `sam2` package:
- Meta does not publish `sam2` on PyPI (its repository installs from git and compiles an optional
  CUDA extension); the `sam2` name on PyPI is a third party's repackaging. `transformers` is a
  maintained PyPI package whose Sam2 and EdgeTAM code are reviewed ports of the originals.
- One code path for both families: `Sam2Model` and `EdgeTamModel` share the prompt encoder / mask
  decoder layout, and their `*VideoModel`s take frames one at a time (a streaming session), which
  fits our engine better than `SAM2VideoPredictor`'s whole-video `inference_state`.
- Weights load from a local folder (config.json + model.safetensors), the format Meta publishes on
  the Hugging Face hub for SAM 2.1 (`facebook/sam2.1-hiera-*`); safetensors cannot run code.
The cost: the original `.pt` files are not read directly; the error for one says which folder to
download instead.

The encoder runs the transformers vision tower (with its own image processor: a plain resize to
1024 x 1024, no padding); the decoder is the exported `Sam2DecoderGraph` on ONNX Runtime.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
from safetensors import SafetensorError

from models.checkpoints import CheckpointFile, check_file, known_checkpoint
from models.interfaces import (
    CheckpointError,
    ImageEmbedding,
    ImageInput,
    ModelError,
    PromptInput,
    SegmentationModel,
)
from models.onnx.decoder import OnnxPromptDecoder, open_sessions
from models.onnx.decoder import decoder_spec as onnx_decoder_spec
from models.onnx.export import GraphSpec, cached_export
from models.sam.decoder_graph import direct_taps
from models.sam2.decoder_graph import Sam2DecoderGraph, Sam2MaskPromptGraph

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sam2Variant:
    """What a checkpoint folder's config.json must say to be this model.

    Attributes:
        model_type: config.json "model_type" ("sam2" or "edgetam").
        blocks_per_stage: the Hiera trunk's depth per stage (None: not checked, e.g. EdgeTAM's RepViT).
    """

    model_type: str
    blocks_per_stage: tuple[int, ...] | None


SAM2_VARIANTS = MappingProxyType(
    {
        "sam2.1_hiera_tiny": Sam2Variant("sam2", (1, 2, 7, 2)),
        "sam2.1_hiera_small": Sam2Variant("sam2", (1, 2, 11, 2)),
        "sam2.1_hiera_base_plus": Sam2Variant("sam2", (2, 3, 16, 3)),
        "sam2.1_hiera_large": Sam2Variant("sam2", (2, 6, 36, 4)),
        "edgetam": Sam2Variant("edgetam", None),
    }
)

DECODER_INPUTS = (
    "image_embed",
    "dense",
    "feat_s0",
    "feat_s1",
    "point_coords",
    "point_labels",
    "row_idx",
    "row_w",
    "col_idx",
    "col_w",
)
DECODER_OUTPUTS = ("masks", "iou", "low_res", "object_score")


def decoder_spec(multimask: bool) -> GraphSpec:
    return onnx_decoder_spec(multimask, DECODER_INPUTS, DECODER_OUTPUTS)


MASK_PROMPT_SPEC = GraphSpec("mask_prompt", 1, ("mask_input",), ("dense",))


@dataclass(frozen=True, eq=False)
class Sam2Features:
    """Payload of a SAM 2 `ImageEmbedding`: the three feature levels the decoder reads.

    Attributes:
        image_embed: (1, 256, 64, 64) float32.
        feat_s0: (1, 32, 256, 256) float32.
        feat_s1: (1, 64, 128, 128) float32.
    """

    image_embed: np.ndarray
    feat_s0: np.ndarray
    feat_s1: np.ndarray


def _model_classes(model_type: str):
    """The image model for an image-only folder; the video model (a superset: same vision tower,
    prompt encoder and mask decoder, plus SAM 2's memory) for the published video folders."""
    from transformers import EdgeTamModel, EdgeTamVideoModel, Sam2Model, Sam2VideoModel

    return {
        "sam2": Sam2Model,
        "edgetam": EdgeTamModel,
        "sam2_video": Sam2VideoModel,
        "edgetam_video": EdgeTamVideoModel,
    }[model_type]


def _read_config(ckpt: CheckpointFile) -> dict:
    try:
        return json.loads((ckpt.path / "config.json").read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{ckpt.path / 'config.json'} is not valid JSON ({err})") from err


def load_sam2(model: str, checkpoint: Path | str | None):
    """Load a transformers-format SAM 2.1 / EdgeTAM folder, refusing any other model's weights.

    Returns:
        (transformers model in eval mode, CheckpointFile).
    Raises:
        CheckpointError: missing folder, an original `.pt` file, another model or size, corrupt or
            truncated safetensors, or weights that leave parameters uninitialised.
    """
    variant = SAM2_VARIANTS[model]
    known = known_checkpoint(model)
    if checkpoint is not None and Path(checkpoint).is_file():
        raise CheckpointError(
            f"checkpoint {checkpoint} is a single file, but model {model!r} loads the "
            "transformers-format folder "
            f"(config.json + model.safetensors): download {known.where() if known else 'it'}"
        )
    ckpt = check_file(checkpoint, model)
    config = _read_config(ckpt)
    found = config.get("model_type")
    # Meta's published folders (facebook/sam2.1-hiera-*) are "sam2_video": image + memory weights.
    if found not in (variant.model_type, f"{variant.model_type}_video"):
        raise CheckpointError(
            f"checkpoint {ckpt.path} is a {found!r} model, not {model!r} "
            f"(model_type {variant.model_type!r}); "
            f"download {known.where() if known else 'the right folder'}"
        )
    if variant.blocks_per_stage is not None:
        backbone = config.get("vision_config", {}).get("backbone_config", {})
        blocks = tuple(backbone.get("blocks_per_stage", ()))
        if blocks != variant.blocks_per_stage:
            other = next(
                (k for k, v in SAM2_VARIANTS.items() if v.blocks_per_stage == blocks), "another size"
            )
            raise CheckpointError(
                f"checkpoint {ckpt.path} has Hiera stages {blocks}, which is {other}, not {model!r} "
                f"{variant.blocks_per_stage}; download {known.where() if known else 'the right folder'}"
            )
    cls = _model_classes(found)
    try:
        net, info = cls.from_pretrained(str(ckpt.path), output_loading_info=True)
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        raise CheckpointError(
            f"checkpoint {ckpt.path} cannot be read as model {model!r}: corrupt or truncated "
            f"({type(err).__name__}: {str(err)[:200]})"
        ) from err
    missing = [k for k in info.get("missing_keys", []) if not k.endswith("positional_embedding")]
    bad = missing or info.get("mismatched_keys") or info.get("unexpected_keys")
    if bad:
        raise CheckpointError(
            f"checkpoint {ckpt.path} does not fit model {model!r}: missing {len(missing)}, "
            f"mismatched {len(info.get('mismatched_keys', []))}, "
            f"unexpected {len(info.get('unexpected_keys', []))} "
            f"keys (e.g. {list(bad)[0]})"
        )
    return net.float().eval(), ckpt


def image_processor(checkpoint: Path):
    """The checkpoint folder's image processor, or transformers' SAM 2 defaults (1024, ImageNet stats)."""
    from transformers import Sam2ImageProcessor

    if (Path(checkpoint) / "preprocessor_config.json").is_file():
        return Sam2ImageProcessor.from_pretrained(str(checkpoint))
    return Sam2ImageProcessor()


class Sam2ImageEncoder:
    """Heavy half: (H, W, 3) uint8 -> `Sam2Features` with the transformers vision tower."""

    def __init__(self, name: str, model: torch.nn.Module, processor) -> None:
        self.name = name
        self.model = model
        self.processor = processor

    def encode(self, image: ImageInput) -> ImageEmbedding:
        return self.encode_batch([image])[0]

    @torch.inference_mode()
    def encode_batch(self, images: Sequence[ImageInput]) -> list[ImageEmbedding]:
        """N images of any sizes in one vision-tower pass of batch N (the processor resizes each to
        1024 x 1024, so they stack). Same features as N single encodes up to float summation order."""
        for image in images:
            if image.rgb.ndim != 3 or image.rgb.shape[2] != 3 or image.rgb.dtype != np.uint8:
                raise ModelError(
                    f"expected an (H, W, 3) uint8 RGB image, got {image.rgb.shape} {image.rgb.dtype}"
                )
        if not images:
            return []
        pixels = self.processor(images=[image.rgb for image in images], return_tensors="pt")["pixel_values"]
        feats = self.model.get_image_embeddings(pixels.to(self.model.device))
        s0, s1, embed = (f.float().cpu().numpy() for f in feats)
        return [
            ImageEmbedding(
                self.name,
                image.size,
                Sam2Features(embed[i : i + 1].copy(), s0[i : i + 1].copy(), s1[i : i + 1].copy()),
            )
            for i, image in enumerate(images)
        ]


def encode_prompt(
    prompt: PromptInput, original_size: tuple[int, int], input_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Points, then box corners (labels 2, 3), then one padding point: (1, N, 2) float32, (1, N) int64.

    Same tokens as `Sam2PromptEncoder` (points pad only without a box; a box always carries a pad),
    with coordinates scaled from original pixels to the 1024 x 1024 input.
    """
    h, w = original_size
    scale = np.array([input_size / w, input_size / h], np.float32)
    coords = [np.asarray(prompt.point_coords, np.float32).reshape(-1, 2) * scale]
    labels = [np.asarray(prompt.point_labels, np.int64).reshape(-1)]
    if len(coords[0]) != len(labels[0]):
        raise ModelError(f"{len(coords[0])} points but {len(labels[0])} labels")
    if prompt.box is not None:
        coords.append(np.asarray(prompt.box, np.float32).reshape(2, 2) * scale)
        labels.append(np.array([2, 3], np.int64))
    coords.append(np.zeros((1, 2), np.float32))
    labels.append(np.array([-1], np.int64))
    return np.concatenate(coords)[None], np.concatenate(labels)[None]


class Sam2OnnxDecoder(OnnxPromptDecoder):
    """Light half: `Sam2Features` + prompt -> masks at the original resolution, via ONNX Runtime.

    `MaskPrediction.scores` are the predicted IoUs; the object-presence logit is dropped from the
    interface but a negative one (object absent) zeroes the masks, as SAM 2's predictor does for
    tracking.
    """

    def feeds(self, embedding: ImageEmbedding, prompt: PromptInput) -> dict[str, np.ndarray]:
        s = self.sessions
        data: Sam2Features = embedding.data
        coords, labels = encode_prompt(prompt, embedding.original_size, s.input_size)
        if prompt.mask is not None:
            low = prompt.mask.astype(np.float32)
            if low.shape[-2:] != (s.low_res_side, s.low_res_side):
                raise ModelError(
                    f"SAM 2 mask prompts are ({s.low_res_side}, {s.low_res_side}) low-res logits"
                )
            (dense,) = s.mask_prompt.run({"mask_input": low.reshape(1, 1, s.low_res_side, s.low_res_side)})
        else:
            dense = np.broadcast_to(s.no_mask, data.image_embed.shape)
        h, w = embedding.original_size
        row_idx, row_w = direct_taps(s.low_res_side, h)
        col_idx, col_w = direct_taps(s.low_res_side, w)
        return {
            "image_embed": data.image_embed,
            "dense": np.ascontiguousarray(dense),
            "feat_s0": data.feat_s0,
            "feat_s1": data.feat_s1,
            "point_coords": coords,
            "point_labels": labels,
            "row_idx": row_idx,
            "row_w": row_w,
            "col_idx": col_idx,
            "col_w": col_w,
        }


def export_decoder(
    net: torch.nn.Module, model: str, sha256: str, cache_dir: Path | None = None
) -> dict[str, Path]:
    """Export (or find cached) the decoder graphs. Returns {graph name: path}."""
    idx, w = direct_taps(256, 48)
    cidx, cw = direct_taps(256, 64)
    example = (
        torch.zeros(1, 256, 64, 64),
        torch.zeros(1, 256, 64, 64),
        torch.zeros(1, 32, 256, 256),
        torch.zeros(1, 64, 128, 128),
        torch.rand(1, 3, 2) * 1000,
        torch.tensor([[1, 0, -1]]),
        torch.from_numpy(idx),
        torch.from_numpy(w),
        torch.from_numpy(cidx),
        torch.from_numpy(cw),
    )
    paths = {}
    for multimask in (True, False):
        spec = decoder_spec(multimask)
        paths[spec.name] = cached_export(
            Sam2DecoderGraph(net, multimask), example, spec, model, sha256, cache_dir
        )
    paths[MASK_PROMPT_SPEC.name] = cached_export(
        Sam2MaskPromptGraph(net), (torch.zeros(1, 1, 256, 256),), MASK_PROMPT_SPEC, model, sha256, cache_dir
    )
    return paths


def build_sam2_backend(model: str, checkpoint: Path | None, device: str = "cpu") -> SegmentationModel:
    """Registry entry for sam2.1_hiera_* and edgetam."""
    net, ckpt = load_sam2(model, checkpoint)
    net = net.to(device)
    paths = export_decoder(net, model, ckpt.sha256)
    with torch.no_grad():
        no_mask = net.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).float().cpu().numpy()
    sessions = open_sessions(
        paths, model, device, no_mask, input_size=int(net.prompt_encoder.input_image_size)
    )
    encoder = Sam2ImageEncoder(model, net, image_processor(ckpt.path))
    tracker = None
    if net.config.model_type.endswith("_video"):
        from models.sam2.video import Sam2VideoTracker, video_processor

        tracker = Sam2VideoTracker(model, net, video_processor(ckpt.path, int(net.config.image_size)))
    return SegmentationModel(
        name=model, encoder=encoder, decoder=Sam2OnnxDecoder(model, sessions), tracker=tracker
    )

"""MobileSAM = our TinyViT encoder + segment-anything's own prompt encoder and mask decoder.

The published `mobile_sam.pt` is a state dict of a segment-anything `Sam` whose `image_encoder`
is TinyViT; everything after the encoder is SAM's, so the decoder path (ONNX export, parity with
`SamPredictor`) is shared with the ViT backends.
"""

from __future__ import annotations

from pathlib import Path

from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from models.interfaces import SegmentationModel
from models.mobile_sam.tiny_vit import TinyViT, TinyViTConfig
from models.sam.backend import load_sam, sam_segmentation_model

MODEL_NAME = "mobile_sam"


def build_mobile_sam_architecture(config: TinyViTConfig | None = None) -> Sam:
    """The randomly initialised MobileSAM (`vit_t` in the MobileSAM repository), eval mode."""
    config = config or TinyViTConfig()
    embed = 256
    side = config.img_size // 16
    sam = Sam(
        image_encoder=TinyViT(config),
        prompt_encoder=PromptEncoder(
            embed_dim=embed,
            image_embedding_size=(side, side),
            input_image_size=(config.img_size, config.img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=embed, mlp_dim=2048, num_heads=8),
            transformer_dim=embed,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def load_mobile_sam(checkpoint: Path | str | None):
    """Load `mobile_sam.pt` (checked, strict). Returns (Sam, CheckpointFile)."""
    return load_sam(MODEL_NAME, checkpoint, build_mobile_sam_architecture)


def build_mobile_sam_backend(checkpoint: Path | None, device: str = "cpu") -> SegmentationModel:
    """Registry entry for mobile_sam."""
    sam, ckpt = load_mobile_sam(checkpoint)
    return sam_segmentation_model(MODEL_NAME, sam, ckpt, device)

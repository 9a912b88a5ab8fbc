"""SAM 2.1 / EdgeTAM prompt encoder + mask decoder as one export-ready graph.

It runs the transformers model's own `mask_decoder` (with SAM 2's high-resolution skip features,
object-score token and dynamic single-mask fallback) after embedding the sparse prompt exactly as
`Sam2PromptEncoder` does, and folds in the post-processing of `Sam2ImageProcessor.post_process_masks`
(one bilinear resize of the 256 x 256 logits to the original size, threshold 0) as separable taps.

Graph inputs (batch 1):
    image_embed  (1, 256, 64, 64) float32  lowest-resolution feature map (+ no-memory embedding)
    dense        (1, 256, 64, 64) float32  dense prompt: no-mask embedding or a mask embedding
    feat_s0      (1, 32, 256, 256) float32 high-resolution features (already projected by conv_s0)
    feat_s1      (1, 64, 128, 128) float32 (conv_s1)
    point_coords (1, N, 2) float32 points then box corners in the 1024 x 1024 input frame
    point_labels (1, N) int64: 1 object, 0 background, 2/3 box corners, -1 padding
    row_idx, row_w, col_idx, col_w: `direct_taps` of the 256 -> original-size resize.
Outputs: masks (K, H, W) bool, iou (K,) float32, low_res (K, 256, 256) float32, object_score (1,) float32.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Sam2DecoderGraph(nn.Module):
    """Export wrapper around a transformers `Sam2Model` or `EdgeTamModel`.

    Args:
        model: the loaded transformers model (eval mode).
        multimask: 3 masks (tokens 1..3) or 1 mask (token 0, with SAM 2's stability fallback).
    """

    def __init__(self, model: nn.Module, multimask: bool) -> None:
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder
        self.multimask = multimask
        self.input_size = float(model.prompt_encoder.input_image_size)
        with torch.no_grad():
            pe = model.get_image_wide_positional_embeddings()
        self.register_buffer("image_pe", pe, persistent=False)

    def _embed_points(self, coords: Tensor, labels: Tensor) -> Tensor:
        pe = self.prompt_encoder
        xy = (coords + 0.5) / self.input_size
        emb = pe.shared_embedding(xy[:, None])  # (1, 1, N, C)
        lab = labels[:, None, :, None]
        emb = torch.where(lab == -1, pe.not_a_point_embed.weight, emb)
        return emb + pe.point_embed(labels.clamp(min=0))[:, None] * (lab >= 0)

    def forward(
        self,
        image_embed: Tensor,
        dense: Tensor,
        feat_s0: Tensor,
        feat_s1: Tensor,
        point_coords: Tensor,
        point_labels: Tensor,
        row_idx: Tensor,
        row_w: Tensor,
        col_idx: Tensor,
        col_w: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        sparse = self._embed_points(point_coords, point_labels)
        low_res, iou, _, object_score = self.mask_decoder(
            image_embeddings=image_embed,
            image_positional_embeddings=self.image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=self.multimask,
            high_resolution_features=[feat_s0, feat_s1],
        )
        low_res = low_res[0, 0]  # (K, 256, 256)
        rows = (low_res[:, row_idx, :] * row_w[None, :, :, None]).sum(dim=1)
        up = (rows[:, :, col_idx] * col_w[None, None]).sum(dim=2)
        return up > 0.0, iou[0, 0], low_res, object_score.reshape(1)


class Sam2MaskPromptGraph(nn.Module):
    """(1, 1, 256, 256) mask logits -> (1, 256, 64, 64) dense prompt embedding."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.mask_embed = model.prompt_encoder.mask_embed

    def forward(self, mask_input: Tensor) -> Tensor:
        return self.mask_embed(mask_input)

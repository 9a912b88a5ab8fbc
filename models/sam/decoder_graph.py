"""SAM's prompt encoder + mask decoder as one export-ready graph, re-associated for few prompts.

Why not segment-anything's `SamOnnxModel`: it always upsamples the 4 mask tokens' choice by a
point-count heuristic and evaluates attention the textbook way. A prompt has T = 5 output tokens +
N points (+1 pad), typically T < 16, against 4096 image tokens. The textbook way projects all 4096
image tokens through q/k/v/out (4096 x 256 x 128 multiply-adds each) in every attention. Because
the projections are linear, the same numbers come out of

    scores_h = (q_h W_k,h) x^T            (T x 256) @ (256 x 4096)   token -> image
    out_h    = (P_h x) W_v,h^T + b_v,h    (T x 4096) @ (4096 x 256)
    scores   = x (W_q,h^T k_h^T) + b       (4096 x 256) @ (256 x 8T)  image -> token
    out      = P (v_h W_o,h^T) + b_o       (4096 x 8T) @ (8T x 256)

whose cost is 8T x 4096 x 256 instead of 4096 x 256 x 128 per projection: about half the
multiply-adds and no per-head transposes of image-sized tensors at T <= 14. (The key bias of
token->image attention adds a per-row constant to the scores and cancels in the softmax.) The
transposed convolutions of the output upscaling are kernel 2 / stride 2, i.e. one matmul each;
we keep the feature map channels-last so LayerNorm2d is a plain layer norm, and apply the
hypernetwork before the final pixel shuffle, so only K mask planes are ever rearranged.
The upsampling to the original image is linear too: two bilinear resizes and a crop compose into
at most 4 taps per output row and column, so we never materialise the 1024 x 1024 planes.

Every step is exact algebra on the checkpoint's weights; tests hold the result to the reference
`SamPredictor` (max |logit diff| <= 1e-3, mask IoU >= 0.99).

Graph inputs (batch 1; one prompt set per call):
    src          (1, 256, 64, 64) float32: image embedding + dense prompt embedding
                 (`MaskPromptGraph` output, or the model's no-mask embedding).
    point_coords (1, N, 2) float32: points and box corners in the 1024-input frame, +0 (we add 0.5).
    point_labels (1, N) float32: 1 object, 0 background, 2/3 box corners, -1 padding point.
    row_idx, row_w (4, H) int64 / float32 and col_idx, col_w (4, W): the taps of `resize_taps`,
                 SAM's two bilinear resizes (256 -> 1024, crop to the unpadded input size,
                 -> original size) composed into one 4-tap separable filter per axis.
Outputs:
    masks        (K, H, W) bool at the original resolution (logit > 0).
    iou          (K,) float32 predicted IoU.
    low_res      (K, 256, 256) float32 logits (feed back as a mask prompt).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock
from torch import Tensor, nn
from torch.nn import functional as F


def _tokens_to_image(attn: Attention, q_tok: Tensor, k_img: Tensor, v_img: Tensor) -> Tensor:
    """Attention of T tokens over the image. q_tok (T, C); k_img, v_img (HW, C) -> (T, C)."""
    h = attn.num_heads
    d = attn.internal_dim // h
    c = k_img.shape[1]
    t = q_tok.shape[0]
    q = attn.q_proj(q_tok).reshape(t, h, d).transpose(0, 1)  # (h, T, d)
    a = torch.matmul(q, attn.k_proj.weight.reshape(h, d, c))  # (h, T, C)
    scores = torch.matmul(a.reshape(h * t, c), k_img.transpose(0, 1)) / math.sqrt(d)  # (hT, HW)
    p = torch.softmax(scores, dim=-1)
    px = torch.matmul(p, v_img).reshape(h, t, c)  # (h, T, C)
    out = torch.matmul(px, attn.v_proj.weight.reshape(h, d, c).transpose(1, 2))  # (h, T, d)
    out = out + attn.v_proj.bias.reshape(h, 1, d)
    return attn.out_proj(out.transpose(0, 1).reshape(t, h * d))


def _image_to_tokens(attn: Attention, q_img: Tensor, k_tok: Tensor, v_tok: Tensor) -> Tensor:
    """Attention of the image over T tokens. q_img (HW, C); k_tok, v_tok (T, C) -> (HW, C)."""
    h = attn.num_heads
    d = attn.internal_dim // h
    c = q_img.shape[1]
    t = k_tok.shape[0]
    k = attn.k_proj(k_tok).reshape(t, h, d).permute(1, 2, 0)  # (h, d, T)
    wq = attn.q_proj.weight.reshape(h, d, c)
    b_mat = torch.matmul(wq.transpose(1, 2), k)  # (h, C, T)
    b_vec = torch.matmul(attn.q_proj.bias.reshape(h, 1, d), k)  # (h, 1, T)
    scores = torch.matmul(q_img, b_mat.permute(1, 0, 2).reshape(c, h * t)) + b_vec.reshape(1, h * t)
    p = torch.softmax((scores / math.sqrt(d)).reshape(-1, h, t), dim=-1).reshape(-1, h * t)
    v = attn.v_proj(v_tok).reshape(t, h, d).transpose(0, 1)  # (h, T, d)
    wo = attn.out_proj.weight.reshape(c, h, d).permute(1, 2, 0)  # (h, d, C)
    vo = torch.matmul(v, wo).reshape(h * t, c)  # (hT, C)
    return torch.matmul(p, vo) + attn.out_proj.bias


def _self_attention(attn: Attention, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Plain attention among the T tokens (tiny). (T, C) each -> (T, C)."""
    h = attn.num_heads
    d = attn.internal_dim // h
    t = q.shape[0]
    qh = attn.q_proj(q).reshape(t, h, d).transpose(0, 1)
    kh = attn.k_proj(k).reshape(t, h, d).transpose(0, 1)
    vh = attn.v_proj(v).reshape(t, h, d).transpose(0, 1)
    p = torch.softmax(torch.matmul(qh, kh.transpose(1, 2)) / math.sqrt(d), dim=-1)
    return attn.out_proj(torch.matmul(p, vh).transpose(0, 1).reshape(t, h * d))


def _block(layer: TwoWayAttentionBlock, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor):
    if layer.skip_first_layer_pe:
        queries = _self_attention(layer.self_attn, queries, queries, queries)
    else:
        q = queries + query_pe
        queries = queries + _self_attention(layer.self_attn, q, q, queries)
    queries = layer.norm1(queries)
    k = keys + key_pe
    queries = layer.norm2(
        queries + _tokens_to_image(layer.cross_attn_token_to_image, queries + query_pe, k, keys)
    )
    queries = layer.norm3(queries + layer.mlp(queries))
    keys = layer.norm4(
        keys + _image_to_tokens(layer.cross_attn_image_to_token, k, queries + query_pe, queries)
    )
    return queries, keys


class SamDecoderGraph(nn.Module):
    """The export wrapper; see the module docstring for inputs and outputs.

    Args:
        sam: a loaded segment-anything `Sam` (ViT-B/L/H or MobileSAM: same decoder).
        multimask: True -> the 3 multimask outputs (tokens 1..3); False -> the single-mask
            token 0, exactly like `SamPredictor.predict(multimask_output=...)`.
    """

    def __init__(self, sam: Sam, multimask: bool) -> None:
        super().__init__()
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder
        self.img_size = int(sam.image_encoder.img_size)
        self.mask_threshold = float(sam.mask_threshold)
        self.first = 1 if multimask else 0
        self.count = sam.mask_decoder.num_multimask_outputs if multimask else 1
        with torch.no_grad():
            pe = sam.prompt_encoder.get_dense_pe()  # (1, C, h, w), a constant of the model
        self.register_buffer("key_pe", pe.flatten(2)[0].transpose(0, 1).contiguous(), persistent=False)

    def _embed_points(self, coords: Tensor, labels: Tensor) -> Tensor:
        pe = self.prompt_encoder
        emb = pe.pe_layer._pe_encoding((coords + 0.5) / self.img_size)  # (1, N, C)
        lab = labels.unsqueeze(-1)
        emb = emb * (lab != -1) + pe.not_a_point_embed.weight * (lab == -1)
        for i in range(pe.num_point_embeddings):
            emb = emb + pe.point_embeddings[i].weight * (lab == i)
        return emb[0]

    def _upscale(self, src: Tensor, hyper: Tensor, side: int) -> Tensor:
        """src (HW, C) channels-last; hyper (K, C/8) -> (K, 4*side, 4*side) mask logits."""
        dc1, ln1, act1, dc2, act2 = self.mask_decoder.output_upscaling
        c1 = dc1.weight.shape[1]
        c2 = dc2.weight.shape[1]
        w1 = dc1.weight.permute(0, 2, 3, 1).reshape(dc1.weight.shape[0], 4 * c1)
        y = torch.matmul(src, w1).reshape(-1, c1) + dc1.bias  # (HW*4, C1), pixel (i, j, a, b)
        y = act1(F.layer_norm(y, (c1,), ln1.weight, ln1.bias, ln1.eps))
        w2 = dc2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2)
        y = act2(torch.matmul(y, w2).reshape(-1, c2) + dc2.bias)  # (HW*16, C2), pixel (i, j, a, b, a', b')
        m = torch.matmul(y, hyper.transpose(0, 1))  # (HW*16, K)
        k = hyper.shape[0]
        m = m.reshape(side, side, 2, 2, 2, 2, k).permute(6, 0, 2, 4, 1, 3, 5)
        return m.reshape(k, 4 * side, 4 * side)

    def forward(
        self,
        src: Tensor,
        point_coords: Tensor,
        point_labels: Tensor,
        row_idx: Tensor,
        row_w: Tensor,
        col_idx: Tensor,
        col_w: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        dec = self.mask_decoder
        side = src.shape[-1]
        sparse = self._embed_points(point_coords, point_labels)
        out_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens, sparse], dim=0)  # (T, C)
        keys = src[0].flatten(1).transpose(0, 1)  # (HW, C)
        queries = tokens
        for layer in dec.transformer.layers:
            queries, keys = _block(layer, queries, keys, tokens, self.key_pe)
        tr = dec.transformer
        queries = tr.norm_final_attn(
            queries
            + _tokens_to_image(tr.final_attn_token_to_image, queries + tokens, keys + self.key_pe, keys)
        )
        iou = dec.iou_prediction_head(queries[0:1])[0, self.first : self.first + self.count]
        mask_tokens = queries[1 + self.first : 1 + self.first + self.count]
        hyper = torch.stack(
            [dec.output_hypernetworks_mlps[self.first + i](mask_tokens[i]) for i in range(self.count)], dim=0
        )
        low_res = self._upscale(keys, hyper, side)  # (K, 256, 256)
        rows = (low_res[:, row_idx, :] * row_w[None, :, :, None]).sum(dim=1)  # (K, H, 256)
        up = (rows[:, :, col_idx] * col_w[None, None]).sum(dim=2)  # (K, H, W)
        return up > self.mask_threshold, iou, low_res


def _bilinear(in_len: int, out_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PyTorch/ONNX bilinear (half-pixel, align_corners=False) taps: i0, i1 (out_len,), weight of i1."""
    src = np.maximum((np.arange(out_len, dtype=np.float64) + 0.5) * (in_len / out_len) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_len - 1)
    i1 = np.minimum(i0 + 1, in_len - 1)
    return i0, i1, src - i0


def resize_taps(low_len: int, pad_len: int, crop_len: int, out_len: int) -> tuple[np.ndarray, np.ndarray]:
    """One axis of SAM's mask post-processing as 4 taps per output pixel.

    `Sam.postprocess_masks` resizes low_len (256) -> pad_len (1024), keeps the first crop_len
    (the unpadded input), and resizes that to out_len (the original image). Both steps are
    linear, so out[o] = sum_k w[k, o] * low[idx[k, o]] with at most 4 taps.

    Returns:
        idx (4, out_len) int64 and w (4, out_len) float32; unused taps have weight 0.
    """
    a0, a1, alpha = _bilinear(crop_len, out_len)  # out -> mid rows (mid < crop_len)
    m0, m1, mu = _bilinear(low_len, pad_len)  # mid -> low rows
    idx = np.stack([m0[a0], m1[a0], m0[a1], m1[a1]])
    w = np.stack([(1 - alpha) * (1 - mu[a0]), (1 - alpha) * mu[a0], alpha * (1 - mu[a1]), alpha * mu[a1]])
    return idx, w.astype(np.float32)


def direct_taps(low_len: int, out_len: int) -> tuple[np.ndarray, np.ndarray]:
    """One bilinear resize low_len -> out_len (SAM 2's post-processing) in `resize_taps`' format."""
    i0, i1, lam = _bilinear(low_len, out_len)
    zero = np.zeros_like(lam)
    idx = np.stack([i0, i1, i0, i0])
    return idx, np.stack([1 - lam, lam, zero, zero]).astype(np.float32)


class MaskPromptGraph(nn.Module):
    """Dense prompt: (1, 1, 256, 256) low-res mask logits -> image embedding + mask embedding.

    Runs only when a prompt carries a mask; without one the decoder's `src` is the embedding plus
    the model's constant no-mask embedding, added on the caller's side.
    Inputs: features (1, 256, 64, 64), mask_input (1, 1, 256, 256). Output: src (1, 256, 64, 64).
    """

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.mask_downscaling = sam.prompt_encoder.mask_downscaling

    def forward(self, features: Tensor, mask_input: Tensor) -> Tensor:
        return features + self.mask_downscaling(mask_input)

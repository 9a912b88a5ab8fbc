"""MobileSAM's image encoder: TinyViT-5M adapted to 1024 x 1024 input and a 64 x 64 x 256 output.

Why our own file: MobileSAM is not on PyPI, and timm's TinyViT differs from MobileSAM's in the
two places that matter, so its weights would not load: MobileSAM keeps the last stage at 1/16
resolution (the last patch merging has stride 1, so the output is 64 x 64 like SAM's ViT), and it
adds SAM's neck (1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d -> 256 channels). timm also names
its parameters differently. The module attribute names here are chosen so that our
`state_dict()` has exactly the `image_encoder.*` keys and shapes of the published `mobile_sam.pt`
(`patch_embed.seq.0.c.weight`, `layers.1.blocks.0.attn.qkv.weight`, `neck.1.weight`, ...),
including the unused ImageNet head (`norm_head`, `head`) that the file carries.

Shapes (defaults = MobileSAM):
    input  (B, 3, 1024, 1024) normalised, padded (SAM's `preprocess`)
    stem   -> (B, 64, 256, 256)          conv stage 0 (MBConv x2) -> merge to 128 x 128 x 128
    stage1 -> (B, 128*128, 128)          attention, window 7      -> merge to 64 x 64 x 160
    stage2 -> (B, 64*64, 160)            attention, window 14     -> merge (stride 1) to 320
    stage3 -> (B, 64*64, 320)            attention, window 7
    neck   -> (B, 256, 64, 64)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from segment_anything.modeling.common import LayerNorm2d
from torch import Tensor, nn
from torch.nn import functional as F


@dataclass(frozen=True)
class TinyViTConfig:
    """TinyViT shape. Defaults are MobileSAM's `build_sam_vit_t` values."""

    img_size: int = 1024
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    out_chans: int = 256
    num_classes: int = 1000


class ConvBN(nn.Sequential):
    """Conv (no bias) + BatchNorm; keys `c.*`, `bn.*`."""

    def __init__(
        self, cin: int, cout: int, ks: int = 1, stride: int = 1, pad: int = 0, groups: int = 1
    ) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, ks, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(cout))


class Stem(nn.Module):
    """Two stride-2 3x3 convs: (B, 3, S, S) -> (B, C, S/4, S/4)."""

    def __init__(self, cin: int, dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(ConvBN(cin, dim // 2, 3, 2, 1), nn.GELU(), ConvBN(dim // 2, dim, 3, 2, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block on (B, C, H, W)."""

    def __init__(self, dim: int, expand: float) -> None:
        super().__init__()
        hidden = int(dim * expand)
        self.conv1 = ConvBN(dim, hidden)
        self.act1 = nn.GELU()
        self.conv2 = ConvBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = ConvBN(hidden, dim)
        self.act3 = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv3(self.act2(self.conv2(self.act1(self.conv1(x)))))
        return self.act3(x + y)


class PatchMerging(nn.Module):
    """(B, C, H, W) or (B, H*W, C) -> (B, H'*W', C_out); stride 2, or 1 for MobileSAM's last merge."""

    def __init__(self, resolution: int, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.act = nn.GELU()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 3:
            b = x.shape[0]
            x = x.transpose(1, 2).reshape(b, -1, self.resolution, self.resolution)
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        return x.flatten(2).transpose(1, 2)


class WindowAttention(nn.Module):
    """Multi-head attention inside a window with learned relative-offset biases (LeViT style).

    `qkv` packs, per head, [q (d), k (d), v (d)]: the layout of the published weights.
    Input/output (B', w*w, C).
    """

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        points = list(itertools.product(range(window), range(window)))
        offsets: dict[tuple[int, int], int] = {}
        idxs = []
        for p1 in points:
            for p2 in points:
                off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                idxs.append(offsets.setdefault(off, len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer(
            "attention_bias_idxs",
            torch.tensor(idxs, dtype=torch.long).view(len(points), len(points)),
            persistent=False,
        )

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.head_dim)
        q, k, v = qkv.permute(0, 2, 1, 3).split(self.head_dim, dim=3)
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.attention_biases[:, self.attention_bias_idxs]
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Window attention, a depthwise 3x3 conv, an MLP; (B, R*R, C) -> same."""

    def __init__(
        self, dim: int, resolution: int, num_heads: int, window: int, mlp_ratio: float, conv: int
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.window = window
        self.attn = WindowAttention(dim, num_heads, window)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = ConvBN(dim, dim, conv, 1, conv // 2, groups=dim)

    def _windows(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        r, w = self.resolution, self.window
        if r == w:
            return self.attn(x)
        pad = (w - r % w) % w
        x = x.view(b, r, r, c)
        if pad:
            x = F.pad(x, (0, 0, 0, pad, 0, pad))
        p = r + pad
        m = p // w
        x = x.view(b, m, w, m, w, c).transpose(2, 3).reshape(b * m * m, w * w, c)
        x = self.attn(x)
        x = x.view(b, m, m, w, w, c).transpose(2, 3).reshape(b, p, p, c)
        if pad:
            x = x[:, :r, :r].contiguous()
        return x.view(b, n, c)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        x = x + self._windows(x)
        x = self.local_conv(x.transpose(1, 2).reshape(b, c, self.resolution, self.resolution))
        x = x.view(b, c, n).transpose(1, 2)
        return x + self.mlp(x)


class Stage(nn.Module):
    """A stage's blocks and its optional trailing patch merging (keys `blocks.*`, `downsample.*`)."""

    def __init__(self, blocks: list[nn.Module], downsample: nn.Module | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class TinyViT(nn.Module):
    """The encoder; `forward` maps (B, 3, S, S) to (B, out_chans, S/16, S/16)."""

    def __init__(self, config: TinyViTConfig = TinyViTConfig()) -> None:
        super().__init__()
        cfg = config
        self.img_size = cfg.img_size
        dims = cfg.embed_dims
        self.patch_embed = Stem(3, dims[0])
        res = cfg.img_size // 4
        self.out_res = cfg.img_size // 16
        self.layers = nn.ModuleList()
        last = len(dims) - 1
        for i, dim in enumerate(dims):
            down = None
            if i < last:
                # MobileSAM stops downsampling at 1/16: the merge into the last stage keeps resolution.
                stride = 1 if i + 1 == last else 2
                down = PatchMerging(res, dim, dims[i + 1], stride)
            if i == 0:
                blocks: list[nn.Module] = [MBConv(dim, cfg.mbconv_expand_ratio) for _ in range(cfg.depths[i])]
            else:
                blocks = [
                    TinyViTBlock(
                        dim, res, cfg.num_heads[i], cfg.window_sizes[i], cfg.mlp_ratio, cfg.local_conv_size
                    )
                    for _ in range(cfg.depths[i])
                ]
            self.layers.append(Stage(blocks, down))
            if down is not None and stride == 2:
                res //= 2
        self.norm_head = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], cfg.num_classes)
        self.neck = nn.Sequential(
            nn.Conv2d(dims[-1], cfg.out_chans, kernel_size=1, bias=False),
            LayerNorm2d(cfg.out_chans),
            nn.Conv2d(cfg.out_chans, cfg.out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(cfg.out_chans),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        b, _, c = x.shape
        x = x.view(b, self.out_res, self.out_res, c).permute(0, 3, 1, 2)
        return self.neck(x)

"""CLIP text (and image) embeddings through `open_clip`, from local files only, with a phrase cache.

Voice prompts repeat ("the red mug", "that chair"), so each encoder keeps a bounded LRU cache of
phrase -> embedding, and encodes every phrase it has not seen in one batch. The cache belongs to
the encoder instance (no module-level state); its size bounds memory (N x D floats).

Checkpoints: either
- a folder in open_clip's hub layout (`open_clip_config.json` + `open_clip_model.safetensors` or
  `open_clip_pytorch_model.bin`), which is how LAION and OpenAI weights are published on the
  Hugging Face hub, or
- a single weights file plus one of open_clip's built-in architecture names (`ViT-B-32`, ...).
The tokenizer vocabulary ships inside open_clip, so text encoding needs no network.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.checkpoints import check_file
from models.interfaces import CheckpointError, ModelError

log = logging.getLogger(__name__)

WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
DEFAULT_ARCH = "ViT-B-32"


@dataclass(frozen=True)
class CacheInfo:
    hits: int
    misses: int
    size: int
    capacity: int


def _where(arch: str) -> str:
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(arch) if arch in open_clip.list_models() else []
    for tag in tags:
        cfg = open_clip.get_pretrained_cfg(arch, tag)
        if cfg.get("hf_hub"):
            return f"e.g. https://huggingface.co/{cfg['hf_hub'].rstrip('/')} ({arch}, {tag})"
    return "the open_clip model card of that architecture on the Hugging Face hub"


class ClipEncoder:
    """`TextEncoder` over an open_clip model; also embeds images for text-image ranking.

    Args:
        name: registry name, e.g. "clip:ViT-B-32".
        model: an open_clip `CLIP` in eval mode.
        tokenizer: the matching open_clip tokenizer.
        preprocess: open_clip's image transform (PIL image -> (3, S, S) tensor).
        cache_size: phrases kept; least recently used are dropped first.
    """

    def __init__(self, name: str, model, tokenizer, preprocess, cache_size: int = 1024) -> None:
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.capacity = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._hits = 0
        self._misses = 0

    @property
    def dim(self) -> int:
        return int(self.model.text_projection.shape[1]) if hasattr(self.model, "text_projection") else 0

    def cache_info(self) -> CacheInfo:
        return CacheInfo(self._hits, self._misses, len(self._cache), self.capacity)

    @torch.inference_mode()
    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(texts)
        feats = self.model.encode_text(tokens.to(next(self.model.parameters()).device))
        return torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy()

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """Phrases -> (N, D) float32, unit L2 norm; uncached phrases are encoded in one batch."""
        keys = [" ".join(t.lower().split()) for t in texts]
        todo = list(dict.fromkeys(k for k in keys if k not in self._cache))
        self._hits += len(keys) - len(todo)
        if todo:
            self._misses += len(todo)
            for key, vec in zip(todo, self._encode_batch(todo), strict=True):
                self._cache[key] = vec
        out = np.stack([self._cache[k] for k in keys]) if keys else np.zeros((0, self.dim), np.float32)
        for key in keys:
            self._cache.move_to_end(key)
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return out.astype(np.float32)

    def encode_image(self, rgb: np.ndarray) -> np.ndarray:
        """One (H, W, 3) uint8 RGB image -> (D,) float32 unit embedding."""
        return self.encode_images([rgb])[0]

    @torch.inference_mode()
    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """N (H_i, W_i, 3) uint8 RGB images (e.g. masked crops) -> (N, D) float32 unit embeddings.

        One forward pass for all (the ranking of a voice prompt's candidate masks); each image
        goes through the same preprocessing as `encode_image`, so row i equals encode_image(images[i]).
        """
        from PIL import Image

        if not images:
            return np.zeros((0, self.dim), np.float32)
        x = torch.stack([self.preprocess(Image.fromarray(rgb)) for rgb in images])
        x = x.to(next(self.model.parameters()).device)
        return torch.nn.functional.normalize(self.model.encode_image(x).float(), dim=-1).cpu().numpy()


def load_clip(
    checkpoint: Path | str | None, arch: str | None = None, device: str = "cpu", cache_size: int = 1024
):
    """Load a CLIP model from a local folder (open_clip hub layout) or a weights file + architecture.

    Raises:
        CheckpointError: missing path, a folder without config or weights, a corrupt file, or
            weights of another architecture (open_clip's strict load fails).
    """
    import open_clip

    arch_name = arch or DEFAULT_ARCH
    model_id = f"clip:{arch_name}"
    if checkpoint is None:
        raise CheckpointError(f"CLIP needs local weights: download {_where(arch_name)} and pass its folder")
    path = Path(checkpoint).expanduser()
    if not path.exists():
        raise CheckpointError(f"CLIP checkpoint {path} not found: download {_where(arch_name)}")
    if path.is_dir():
        weights = next((path / f for f in WEIGHT_FILES if (path / f).is_file()), None)
        if not (path / "open_clip_config.json").is_file() or weights is None:
            raise CheckpointError(
                f"CLIP folder {path} needs open_clip_config.json and one of {', '.join(WEIGHT_FILES)}: "
                f"download {_where(arch_name)}"
            )
        model_id = f"clip:{path.name}"
        ckpt = check_file(weights, model_id)
        name, pretrained = f"local-dir:{path}", None
    else:
        if arch_name not in open_clip.list_models():
            raise ModelError(
                f"unknown CLIP architecture {arch_name!r}; open_clip knows e.g. ViT-B-32, ViT-L-14"
            )
        ckpt = check_file(path, model_id)
        name, pretrained = arch_name, str(path)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device=device
        )
    except (RuntimeError, ValueError, OSError, EOFError, KeyError, AssertionError) as err:
        # open_clip reports a foreign architecture as a strict-load RuntimeError or, when the
        # positional embeddings differ, as an AssertionError from its resize helper.
        raise CheckpointError(
            f"CLIP checkpoint {ckpt.path} cannot be loaded as {model_id}: corrupt, truncated or another "
            f"architecture ({type(err).__name__}: {str(err)[:200]})"
        ) from err
    tokenizer = open_clip.get_tokenizer(name)
    return ClipEncoder(model_id, model.eval(), tokenizer, preprocess, cache_size)

"""A CLIP checkpoint of the real open_clip architecture (`open_clip.CLIP`), tiny and random, on disk.

The same tiny config as tests/test_models_clip.py: a ViT image tower and a transformer text tower
with CLIP's real tokenizer vocabulary, saved in open_clip's hub folder layout, so the engine loads
it exactly as it would load downloaded LAION/OpenAI weights (`--clip-checkpoint FOLDER`).
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


def write_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """Write open_clip_config.json + open_clip_pytorch_model.bin (seeded random weights); returns folder."""
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": {}}))
    torch.save(open_clip.CLIP(**TINY_CLIP).state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder

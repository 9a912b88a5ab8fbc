"""CLIP text/image encoder from a local open_clip folder (tiny config of the real CLIP
architecture, random weights): parity with open_clip, batching, the phrase cache, errors."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import torch

from models.clip.text import load_clip
from models.interfaces import CheckpointError, TextEncoder

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("clip") / "tiny-clip"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY, "preprocess_cfg": {}}))
    model = open_clip.CLIP(**TINY)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder, model.eval()


def test_text_parity_batching_and_cache(clip_folder):
    folder, ref = clip_folder
    enc = load_clip(folder)
    assert isinstance(enc, TextEncoder) and enc.name == "clip:tiny-clip"
    phrases = ["the red mug", "a chair", "The  red mug", "laptop on the desk"]
    out = enc.encode_text(phrases)
    assert out.shape == (4, 32) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    tok = open_clip.get_tokenizer("ViT-B-32")
    with torch.no_grad():
        want = torch.nn.functional.normalize(
            ref.encode_text(tok(["the red mug", "a chair", "laptop on the desk"])), dim=-1
        )
    assert np.abs(out[[0, 1, 3]] - want.numpy()).max() <= 1e-5
    assert np.array_equal(out[0], out[2])  # same phrase after case/space folding
    info = enc.cache_info()
    assert (info.misses, info.hits, info.size) == (3, 1, 3)
    again = enc.encode_text(["a chair"])
    assert np.array_equal(again[0], out[1]) and enc.cache_info().hits == 2
    single = load_clip(folder).encode_text(["laptop on the desk"])
    assert np.abs(single[0] - out[3]).max() <= 1e-5  # batching does not change an embedding


def test_cache_is_bounded(clip_folder):
    enc = load_clip(clip_folder[0], cache_size=2)
    enc.encode_text(["a", "b", "c"])
    assert enc.cache_info().size == 2


def test_image_embedding(clip_folder):
    enc = load_clip(clip_folder[0])
    rng = np.random.default_rng(0)
    crops = [
        rng.integers(0, 255, (40, 50, 3), dtype=np.uint8),
        rng.integers(0, 255, (17, 9, 3), dtype=np.uint8),
    ]
    vec = enc.encode_image(crops[0])
    assert vec.shape == (32,) and abs(np.linalg.norm(vec) - 1) < 1e-5
    batch = enc.encode_images(crops)
    assert batch.shape == (2, 32) and np.abs(batch[0] - vec).max() <= 1e-5


def test_errors(clip_folder, tmp_path):
    with pytest.raises(CheckpointError, match=r"not found.*huggingface\.co/"):
        load_clip(tmp_path / "missing")
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY}))
    with pytest.raises(CheckpointError, match="open_clip_pytorch_model.bin"):
        load_clip(tmp_path)
    bad = tmp_path / "open_clip_pytorch_model.bin"
    bad.write_bytes((clip_folder[0] / "open_clip_pytorch_model.bin").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt, truncated or another architecture"):
        load_clip(tmp_path)
    with pytest.raises(CheckpointError, match="corrupt, truncated or another architecture"):
        load_clip(clip_folder[0] / "open_clip_pytorch_model.bin", arch="RN50")

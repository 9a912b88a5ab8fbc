"""MobileSAM at its real size (random weights) saved as `mobile_sam.pt`: keys, load, encoder, parity.

The reference is segment-anything's `SamPredictor` wrapped around the same MobileSAM modules
(MobileSAM's own predictor is that class, copied); our path is the registry-built backend.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from models.interfaces import ImageInput
from models.mobile_sam.build import build_mobile_sam_architecture
from models.onnx.runtime import OnnxSession
from models.registry import ModelSpec, build_model
from models.sam.backend import OnnxSamImageEncoder, export_encoder, preprocess
from tests.models_parity import assert_parity, parity_prompts

H, W = 120, 90


@pytest.fixture(scope="module")
def mobile(tmp_path_factory):
    torch.manual_seed(1)
    sam = build_mobile_sam_architecture()
    # Random BatchNorm statistics too, so a wrong eval/train mode or a skipped buffer would show.
    for m in sam.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("ckpt") / "mobile_sam.pt"
    torch.save(sam.state_dict(), path)
    return sam, path


@pytest.fixture(scope="module")
def built(mobile, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("XRSEG_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield build_model(ModelSpec("mobile_sam", mobile[1], "cpu"))
    mp.undo()


@pytest.fixture(scope="module")
def encoded(mobile, built):
    sam, _ = mobile
    rgb = np.random.default_rng(3).integers(0, 255, (H, W, 3), dtype=np.uint8)
    ref = SamPredictor(sam)
    ref.set_image(rgb)
    return rgb, ref, built.encoder.encode(ImageInput(rgb))


def test_state_dict_layout_is_the_official_one(mobile):
    """Spot checks of `mobile_sam.pt`'s published layout: names and shapes the file carries."""
    state = mobile[0].state_dict()
    expected = {
        "image_encoder.patch_embed.seq.0.c.weight": (32, 3, 3, 3),
        "image_encoder.layers.0.blocks.0.conv2.c.weight": (256, 1, 3, 3),
        "image_encoder.layers.1.blocks.0.attn.qkv.weight": (384, 128),
        "image_encoder.layers.1.blocks.0.attn.attention_biases": (4, 49),
        "image_encoder.layers.2.blocks.5.attn.attention_biases": (5, 196),
        "image_encoder.layers.2.downsample.conv2.c.weight": (320, 1, 3, 3),
        "image_encoder.layers.3.blocks.1.mlp.fc1.weight": (1280, 320),
        "image_encoder.head.weight": (1000, 320),
        "image_encoder.neck.0.weight": (256, 320, 1, 1),
        "image_encoder.neck.3.bias": (256,),
        "mask_decoder.iou_prediction_head.layers.2.weight": (4, 256),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert not any("attention_bias_idxs" in k for k in state)  # a non-persistent buffer upstream too
    encoder_params = sum(
        v.numel()
        for k, v in state.items()
        if k.startswith("image_encoder.")
        and "running" not in k
        and "num_batches" not in k
        and ".head." not in k
        and "norm_head" not in k
    )
    assert 5.6e6 < encoder_params < 5.9e6  # the paper's "5.78M" TinyViT encoder


def test_encoder_matches_predictor(encoded):
    _, ref, emb = encoded
    assert emb.data.input_size == ref.input_size
    assert np.abs(emb.data.features - ref.features.numpy()).max() <= 1e-4


@pytest.mark.parametrize("index", range(6))
def test_decoder_parity(encoded, built, index):
    _, ref, emb = encoded
    prompt = parity_prompts(H, W)[index]
    ours = built.decoder.predict(emb, prompt)
    masks, scores, low = ref.predict(
        point_coords=prompt.point_coords if len(prompt.point_coords) else None,
        point_labels=prompt.point_labels if len(prompt.point_labels) else None,
        box=prompt.box,
        multimask_output=prompt.multimask,
    )
    assert_parity(ours, masks, scores, low, f"prompt {index}")


def test_onnx_image_encoder_parity(mobile, encoded, tmp_path):
    sam, _ = mobile
    rgb, ref, _ = encoded
    path = export_encoder(sam, "mobile_sam", "0" * 64, tmp_path)
    encoder = OnnxSamImageEncoder("mobile_sam", sam, OnnxSession(path))
    emb = encoder.encode(ImageInput(rgb))
    assert np.abs(emb.data.features - ref.features.numpy()).max() <= 1e-3
    x, size = preprocess(sam, rgb)
    assert size == ref.input_size and x.shape == (1, 3, 1024, 1024)


def test_encode_batch_equals_single_encodes(built, encoded):
    """One forward pass of batch 2 (two image sizes) = two single encodes."""
    from models.interfaces import BatchImageEncoder, encode_images

    rgb, _, single = encoded
    other = np.random.default_rng(4).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    images = [ImageInput(rgb), ImageInput(other)]
    assert isinstance(built.encoder, BatchImageEncoder)
    batch = encode_images(built.encoder, images)
    alone = built.encoder.encode(images[1])
    for emb, ref in zip(batch, [single, alone], strict=True):
        assert emb.original_size == ref.original_size and emb.data.input_size == ref.data.input_size
        assert emb.data.features.shape == (1, 256, 64, 64)
        assert np.abs(emb.data.features - ref.data.features).max() <= 1e-4

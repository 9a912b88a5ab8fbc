"""SAM ViT-B at its real size (random weights) in the official .pth format: load, export, parity.

The reference is segment-anything's own `SamPredictor` on the same weights; our path is the
registry-built backend (torch encoder + ONNX Runtime decoder).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor, sam_model_registry

from models.interfaces import ImageInput, PromptInput
from models.registry import ModelSpec, build_model
from models.sam.backend import SamFeatures
from tests.models_parity import assert_parity, parity_prompts

H, W = 96, 128


@pytest.fixture(scope="module")
def vit_b(tmp_path_factory):
    torch.manual_seed(0)
    sam = sam_model_registry["vit_b"]().eval()
    path = tmp_path_factory.mktemp("ckpt") / "sam_vit_b_01ec64.pth"
    torch.save(sam.state_dict(), path)
    return sam, path


@pytest.fixture(scope="module")
def built(vit_b, tmp_path_factory):
    sam, path = vit_b
    mp = pytest.MonkeyPatch()
    mp.setenv("XRSEG_CACHE", str(tmp_path_factory.mktemp("cache")))
    model = build_model(ModelSpec("sam_vit_b", path, "cpu"))
    yield model
    mp.undo()


@pytest.fixture(scope="module")
def encoded(vit_b, built):
    """Our encoder runs once (ViT-B at 1024 x 1024 is the slow part of this file); the reference
    predictor is given the same embedding, so the decoders are compared on identical inputs.
    Encoder parity at full size is checked for MobileSAM, whose encoder is ours."""
    sam, _ = vit_b
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    emb = built.encoder.encode(ImageInput(rgb))
    ref = SamPredictor(sam)
    ref.reset_image()
    ref.original_size = (H, W)
    ref.input_size = ref.transform.get_preprocess_shape(H, W, sam.image_encoder.img_size)
    ref.features = torch.from_numpy(emb.data.features)
    ref.is_image_set = True
    return ref, emb


def test_embedding_geometry(encoded):
    ref, emb = encoded
    assert emb.backend == "sam_vit_b" and emb.original_size == (H, W)
    data: SamFeatures = emb.data
    assert data.input_size == ref.input_size == (768, 1024)
    assert data.features.shape == (1, 256, 64, 64) and data.features.dtype == np.float32


@pytest.mark.parametrize("index", range(6))
def test_decoder_parity_with_sam_predictor(encoded, built, index):
    ref, emb = encoded
    prompt = parity_prompts(H, W)[index]
    ours = built.decoder.predict(emb, prompt)
    masks, scores, low = ref.predict(
        point_coords=prompt.point_coords if len(prompt.point_coords) else None,
        point_labels=prompt.point_labels if len(prompt.point_labels) else None,
        box=prompt.box,
        multimask_output=prompt.multimask,
    )
    assert_parity(ours, masks, scores, low, f"prompt {index}")
    assert len(ours.granularity) == (3 if prompt.multimask else 0)


def test_mask_prompt_parity(encoded, built):
    """A previous low-res answer fed back as the mask prompt, like SAM's iterative refinement."""
    ref, emb = encoded
    first = built.decoder.predict(emb, PromptInput(np.array([[40.0, 30.0]], np.float32), np.array([1])))
    best = first.low_res_logits[int(np.argmax(first.scores))]
    prompt = PromptInput(
        np.array([[40.0, 30.0], [90.0, 70.0]], np.float32), np.array([1, 0]), mask=best, multimask=False
    )
    ours = built.decoder.predict(emb, prompt)
    masks, scores, low = ref.predict(
        prompt.point_coords, prompt.point_labels, mask_input=best[None], multimask_output=False
    )
    assert_parity(ours, masks, scores, low, "mask prompt")


def test_export_is_cached_by_digest(vit_b, built):
    from models.onnx.export import default_cache_dir
    from models.sam.backend import export_decoder

    files = sorted(default_cache_dir().glob("sam_vit_b-*.onnx"))
    assert len(files) == 3 and all(f.name.endswith("-v1.onnx") for f in files)
    sha = built.decoder.sessions.multi.path.name.split("-")[1]
    stamps = [f.stat().st_mtime_ns for f in files]
    # Asking again for the same checkpoint digest finds the graphs and exports nothing new.
    paths = export_decoder(vit_b[0], "sam_vit_b", sha + "0" * 48)
    assert sorted(paths.values()) == files and [f.stat().st_mtime_ns for f in files] == stamps
    assert built.decoder.sessions.multi.providers == ("CPUExecutionProvider",)


def test_decoder_refuses_foreign_embedding(encoded, built):
    from models.interfaces import ImageEmbedding, ModelError

    _, emb = encoded
    foreign = ImageEmbedding("mobile_sam", emb.original_size, emb.data)
    with pytest.raises(ModelError, match="mobile_sam"):
        built.decoder.predict(foreign, PromptInput(np.array([[1.0, 1.0]], np.float32), np.array([1])))


def test_encode_batch_equals_single_encodes():
    """`SamImageEncoder.encode_batch` on a 2-block ViT (the ViT-B/L/H code path at toy width):
    one forward pass of batch 2 = two single encodes, for images of different sizes."""
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    from models.sam.backend import SamImageEncoder

    torch.manual_seed(2)
    vit = ImageEncoderViT(
        depth=2,
        embed_dim=32,
        num_heads=2,
        global_attn_indexes=(1,),
        window_size=14,
        out_chans=256,
        use_rel_pos=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
    )
    sam = Sam(
        vit,
        PromptEncoder(
            embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024), mask_in_chans=16
        ),
        MaskDecoder(
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256,
        ),
    ).eval()
    encoder = SamImageEncoder("sam_vit_b", sam)
    rng = np.random.default_rng(1)
    images = [ImageInput(rng.integers(0, 255, shape, dtype=np.uint8)) for shape in [(H, W, 3), (80, 60, 3)]]
    batch = encoder.encode_batch(images)
    for image, emb in zip(images, batch, strict=True):
        ref = encoder.encode(image)
        assert emb.original_size == image.size and emb.data.input_size == ref.data.input_size
        assert np.abs(emb.data.features - ref.data.features).max() <= 1e-4

"""SAM 2.1 Hiera-tiny (official config, random weights) and EdgeTAM, saved in the transformers
format: load, export, parity with transformers' own model + processor, and checkpoint errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import (
    EdgeTamConfig,
    EdgeTamModel,
    Sam2Config,
    Sam2ImageProcessor,
    Sam2Model,
    Sam2Processor,
    Sam2VideoConfig,
    Sam2VideoModel,
    TimmWrapperConfig,
)

from models.interfaces import CheckpointError, ImageInput
from models.registry import ModelSpec, build_model
from tests.models_parity import assert_parity, parity_prompts

H, W = 90, 120


def _save(net, folder):
    net.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("XRSEG_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def sam2_tiny(tmp_path_factory):
    torch.manual_seed(0)
    net = Sam2Model(Sam2Config()).eval()  # transformers' default config is sam2.1_hiera_tiny's
    return net, _save(net, tmp_path_factory.mktemp("ckpt") / "sam2.1-hiera-tiny")


@pytest.fixture(scope="module")
def edgetam(tmp_path_factory):
    torch.manual_seed(1)
    # EdgeTAM's published config: a RepViT-M1 trunk through timm. (transformers 5.24's default
    # EdgeTamConfig misspells the trunk's "architecture" key and silently falls back to resnet50.)
    trunk = TimmWrapperConfig(
        architecture="repvit_m1",
        model_args={"in_chans": 3, "features_only": True, "out_indices": [0, 1, 2, 3]},
    )
    net = EdgeTamModel(EdgeTamConfig(vision_config={"backbone_config": trunk.to_dict()})).eval()
    return net, _save(net, tmp_path_factory.mktemp("ckpt") / "EdgeTAM")


def _reference(net, rgb, prompt, features):
    """transformers' path: processor for the prompt, model on the cached embeddings, post-process."""
    proc = Sam2Processor(image_processor=Sam2ImageProcessor())
    kwargs = {}
    if len(prompt.point_coords):
        kwargs["input_points"] = [[prompt.point_coords.tolist()]]
        kwargs["input_labels"] = [[prompt.point_labels.tolist()]]
    if prompt.box is not None:
        kwargs["input_boxes"] = [[prompt.box.tolist()]]
    inputs = proc(images=rgb, return_tensors="pt", **kwargs)
    with torch.no_grad():
        out = net(
            image_embeddings=features,
            input_points=inputs.get("input_points"),
            input_labels=inputs.get("input_labels"),
            input_boxes=inputs.get("input_boxes"),
            multimask_output=prompt.multimask,
        )
    masks = proc.post_process_masks(out.pred_masks, inputs["original_sizes"])[0][0].numpy()
    return masks, out.iou_scores[0, 0].numpy(), out.pred_masks[0, 0].numpy()


def _check_backend(name, net, folder, check_encoder: bool):
    model = build_model(ModelSpec(name, folder, "cpu"))
    assert model.tracker is None  # an image-only folder has no video memory
    rgb = np.random.default_rng(5).integers(0, 255, (H, W, 3), dtype=np.uint8)
    emb = model.encoder.encode(ImageInput(rgb))
    ours = [emb.data.feat_s0, emb.data.feat_s1, emb.data.image_embed]
    if check_encoder:
        pixels = Sam2ImageProcessor()(images=rgb, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            features = net.get_image_embeddings(pixels)
        assert max(float(np.abs(a - b.numpy()).max()) for a, b in zip(ours, features, strict=True)) <= 1e-4
    else:  # same vision tower call; saves a second encoder run on this 2-core machine
        features = [torch.from_numpy(a) for a in ours]
    for i, prompt in enumerate(parity_prompts(H, W)):
        pred = model.decoder.predict(emb, prompt)
        assert_parity(pred, *_reference(net, rgb, prompt, features), f"{name} prompt {i}")
    # A previous answer fed back as a mask prompt.
    first = model.decoder.predict(emb, parity_prompts(H, W)[0])
    refine = parity_prompts(H, W)[2]
    refine = type(refine)(
        refine.point_coords, refine.point_labels, mask=first.low_res_logits[0], multimask=False
    )
    pred = model.decoder.predict(emb, refine)
    proc = Sam2Processor(image_processor=Sam2ImageProcessor())
    inputs = proc(
        images=rgb,
        input_points=[[refine.point_coords.tolist()]],
        input_labels=[[refine.point_labels.tolist()]],
        return_tensors="pt",
    )
    with torch.no_grad():
        out = net(
            image_embeddings=features,
            input_points=inputs["input_points"],
            input_labels=inputs["input_labels"],
            input_masks=torch.from_numpy(first.low_res_logits[0])[None, None],
            multimask_output=False,
        )
    masks = proc.post_process_masks(out.pred_masks, inputs["original_sizes"])[0][0].numpy()
    assert_parity(
        pred, masks, out.iou_scores[0, 0].numpy(), out.pred_masks[0, 0].numpy(), f"{name} mask prompt"
    )


def test_sam2_tiny_parity(cache, sam2_tiny):
    _check_backend("sam2.1_hiera_tiny", *sam2_tiny, check_encoder=True)


def test_edgetam_parity(cache, edgetam):
    _check_backend("edgetam", *edgetam, check_encoder=False)


def test_original_pt_file_is_refused_with_the_folder_to_get(tmp_path):
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": {"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(1)}}, path)
    with pytest.raises(
        CheckpointError, match=r"single file.*transformers-format folder.*facebook/sam2\.1-hiera-tiny"
    ):
        build_model(ModelSpec("sam2.1_hiera_tiny", path))


def test_other_size_is_named(sam2_tiny, tmp_path):
    folder = shutil.copytree(sam2_tiny[1], tmp_path / "small")
    config = json.loads((folder / "config.json").read_text())
    config["vision_config"]["backbone_config"]["blocks_per_stage"] = [1, 2, 11, 2]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="which is sam2.1_hiera_small, not 'sam2.1_hiera_tiny'"):
        build_model(ModelSpec("sam2.1_hiera_tiny", folder))


def test_edgetam_folder_given_as_sam2(edgetam):
    with pytest.raises(CheckpointError, match="'edgetam' model, not 'sam2.1_hiera_large'"):
        build_model(ModelSpec("sam2.1_hiera_large", edgetam[1]))


def test_truncated_safetensors(sam2_tiny, tmp_path):
    folder = shutil.copytree(sam2_tiny[1], tmp_path / "cut")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        build_model(ModelSpec("sam2.1_hiera_tiny", folder))


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match=r"not found.*huggingface\.co/facebook/sam2\.1-hiera-small"):
        build_model(ModelSpec("sam2.1_hiera_small", tmp_path / "nope"))


@pytest.fixture(scope="module")
def sam2_video_tiny(tmp_path_factory):
    """The layout Meta publishes (facebook/sam2.1-hiera-tiny): model_type sam2_video, image + memory."""
    torch.manual_seed(2)
    net = Sam2VideoModel(Sam2VideoConfig()).eval()
    return net, _save(net, tmp_path_factory.mktemp("ckpt") / "sam2.1-hiera-tiny-video")


def test_published_video_folder_serves_images_and_tracking(cache, sam2_video_tiny):
    """One checkpoint serves prompts (image path = transformers' image model on the same folder,
    which skips the memory weights) and tracking (`SegmentationModel.tracker`, same loaded model)."""
    from models.sam2.video import Sam2VideoTracker

    net, folder = sam2_video_tiny
    model = build_model(ModelSpec("sam2.1_hiera_tiny", folder, "cpu"))
    assert isinstance(model.tracker, Sam2VideoTracker) and model.tracker.model is model.encoder.model
    rgb = np.random.default_rng(6).integers(0, 255, (H, W, 3), dtype=np.uint8)
    frame = ImageInput(rgb)
    emb = model.encoder.encode(frame)
    features = [torch.from_numpy(a) for a in (emb.data.feat_s0, emb.data.feat_s1, emb.data.image_embed)]
    image_net = Sam2Model.from_pretrained(str(folder)).eval()
    prompt = parity_prompts(H, W)[5]  # point + box, multimask
    assert_parity(
        model.decoder.predict(emb, prompt), *_reference(image_net, rgb, prompt, features), "video folder"
    )
    state = model.tracker.start()
    assert model.tracker.add_object(state, frame, 1, parity_prompts(H, W)[1]).masks.shape == (1, H, W)
    assert sorted(model.tracker.track(state, ImageInput(rgb[::-1].copy()))) == [1]

"""SAM 2.1 video memory behind `VideoTracker`: parity with transformers' own streaming video
predictor on a tiny random-weights SAM 2 (real architecture, small widths, 256 x 256 input), objects
added mid-stream and removed, and bounded memory on a long stream. Loading a published video folder
through the registry is tested in test_models_sam2.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import Sam2VideoConfig, Sam2VideoModel

from engine.masks.metrics import mask_iou
from models.interfaces import ImageInput, ModelError, PromptInput, VideoTracker
from models.sam2.video import Sam2VideoTracker, video_processor

S = 256  # model input side
H, W = 60, 80
MAX_LOGIT_DIFF = 1e-3


def tiny_video_config() -> Sam2VideoConfig:
    """SAM 2's architecture at toy widths. Constraints of transformers' code: the memory is 64
    channels wide (hard-coded in its memory attention) and narrower than the hidden size."""
    hiera = {
        "model_type": "sam2_hiera_det_model",
        "hidden_size": 16,
        "blocks_per_stage": [1, 2, 2, 1],
        "embed_dim_per_stage": [16, 32, 64, 128],
        "num_attention_heads_per_stage": [1, 1, 2, 2],
        "window_size_per_stage": [4, 2, 4, 2],
        "global_attention_blocks": [4],
        "image_size": [S, S],
        "window_positional_embedding_background_size": [4, 4],
    }
    vision = {
        "backbone_config": hiera,
        "backbone_channel_list": [128, 64, 32, 16],
        "backbone_feature_sizes": [[S // 4, S // 4], [S // 8, S // 8], [S // 16, S // 16]],
        "fpn_hidden_size": 128,
    }
    return Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config={
            "hidden_size": 128,
            "image_size": S,
            "patch_size": 16,
            "mask_input_channels": 4,
        },
        mask_decoder_config={
            "hidden_size": 128,
            "mlp_dim": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 32,
        },
        image_size=S,
        memory_attention_hidden_size=128,
        memory_attention_num_layers=2,
        memory_attention_feed_forward_hidden_size=64,
        memory_attention_rope_feat_sizes=[S // 16, S // 16],
        memory_encoder_hidden_size=128,
        memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128,
        memory_fuser_intermediate_dim=64,
        # Short memory windows (SAM 2.1: 7 and 16), so a 9-frame stream already evicts from both.
        num_maskmem=3,
        max_object_pointers_in_encoder=4,
    )


def tiny_video_net(seed: int) -> Sam2VideoModel:
    """A tiny SAM 2 video model with random weights and non-zero learned constants (no-memory,
    no-object, temporal encodings are zeros at init), so a step that skips one of them shows."""
    torch.manual_seed(seed)
    net = Sam2VideoModel(tiny_video_config()).eval()
    with torch.no_grad():
        for p in (
            net.no_memory_embedding,
            net.no_object_pointer,
            net.memory_temporal_positional_encoding,
            net.occlusion_spatial_embedding_parameter,
            net.no_memory_positional_encoding,
        ):
            p.normal_(0, 0.2)
    return net


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return tiny_video_net(3), None


@pytest.fixture(scope="module")
def frames():
    """A textured block moving right over a noisy background."""
    rng = np.random.default_rng(0)
    out = []
    for t in range(9):
        rgb = rng.integers(0, 60, (H, W, 3), dtype=np.uint8)
        rgb[15:45, 8 + 4 * t : 38 + 4 * t] = rng.integers(150, 255, (30, 30, 3), dtype=np.uint8)
        out.append(ImageInput(rgb))
    return out


def _point(x: float, y: float) -> PromptInput:
    return PromptInput(np.array([[x, y]], np.float32), np.array([1], np.int32))


def _reference(net, proc, frames, start: int, prompt: PromptInput):
    """transformers' streaming loop for one object added on frame `start`: low-res logits per frame."""
    session = proc.init_video_session(inference_device="cpu", dtype=torch.float32)
    logits = []
    for i, frame in enumerate(frames[start:]):
        inputs = proc(images=frame.rgb, return_tensors="pt")
        if i == 0:
            proc.add_inputs_to_inference_session(
                session,
                frame_idx=0,
                obj_ids=7,
                input_points=[[prompt.point_coords.tolist()]],
                input_labels=[[prompt.point_labels.tolist()]],
                original_size=inputs.original_sizes[0],
            )
        with torch.inference_mode():
            out = net(inference_session=session, frame=inputs.pixel_values[0])
        masks = proc.post_process_masks([out.pred_masks], original_sizes=inputs.original_sizes)[0]
        logits.append((out.pred_masks[0].numpy(), masks[0].numpy()))
    return logits


def test_tracker_matches_transformers_video_predictor(tiny, frames):
    """Object 1 from frame 0, object 2 added on frame 2 (after the others were tracked on it):
    each matches transformers' streaming predictor run for that object alone, past the point where
    our bounded bank has evicted memories and pointers that transformers still holds."""
    net, folder = tiny
    proc = video_processor(None, S)
    tracker = Sam2VideoTracker("sam2-tiny", net, proc)
    assert isinstance(tracker, VideoTracker)
    prompts = {1: _point(25.0, 30.0), 2: _point(70.0, 10.0)}
    state = tracker.start()
    ours: dict[int, list] = {1: [tracker.add_object(state, frames[0], 1, prompts[1])], 2: []}
    for t in range(1, len(frames)):
        tracked = tracker.track(state, frames[t])
        for object_id, pred in tracked.items():
            ours[object_id].append(pred)
        if t == 2:
            ours[2].append(tracker.add_object(state, frames[t], 2, prompts[2]))
    for object_id, start in ((1, 0), (2, 2)):
        ref = _reference(net, proc, frames, start, prompts[object_id])
        assert len(ours[object_id]) == len(ref) == len(frames) - start
        for t, (pred, (low, masks)) in enumerate(zip(ours[object_id], ref, strict=True)):
            assert pred.masks.shape == (1, H, W) and pred.masks.dtype == bool
            diff = float(np.abs(pred.low_res_logits - low).max())
            assert diff <= MAX_LOGIT_DIFF, f"object {object_id} frame {start + t}: logit diff {diff}"
            assert mask_iou(pred.masks[0], masks[0]) >= 0.99, f"object {object_id} frame {start + t}"
            assert 0.0 <= float(pred.scores[0]) <= 1.0


def test_memory_is_bounded_on_a_long_stream(tiny, frames):
    net, _ = tiny
    tracker = Sam2VideoTracker("sam2-tiny", net, video_processor(None, S))
    state = tracker.start(max_memory_frames=4)  # 2 recent (this model's window) + 2 prompted
    tracker.add_object(state, frames[0], 1, _point(25.0, 30.0))
    for t in range(1, 20):
        frame = ImageInput(frames[t % len(frames)].rgb.copy())
        if t in (5, 10, 15):  # prompted before tracking: conditioning frames; the 2 newest are kept
            tracker.add_object(state, frame, 1, _point(30.0, 30.0))
        tracker.track(state, frame)
    spatial, entries = tracker.memory_size(state)[1]
    assert spatial == 4 and entries == 2 + 3  # 2 prompted + the last 3 frames' object pointers
    assert len(state.session.processed_frames) == 1
    assert not any(
        "high_res_masks" in out
        for per in state.session.output_dict_per_obj.values()
        for outs in per.values()
        for out in outs.values()
    )
    cond = state.session.output_dict_per_obj[state.session.obj_id_to_idx(1)]["cond_frame_outputs"]
    assert sorted(cond) == [10, 15]


def test_remove_object_and_bad_prompts(tiny, frames):
    net, _ = tiny
    tracker = Sam2VideoTracker("sam2-tiny", net, video_processor(None, S))
    state = tracker.start()
    assert tracker.track(state, frames[0]) == {}
    tracker.add_object(state, frames[0], 1, _point(25.0, 30.0))
    tracker.add_object(state, frames[0], 2, PromptInput(box=np.array([40, 5, 75, 30], np.float32)))
    mask = np.zeros((H, W), bool)
    mask[20:40, 20:40] = True
    tracker.add_object(state, frames[0], 3, PromptInput(mask=mask))
    tracker.remove_object(state, 2)
    tracker.remove_object(state, 99)
    assert sorted(tracker.track(state, frames[1])) == [1, 3]
    with pytest.raises(ModelError, match="needs points, a box or a mask"):
        tracker.add_object(state, frames[1], 4, PromptInput())
    with pytest.raises(ModelError, match="mask prompt"):
        tracker.add_object(state, frames[1], 4, PromptInput(mask=np.zeros((5, 5), bool)))
    with pytest.raises(ModelError, match="max_memory_frames"):
        tracker.start(0)


def test_encode_batch_equals_single_encodes(tiny):
    """`Sam2ImageEncoder.encode_batch` (the served model is this video model for published folders):
    one vision-tower pass of batch 2, two image sizes = two single encodes."""
    from transformers import Sam2ImageProcessor

    from models.sam2.backend import Sam2ImageEncoder

    encoder = Sam2ImageEncoder("sam2-tiny", tiny[0], Sam2ImageProcessor(size={"height": S, "width": S}))
    rng = np.random.default_rng(9)
    images = [ImageInput(rng.integers(0, 255, shape, dtype=np.uint8)) for shape in [(H, W, 3), (40, 70, 3)]]
    batch = encoder.encode_batch(images)
    for image, emb in zip(images, batch, strict=True):
        ref = encoder.encode(image)
        assert emb.original_size == image.size
        for name in ("image_embed", "feat_s0", "feat_s1"):
            a, b = getattr(emb.data, name), getattr(ref.data, name)
            assert a.shape == b.shape and a.shape[0] == 1 and np.abs(a - b).max() <= 1e-4, name

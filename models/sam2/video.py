"""SAM 2.1 / EdgeTAM video memory behind `VideoTracker`: streaming, bounded, objects added at any frame.

Why this shape: transformers' `Sam2VideoModel` (and `EdgeTamVideoModel`) implement SAM 2's memory
(memory encoder, memory attention over spatial memories and object pointers) faithfully, but its
inference session keeps every frame's pixels and every frame's memory forever, and one model call
re-runs every object on the frame. We keep its per-object step (`_run_single_frame_inference`,
`_batch_encode_memories`: the exact SAM 2 maths, checked against its own streaming loop in
tests/test_models_sam2_video.py) and own the bookkeeping around it:

- streaming: one frame at a time; only the current frame's pixels and features are held;
- bounded memory per object: the kept conditioning (prompted) frames, the model's window of
  `num_maskmem - 1` most recent tracked frames (6 for SAM 2.1; its temporal encodings are trained
  for exactly that many), and the object pointers of the last `max_object_pointers_in_encoder - 1`
  frames (15); everything older is dropped after each step, as are the 1024 x 1024 mask logits a
  step leaves behind for the memory encoder;
- objects are added, corrected and removed at any frame, and adding one never re-runs the others.

What differs from transformers' video predictor (see the parity test):
- its `forward` encodes the memories of all objects of a frame with one `is_mask_from_pts` flag
  (true if any object was prompted on that frame), so a tracked object's memory is binarised when
  another object is added on the same frame; we decide per object, as SAM 2's `track_step` does;
- when more frames were prompted than we keep (`max_memory_frames`), the oldest are forgotten,
  where transformers keeps (and attends to) all of them.

The session owns a `Sam2TrackState` per stream; the tracker itself holds only read-only things.
The registry builds one for a published video folder (`models/sam2/backend.py`: `SegmentationModel.tracker`),
sharing the loaded model with the image encoder and decoder export.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.interfaces import ImageInput, MaskPrediction, ModelError, PromptInput

log = logging.getLogger(__name__)

_BIG_KEYS = ("maskmem_features", "maskmem_pos_enc", "pred_masks", "high_res_masks")


@dataclass(eq=False)
class Sam2TrackState:
    """One stream's tracking state (mutable, owned by one session; not thread-safe).

    Attributes:
        session: transformers' inference session, used as the memory bank and pruned every step.
        max_cond_frames: prompted frames kept per object (the most recent ones).
        frame_idx: index of the current frame (-1 before the first).
        frame: the current frame's `ImageInput` (identity decides "same frame" for `add_object`).
        objects: live object ids, in the order they were added.
    """

    session: Any
    max_cond_frames: int
    frame_idx: int = -1
    frame: ImageInput | None = None
    objects: list[int] = field(default_factory=list)


class Sam2VideoTracker:
    """`VideoTracker` over a transformers `Sam2VideoModel` / `EdgeTamVideoModel` (eval mode).

    Masks are (1, H, W) bool at the frame's resolution; `scores` is the model's probability that
    the object is visible in the frame (sigmoid of its object-score logit; an absent object also
    gets an empty mask); `low_res_logits` are the (1, s, s) logits SAM 2 keeps for the object.
    """

    def __init__(self, name: str, model: torch.nn.Module, processor) -> None:
        self.name = name
        self.model = model
        self.processor = processor
        config = model.config
        self.window = int(config.num_maskmem) - 1
        self.pointer_window = int(config.max_object_pointers_in_encoder) - 1

    def start(self, max_memory_frames: int = 7) -> Sam2TrackState:
        """A new stream. `max_memory_frames` bounds the spatial memories attended per object:
        the `num_maskmem - 1` most recent tracked frames are always kept (a property of the trained
        model), the rest of the budget (at least 1) goes to prompted frames."""
        if max_memory_frames < 1:
            raise ModelError(f"max_memory_frames must be >= 1, got {max_memory_frames}")
        device = self.model.device
        session = self.processor.init_video_session(inference_device=device, dtype=torch.float32)
        return Sam2TrackState(session, max(1, max_memory_frames - self.window))

    @torch.inference_mode()
    def add_object(
        self, state: Sam2TrackState, frame: ImageInput, object_id: int, prompt: PromptInput
    ) -> MaskPrediction:
        """Prompt object `object_id` on `frame` (a new one, or the frame of the last `track` call:
        then the other objects are already tracked on it). A known id is corrected on this frame."""
        idx = self._enter(state, frame)
        session = state.session
        h, w = frame.size
        if prompt.mask is not None:
            if prompt.mask.shape != (h, w):
                raise ModelError(f"mask prompt is {prompt.mask.shape}, the frame is {(h, w)}")
            self.processor.add_inputs_to_inference_session(
                session, frame_idx=idx, obj_ids=object_id, input_masks=prompt.mask.astype(bool)
            )
        else:
            points, labels = _points(prompt)
            box = None if prompt.box is None else [[np.asarray(prompt.box, np.float64).reshape(4).tolist()]]
            if not len(points) and box is None:
                raise ModelError("a tracker prompt needs points, a box or a mask")
            self.processor.add_inputs_to_inference_session(
                session,
                frame_idx=idx,
                obj_ids=object_id,
                input_points=[[points]] if len(points) else None,
                input_labels=[[labels]] if len(points) else None,
                input_boxes=box,
                original_size=(h, w),
            )
        session.obj_with_new_inputs = []
        if object_id not in state.objects:
            state.objects.append(object_id)
        obj = session.obj_id_to_idx(object_id)
        out = self._run(state, [obj], prompted=True)[obj]
        self._prune(state)
        return self._prediction(out, (h, w))

    def remove_object(self, state: Sam2TrackState, object_id: int) -> None:
        """Forget an object and its memory; unknown ids are ignored."""
        if object_id not in state.objects:
            return
        state.objects.remove(object_id)
        session = state.session
        obj = session.obj_id_to_idx(object_id)
        session.output_dict_per_obj[obj] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
        session.point_inputs_per_obj[obj] = {}
        session.mask_inputs_per_obj[obj] = {}
        session.frames_tracked_per_obj[obj] = {}

    @torch.inference_mode()
    def track(self, state: Sam2TrackState, frame: ImageInput) -> dict[int, MaskPrediction]:
        """Propagate every live object to `frame` (the next frame of the stream). {object id: mask}."""
        if not state.objects:
            return {}
        idx = self._enter(state, frame)
        session = state.session
        objs = [session.obj_id_to_idx(o) for o in state.objects]
        todo = [o for o in objs if not _output(session, o, idx)]
        outs = self._run(state, todo, prompted=False)
        preds = {}
        for object_id, obj in zip(state.objects, objs, strict=True):
            out = outs.get(obj) or _output(session, obj, idx)
            preds[object_id] = self._prediction(out, frame.size)
        self._prune(state)
        return preds

    def memory_size(self, state: Sam2TrackState) -> dict[int, tuple[int, int]]:
        """{object id: (spatial memories held, object pointers held)}: what the bound limits."""
        sizes = {}
        for object_id in state.objects:
            per = state.session.output_dict_per_obj[state.session.obj_id_to_idx(object_id)]
            entries = [*per["cond_frame_outputs"].values(), *per["non_cond_frame_outputs"].values()]
            sizes[object_id] = (sum("maskmem_features" in e for e in entries), len(entries))
        return sizes

    def _enter(self, state: Sam2TrackState, frame: ImageInput) -> int:
        """The frame index of `frame`: the current one if it is the same object, else the next."""
        if frame is state.frame:
            return state.frame_idx
        rgb = frame.rgb
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ModelError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
        pixels = self.processor(images=rgb, return_tensors="pt")["pixel_values"][0]
        state.frame_idx += 1
        state.frame = frame
        session = state.session
        session.processed_frames = None  # only the current frame's pixels are ever needed
        session.add_new_frame(pixels, state.frame_idx)
        session.video_height, session.video_width = frame.size
        return state.frame_idx

    def _run(self, state: Sam2TrackState, objs: list[int], prompted: bool) -> dict[int, dict]:
        """SAM 2's step for each object in `objs` on the current frame, then their memories."""
        if not objs:
            return {}
        session, idx, model = state.session, state.frame_idx, self.model
        outs, masks, scores, from_pts = {}, [], [], []
        for obj in objs:
            points = session.point_inputs_per_obj[obj].get(idx) if prompted else None
            mask = session.mask_inputs_per_obj[obj].get(idx) if prompted else None
            is_init = prompted and idx not in session.frames_tracked_per_obj[obj]
            out = model._run_single_frame_inference(
                inference_session=session,
                frame_idx=idx,
                obj_idx=obj,
                batch_size=1,
                is_init_cond_frame=is_init,
                point_inputs=points,
                mask_inputs=mask,
                reverse=False,
                streaming=True,
            )
            session.store_output(obj, idx, output_value=out, is_conditioning_frame=is_init)
            if not is_init:
                session.frames_tracked_per_obj[obj][idx] = {"reverse": False}
            outs[obj] = out
            masks.append(out["high_res_masks"])
            scores.append(out["object_score_logits"])
            from_pts.append(points is not None or mask is not None)
        # One memory-encoder batch per flag value, so the flag is per object (see module docstring).
        for flag in (False, True):
            group = [i for i, f in enumerate(from_pts) if f == flag]
            if group:
                model._batch_encode_memories(
                    inference_session=session,
                    frame_idx=idx,
                    objects_needing_memory_encoding=[objs[i] for i in group],
                    high_res_masks_for_memory=[masks[i] for i in group],
                    object_score_logits_for_memory=[scores[i] for i in group],
                    is_mask_from_pts_per_obj=[flag] * len(group),
                )
        return outs

    def _prune(self, state: Sam2TrackState) -> None:
        """Drop what the next steps cannot read, keeping the bound (see module docstring)."""
        session, idx = state.session, state.frame_idx
        for object_id in state.objects:
            obj = session.obj_id_to_idx(object_id)
            per = session.output_dict_per_obj[obj]
            cond, recent = per["cond_frame_outputs"], per["non_cond_frame_outputs"]
            for old in sorted(cond)[: -state.max_cond_frames]:
                del cond[old]
                session.point_inputs_per_obj[obj].pop(old, None)
                session.mask_inputs_per_obj[obj].pop(old, None)
            for f in list(recent):  # the next step reads offsets 1..window (1..pointer_window)
                if f <= idx - self.pointer_window:
                    del recent[f]
                elif f <= idx - self.window:
                    for key in _BIG_KEYS:
                        recent[f].pop(key, None)
            for out in (*cond.values(), *recent.values()):
                out.pop("high_res_masks", None)  # read once, by the memory encoder of its own step
            for inputs in (session.point_inputs_per_obj[obj], session.mask_inputs_per_obj[obj]):
                for f in [f for f in inputs if f not in cond and f != idx]:
                    del inputs[f]
            tracked = session.frames_tracked_per_obj[obj]
            for f in [f for f in tracked if f != idx]:
                del tracked[f]

    def _prediction(self, out: dict, size: tuple[int, int]) -> MaskPrediction:
        low = out["pred_masks"]  # (1, 1, s, s) logits, -1024 where the object is absent
        masks = self.processor.post_process_masks([low], original_sizes=[list(size)], binarize=True)[0]
        score = torch.sigmoid(out["object_score_logits"].float()).reshape(1)
        return MaskPrediction(
            masks=masks[0].numpy().astype(bool),
            scores=score.numpy().astype(np.float32),
            low_res_logits=low[0].float().numpy(),
        )


def _output(session, obj: int, idx: int) -> dict | None:
    per = session.output_dict_per_obj[obj]
    return per["cond_frame_outputs"].get(idx) or per["non_cond_frame_outputs"].get(idx)


def _points(prompt: PromptInput) -> tuple[list[list[float]], list[int]]:
    coords = np.asarray(prompt.point_coords, np.float64).reshape(-1, 2)
    labels = np.asarray(prompt.point_labels, np.int64).reshape(-1)
    if len(coords) != len(labels):
        raise ModelError(f"{len(coords)} points but {len(labels)} labels")
    return coords.tolist(), labels.tolist()


def video_processor(checkpoint: Path | None, image_size: int):
    """The folder's `Sam2VideoProcessor`, or transformers' defaults at the model's input size."""
    from transformers import Sam2ImageProcessor, Sam2VideoProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

    if checkpoint is not None and (Path(checkpoint) / "processor_config.json").is_file():
        return Sam2VideoProcessor.from_pretrained(str(checkpoint))
    size = {"height": image_size, "width": image_size}
    return Sam2VideoProcessor(
        image_processor=Sam2ImageProcessor(size=size),
        video_processor=Sam2VideoVideoProcessor(size=size),
        target_size=image_size,
    )

"""Mask cleaning on real frames: the model's own masks before and after, against hand-checked masks.

Why: bench.mask_cleaning's synthetic section degrades true masks with errors of its own making, so
cleaning is scored on the errors it was written for. Here the errors are the model's: on the real
RGB-D frames with hand-checked instance masks (bench/data/real_gt: 44 objects on 5 tabletop
frames, 4 on 2 Kinect v1 frames), one click at each object's most interior pixel, the geometric
model's selected mask (best score, as `Pipeline.answer` selects) is scored raw and after each
cleaning step, with the frame's real depth. Only the geometric model: the SAM-family checkpoints
here have random weights, so their masks say nothing about cleaning.

Per object, the change (after - before) of IoU and boundary F (2 px, and DAVIS's 7 px); summaries
give means with 95 % bootstrap intervals of the mean change (numpy, 10 000 resamples), medians,
and how many objects improved / worsened by more than 0.01. The hand masks are themselves
uncertain by a pixel or two at borders (bench/data/real_gt/README.md): boundary F at 2 px is
near that noise, the 7 px figure is the robust one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from bench.real_accuracy import interior_click
from bench.real_gt import load_ground_truth
from engine.masks import boundary_f_score, mask_iou
from models.interfaces import ImageInput, PromptInput

CHANGE_EPS = 0.01


def _scores(mask: np.ndarray, truth: np.ndarray, tolerance_px: float, davis_tol: float) -> dict[str, float]:
    return {
        "boundary_f": boundary_f_score(mask, truth, tolerance_px).f,
        "boundary_f_davis": boundary_f_score(mask, truth, davis_tol).f,
        "iou": mask_iou(mask, truth),
    }


def _mean_ci(values: np.ndarray, resamples: int = 10_000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), (resamples, len(values)))
    lo, hi = np.percentile(values[idx].mean(axis=1), [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


def run_real(
    steps: dict[str, Callable[[np.ndarray, np.ndarray | None, tuple[float, float]], np.ndarray]],
    tolerance_px: float,
    davis_tol: float,
) -> dict:
    """Score the geometric model's masks on every annotated real object, raw and after each step."""
    from models.registry import ModelSpec, build_model

    model = build_model(ModelSpec("geometric"))
    rows: list[dict] = []
    encode_s = []
    for af in load_ground_truth():
        frame = af.frame
        t0 = time.perf_counter()
        embedding = model.encoder.encode(ImageInput(frame.rgb, frame.depth_m, frame.intrinsics.matrix))
        encode_s.append(time.perf_counter() - t0)
        for obj in af.objects:
            x, y = interior_click(obj.mask)
            prompt = PromptInput(np.array([[x, y]], np.float32), np.ones(1, np.int32), None, None, True)
            prediction = model.decoder.predict(embedding, prompt)
            raw = prediction.masks[int(np.argmax(prediction.scores))]
            row = {
                "sequence": af.sequence,
                "frame": af.name,
                "object": obj.name,
                "area_px": int(obj.mask.sum()),
            }
            for name, step in steps.items():
                row[name] = _scores(
                    step(raw, frame.depth_m, (float(x), float(y))), obj.mask, tolerance_px, davis_tol
                )
            rows.append(row)
    summary: dict = {}
    for name in steps:
        per_metric = {}
        for metric in ("iou", "boundary_f", "boundary_f_davis"):
            before = np.array([r["none"][metric] for r in rows])
            after = np.array([r[name][metric] for r in rows])
            delta = after - before
            per_metric[metric] = {
                "mean": round(float(after.mean()), 4),
                "median": round(float(np.median(after)), 4),
                "mean_change": round(float(delta.mean()), 4),
                "mean_change_ci95": _mean_ci(delta),
                "median_change": round(float(np.median(delta)), 4),
                "improved": int((delta > CHANGE_EPS).sum()),
                "worsened": int((delta < -CHANGE_EPS).sum()),
            }
        summary[name] = per_metric
    return {
        "what": "geometric model's selected mask for one interior click per hand-annotated object, "
        "raw ('none') and after each cleaning step, real depth",
        "objects": len(rows),
        "frames": len(encode_s),
        "tolerance_px": {"boundary_f": tolerance_px, "boundary_f_davis": davis_tol},
        "change_threshold": CHANGE_EPS,
        "summary": summary,
        "per_object": rows,
    }

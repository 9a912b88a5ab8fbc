"""`python -m bench.mask_cleaning`: does mask cleaning make masks closer to the truth, and how fast?

On ray-cast synthetic scenes (exact per-pixel object ids, Kinect-like depth noise, holes and
flying pixels), every visible object's true mask is degraded the way SAM-family decoders err:

- boundary: the border moved by a random offset (-3..+3 px, dilation or erosion), perturbed by a
  smooth random field (blobby, soft edges) and rounded by a 4x down/up-sampling (SAM decodes at
  256x256 and upsamples);
- islands: 2-6 stray blobs of 10-150 px within 3-40 px of the object;
- holes: 1-4 holes of 10-100 px inside the object.

Then the boundary F-score (DAVIS, 2 px tolerance), the DAVIS F at its own tolerance
(ceil(0.008 * diagonal) = 7 px at 640x480) and IoU are compared before and after each cleaning
step (islands, holes, depth snapping, all of `clean_mask`), on masks with all errors and on
masks with only the error a step targets. A control row cleans the true masks (what cleaning
costs when there is nothing to fix). When the geometric RGB-D model is importable, its raw
masks for a click in each object are measured before and after cleaning as well.

Real frames (bench/real_cleaning.py, `real_frames` in the JSON; `--no-real` skips it): the
geometric model's own masks on the hand-annotated real RGB-D frames (bench/data/real_gt), before
and after each step, against the hand-checked masks: cleaning scored on the errors a model makes
on real depth, not on errors this bench injects.

Writes bench/results/mask_cleaning.json and mask_cleaning.png.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from bench.common import RESULTS, machine, percentiles, write_json
from clients.sources.synthetic import DepthDegradation, SyntheticFrame, make_scene, render_frame
from engine.masks import (
    MaskCleanConfig,
    boundary_f_score,
    clean_mask,
    fill_holes,
    mask_iou,
    remove_islands,
    snap_to_depth,
)

MIN_OBJECT_PX = 1000
TOLERANCE_PX = 2.0


@dataclass(frozen=True)
class SamLikeErrors:
    """How a true mask is degraded (ranges are drawn uniformly per object)."""

    boundary_offset_px: tuple[float, float] = (-3.0, 3.0)
    boundary_noise_px: float = 1.5
    boundary_noise_scale_px: float = 8.0
    lowres_factor: int = 4
    islands: tuple[int, int] = (2, 6)
    island_area_px: tuple[float, float] = (10.0, 150.0)
    island_distance_px: tuple[float, float] = (3.0, 40.0)
    holes: tuple[int, int] = (1, 4)
    hole_area_px: tuple[float, float] = (10.0, 100.0)


def degrade_mask(
    truth: np.ndarray,
    rng: np.random.Generator,
    kinds: frozenset[str],
    errors: SamLikeErrors = SamLikeErrors(),
) -> np.ndarray:
    """(H, W) bool truth -> (H, W) bool mask with SAM-like errors of the given kinds
    ("boundary", "holes", "islands")."""
    mask = truth.copy()
    if "boundary" in kinds:
        mask = _boundary_error(truth, rng, errors)
    if "holes" in kinds:
        mask &= ~_blobs(cv2.erode(truth.view(np.uint8), _disk(4)) > 0, rng, errors.holes, errors.hole_area_px)
    if "islands" in kinds:
        lo, hi = errors.island_distance_px
        near = cv2.dilate(truth.view(np.uint8), _disk(int(hi))) > 0
        far_enough = ~(cv2.dilate(truth.view(np.uint8), _disk(int(lo))) > 0)
        mask |= _blobs(near & far_enough, rng, errors.islands, errors.island_area_px)
    return mask


def _boundary_error(truth: np.ndarray, rng: np.random.Generator, errors: SamLikeErrors) -> np.ndarray:
    t8 = truth.view(np.uint8)
    inside = cv2.distanceTransform(t8, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - t8, cv2.DIST_L2, 5)
    sdf = inside - outside  # > 0 inside, pixels
    noise = rng.normal(0.0, 1.0, truth.shape).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), errors.boundary_noise_scale_px)
    noise *= errors.boundary_noise_px / max(float(noise.std()), 1e-6)
    field = sdf + rng.uniform(*errors.boundary_offset_px) + noise
    f = errors.lowres_factor
    h, w = truth.shape
    low = cv2.resize(field, (w // f, h // f), interpolation=cv2.INTER_AREA)
    return cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR) > 0


def _blobs(
    allowed: np.ndarray, rng: np.random.Generator, count: tuple[int, int], area: tuple[float, float]
) -> np.ndarray:
    """Random ellipses centred on allowed pixels, clipped to allowed."""
    out = np.zeros(allowed.shape, np.uint8)
    ys, xs = np.nonzero(allowed)
    if len(ys) == 0:
        return out.astype(bool)
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        k = int(rng.integers(len(ys)))
        a = rng.uniform(*area)
        aspect = rng.uniform(0.5, 2.0)
        rx = max(1, int(round(np.sqrt(a * aspect / np.pi))))
        ry = max(1, int(round(np.sqrt(a / aspect / np.pi))))
        cv2.ellipse(out, (int(xs[k]), int(ys[k])), (rx, ry), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return (out > 0) & allowed


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def click_point(truth: np.ndarray) -> tuple[float, float]:
    """A user's click on the object: its most interior pixel (x, y)."""
    inside = cv2.distanceTransform(truth.view(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(np.argmax(inside)), inside.shape)
    return float(x), float(y)


def _scores(mask: np.ndarray, truth: np.ndarray, davis_tol: float) -> dict[str, float]:
    return {
        "boundary_f": boundary_f_score(mask, truth, TOLERANCE_PX).f,
        "boundary_f_davis": boundary_f_score(mask, truth, davis_tol).f,
        "iou": mask_iou(mask, truth),
    }


def _steps(
    config: MaskCleanConfig,
) -> dict[str, Callable[[np.ndarray, np.ndarray, tuple[float, float]], np.ndarray]]:
    return {
        "none": lambda m, d, a: m,
        "islands": lambda m, d, a: remove_islands(m, a, config),
        "holes": lambda m, d, a: fill_holes(m, d, config),
        "depth_snap": lambda m, d, a: snap_to_depth(m, d, config),
        "all": lambda m, d, a: clean_mask(m, d, a, config),
        "all_without_depth": lambda m, d, a: clean_mask(m, None, a, config),
    }


def _git_state() -> str:
    """Commit the numbers were measured at ("-dirty": with uncommitted changes in the tree)."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def _min_ms(fn: Callable[[], object], repeats: int = 5) -> float:
    """Fastest of a few runs, in ms: the machine is shared, and the minimum is the least disturbed."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def _mean_rows(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}


def _geometric_model():
    """The geometric RGB-D default through the registry, or None when it is not available yet."""
    try:
        from models.interfaces import ModelError
        from models.registry import ModelSpec, build_model
    except ImportError:
        return None
    try:
        return build_model(ModelSpec("geometric"))
    except (ModelError, ImportError) as exc:
        print(f"geometric model not measured: {exc}")
        return None


def run(n_scenes: int, seed0: int, config: MaskCleanConfig, with_model: bool = True) -> dict:
    steps = _steps(config)
    davis_tol = float(np.ceil(0.008 * np.hypot(640, 480)))
    all_rows: dict[str, list[dict[str, float]]] = {name: [] for name in steps}
    single_rows: dict[str, dict[str, list[dict[str, float]]]] = {
        k: {"before": [], "after": []} for k in ("islands", "holes", "boundary")
    }
    single_step = {"islands": "islands", "holes": "holes", "boundary": "depth_snap"}
    control: dict[str, list[dict[str, float]]] = {
        name: [] for name in ("islands", "holes", "depth_snap", "all")
    }
    times: dict[str, list[float]] = {"all": [], "islands": [], "holes": [], "depth_snap": []}
    areas: list[int] = []
    model = _geometric_model() if with_model else None
    model_rows: dict[str, list[dict[str, float]]] = {"raw": [], "cleaned": []}
    model_ms: list[float] = []

    for scene_seed in range(seed0, seed0 + n_scenes):
        scene = make_scene(scene_seed)
        frame: SyntheticFrame = render_frame(scene, degradation=DepthDegradation(), seed=scene_seed)
        depth = frame.frame.depth_m
        embedding = model.encoder.encode(_image_input(frame)) if model is not None else None
        for object_id in scene.object_ids:
            truth = frame.visible_mask(object_id)
            if truth.sum() < MIN_OBJECT_PX:
                continue
            areas.append(int(truth.sum()))
            rng = np.random.default_rng([scene_seed, object_id])
            anchor = click_point(truth)
            degraded = degrade_mask(truth, rng, frozenset({"boundary", "holes", "islands"}))
            for name, step in steps.items():
                out = step(degraded, depth, anchor)
                if name in times:
                    times[name].append(_min_ms(lambda: step(degraded, depth, anchor)))  # noqa: B023
                all_rows[name].append(_scores(out, truth, davis_tol))
            for kind, row in single_rows.items():
                only = degrade_mask(
                    truth, np.random.default_rng([scene_seed, object_id, 1]), frozenset({kind})
                )
                row["before"].append(_scores(only, truth, davis_tol))
                row["after"].append(_scores(steps[single_step[kind]](only, depth, anchor), truth, davis_tol))
            for name in control:
                control[name].append(_scores(steps[name](truth, depth, anchor), truth, davis_tol))
            if model is not None and embedding is not None:
                raw = _model_mask(model, embedding, anchor)
                cleaned = clean_mask(raw, depth, anchor, config)
                model_ms.append(_min_ms(lambda: clean_mask(raw, depth, anchor, config)))  # noqa: B023
                model_rows["raw"].append(_scores(raw, truth, davis_tol))
                model_rows["cleaned"].append(_scores(cleaned, truth, davis_tol))

    result = {
        "machine": machine(),
        "git": _git_state(),
        "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
        "scenes": {"seeds": [seed0, seed0 + n_scenes - 1], "depth": "DepthDegradation() (Kinect v1-like)"},
        "objects": len(areas),
        "object_area_px": percentiles(areas),
        "tolerance_px": {"boundary_f": TOLERANCE_PX, "boundary_f_davis": davis_tol},
        "all_errors": {name: _mean_rows(rows) for name, rows in all_rows.items()},
        "single_error": {
            kind: {
                "step": single_step[kind],
                "before": _mean_rows(r["before"]),
                "after": _mean_rows(r["after"]),
            }
            for kind, r in single_rows.items()
        },
        "control_true_masks": {name: _mean_rows(rows) for name, rows in control.items()},
        "clean_ms_640x480": {name: percentiles(v) for name, v in times.items()},
        "clean_mask_ms_by_object_area": {
            "under_10k_px": percentiles([t for t, a in zip(times["all"], areas, strict=True) if a < 10_000]),
            "10k_px_and_more": percentiles(
                [t for t, a in zip(times["all"], areas, strict=True) if a >= 10_000]
            ),
        },
        "timing": "wall clock, fastest of 5 runs per mask, one process; load average at the end: "
        + " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    if model is not None and model_rows["raw"]:
        result["geometric_model"] = {
            "raw": _mean_rows(model_rows["raw"]),
            "cleaned": _mean_rows(model_rows["cleaned"]),
            "clean_ms": percentiles(model_ms),
        }
    return result


def _image_input(frame: SyntheticFrame):
    from models.interfaces import ImageInput

    f = frame.frame
    return ImageInput(rgb=f.rgb, depth_m=f.depth_m, camera_matrix=f.intrinsics.matrix)


def _model_mask(model, embedding, anchor: tuple[float, float]) -> np.ndarray:
    from models.interfaces import PromptInput

    prompt = PromptInput(np.array([anchor], np.float32), np.array([1], np.int32), None, None, True)
    prediction = model.decoder.predict(embedding, prompt)
    return prediction.masks[int(np.argmax(prediction.scores))]


def plot(result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    real = result.get("real_frames")
    widths = [6, 5, 5] if real else [6, 5]
    fig, axes = plt.subplots(
        1, len(widths), figsize=(6.5 * len(widths), 4.6), gridspec_kw={"width_ratios": widths}
    )
    left, right = axes[0], axes[1]
    if real:
        _plot_real(axes[2], real)
    steps = list(result["all_errors"])
    x = np.arange(len(steps))
    for offset, metric, colour in ((-0.2, "boundary_f", "#4a7"), (0.2, "iou", "#48c")):
        values = [result["all_errors"][s][metric] for s in steps]
        left.bar(x + offset, values, 0.4, color=colour, label=metric.replace("_", " "))
        for xi, v in zip(x + offset, values, strict=True):
            left.annotate(f"{v:.2f}", (xi, v), ha="center", va="bottom", fontsize=7)
    left.set_xticks(x, [s.replace("_", "\n") for s in steps], fontsize=8)
    left.set_ylim(0.4, 1.02)
    left.set_title(f"{result['objects']} objects, all three SAM-like errors: after each step", fontsize=10)
    left.legend(fontsize=8, loc="lower right")

    pairs = [
        (f"only {k}\n-> {v['step']}", v["before"], v["after"]) for k, v in result["single_error"].items()
    ]
    pairs.append(("true masks\n-> clean_mask", {"boundary_f": 1.0}, result["control_true_masks"]["all"]))
    if "geometric_model" in result:
        g = result["geometric_model"]
        pairs.append(("geometric model\nraw -> cleaned", g["raw"], g["cleaned"]))
    x = np.arange(len(pairs))
    for offset, which, colour, label in ((-0.2, 1, "#999", "before"), (0.2, 2, "#4a7", "after")):
        values = [p[which]["boundary_f"] for p in pairs]
        right.bar(x + offset, values, 0.4, color=colour, label=label)
        for xi, v in zip(x + offset, values, strict=True):
            right.annotate(f"{v:.2f}", (xi, v), ha="center", va="bottom", fontsize=7)
    right.set_xticks(x, [p[0] for p in pairs], fontsize=8)
    right.set_ylim(0.0, 1.05)
    right.set_title(f"boundary F ({result['tolerance_px']['boundary_f']:g} px) before / after", fontsize=10)
    right.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(RESULTS / "mask_cleaning.png", dpi=110)


def _plot_real(ax, real: dict) -> None:
    steps = list(real["summary"])
    x = np.arange(len(steps))
    for offset, metric, colour in (
        (-0.27, "iou", "#48c"),
        (0.0, "boundary_f", "#4a7"),
        (0.27, "boundary_f_davis", "#a74"),
    ):
        values = [real["summary"][s][metric]["mean"] for s in steps]
        ax.bar(x + offset, values, 0.27, color=colour, label=metric.replace("_", " "))
        for xi, v in zip(x + offset, values, strict=True):
            ax.annotate(f"{v:.2f}", (xi, v), ha="center", va="bottom", fontsize=6)
    ax.set_xticks(x, [s.replace("_", "\n") for s in steps], fontsize=8)
    ax.set_ylim(0.0, 1.05)
    ax.set_title(
        f"real frames: geometric model's masks, {real['objects']} hand-checked objects (mean)", fontsize=10
    )
    ax.legend(fontsize=7, loc="lower right")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1000, help="first scene seed")
    parser.add_argument("--no-model", action="store_true", help="skip the geometric model")
    parser.add_argument("--no-real", action="store_true", help="skip the real frames (hand-checked masks)")
    args = parser.parse_args()
    config = MaskCleanConfig()
    result = run(args.scenes, args.seed, config, with_model=not args.no_model)
    if not args.no_real:
        from bench.real_cleaning import run_real

        davis_tol = result["tolerance_px"]["boundary_f_davis"]
        result["real_frames"] = run_real(_steps(config), TOLERANCE_PX, davis_tol)
        for name, row in result["real_frames"]["summary"].items():
            print(
                f"real {name:>18}: "
                + ", ".join(
                    f"{m} {v['mean']:.3f} ({v['mean_change']:+.3f} {v['mean_change_ci95']}, "
                    f"+{v['improved']}/-{v['worsened']})"
                    for m, v in row.items()
                )
            )
    path = write_json("mask_cleaning.json", result)
    plot(result)
    print(path)
    for name, row in result["all_errors"].items():
        f, davis, iou = row["boundary_f"], row["boundary_f_davis"], row["iou"]
        print(f"{name:>18}: boundary F {f:.3f}  DAVIS F {davis:.3f}  IoU {iou:.3f}")
    for kind, row in result["single_error"].items():
        b, a = row["before"], row["after"]
        print(
            f"only {kind:>9} -> {row['step']:>10}: F {b['boundary_f']:.3f} -> {a['boundary_f']:.3f}, "
            f"IoU {b['iou']:.3f} -> {a['iou']:.3f}"
        )
    for name, row in result["control_true_masks"].items():
        print(f"control: true masks -> {name:>10}: F {row['boundary_f']:.3f}, IoU {row['iou']:.3f}")
    print("clean_mask ms:", result["clean_ms_640x480"]["all"], result["clean_mask_ms_by_object_area"])
    if "geometric_model" in result:
        print("geometric:", result["geometric_model"])


if __name__ == "__main__":
    main()

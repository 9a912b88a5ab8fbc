"""`python -m bench.models`: prompt-decoder latency per decoder family, torch vs ONNX Runtime, equal threads.

    python -m bench.models [--iters 200] [--runs 5] [--threads 1 2] [--families sam sam2]

Decoder families, not checkpoints: SAM ViT-B/L/H and MobileSAM share SAM's prompt encoder and mask
decoder (only the image encoder differs), so one build stands for all (MobileSAM's: the cheapest
encoder to get an embedding from); SAM 2.1 and EdgeTAM share SAM 2's decoder (SAM 2.1 Hiera-tiny's
build stands for both). Weights are random (real architectures, official checkpoint formats,
loaded through models/registry.py): speed does not depend on their values; no downloads exist.

Arms, at each thread count T (torch.set_num_threads(T); ONNX Runtime intra_op_num_threads=T, graph
optimisation ALL, sequential execution):
- reference: the library's own predictor in torch (segment-anything's `SamPredictor.predict`;
  transformers' `Sam2Model` + `post_process_masks`), masks at the original 640x480.
- sam_onnx_official (SAM family): segment-anything's own ONNX export (`SamOnnxModel`, as its
  scripts/export_onnx_model.py does it) on ONNX Runtime, with `ResizeLongestSide.apply_coords` and
  the > 0 threshold around it: same work as the predictor. Against `reference` it is ONNX Runtime's
  share; against `ours` it is our graph's share (resize taps, fused no-mask path).
- ours: `PromptDecoder.predict` (our exported graph on ONNX Runtime), the engine's path.
Prompts: 1 point (multimask, the predictors' default) and 8 points (single mask).

Each run: `--iters` iterations; in every iteration each arm is called once, in a fresh random order
(load and cache effects fall on all arms alike). `--runs` repeats; figures are the median of the
runs' p50 / p95 with the [min, max] over runs, and the ratios per run.

Writes bench/results/models.json and models.png.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench.common import RESULTS, machine, write_json

H, W = 480, 640
log = logging.getLogger("bench.models")


def _prompts():
    from models.interfaces import PromptInput

    rng = np.random.default_rng(0)
    pts = rng.uniform([0, 0], [W - 1, H - 1], size=(8, 2)).astype(np.float32)
    labels = np.array([1, 1, 0, 1, 0, 1, 1, 0], np.int32)
    return {
        "1_point": PromptInput(pts[:1], labels[:1], multimask=True),
        "8_points": PromptInput(pts, labels, multimask=False),
    }


def _ort_options(threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


def _with_threads(decoder, threads: int):
    """Our decoder with its ONNX Runtime sessions reopened at `threads` intra-op threads (CPU)."""
    from models.onnx.runtime import OnnxSession, SessionConfig

    s = decoder.sessions
    config = SessionConfig(device="cpu", threads=threads)
    sessions = replace(
        s,
        multi=OnnxSession(s.multi.path, config, s.multi.name),
        single=OnnxSession(s.single.path, config, s.single.name),
        mask_prompt=OnnxSession(s.mask_prompt.path, config, s.mask_prompt.name),
    )
    return type(decoder)(decoder.name, sessions)


def export_official_sam(sam, path: Path, single: bool) -> Path:
    """segment-anything's own decoder export (scripts/export_onnx_model.py, opset 17)."""
    from segment_anything.utils.onnx import SamOnnxModel

    model = SamOnnxModel(sam, return_single_mask=single)
    embed_dim = sam.prompt_encoder.embed_dim
    embed_size = sam.prompt_encoder.image_embedding_size
    mask_input_size = [4 * x for x in embed_size]
    dummy = {
        "image_embeddings": torch.randn(1, embed_dim, *embed_size, dtype=torch.float),
        "point_coords": torch.randint(low=0, high=1024, size=(1, 5, 2), dtype=torch.float),
        "point_labels": torch.randint(low=0, high=4, size=(1, 5), dtype=torch.float),
        "mask_input": torch.randn(1, 1, *mask_input_size, dtype=torch.float),
        "has_mask_input": torch.tensor([1], dtype=torch.float),
        "orig_im_size": torch.tensor([1500, 2250], dtype=torch.float),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            tuple(dummy.values()),
            str(path),
            export_params=True,
            opset_version=17,
            do_constant_folding=True,
            input_names=list(dummy),
            output_names=["masks", "iou_predictions", "low_res_masks"],
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
            dynamo=False,
        )
    return path


Arms = Callable[[int], dict[str, dict[str, Callable[[], object]]]]
"""threads -> {prompt: {arm: call}}: a family's arms with every runtime at that thread count."""


def sam_family(workdir: Path) -> Arms:
    """SAM's decoder (MobileSAM build): built and encoded once, arms opened per thread count."""
    import onnxruntime as ort
    from segment_anything import SamPredictor
    from segment_anything.utils.transforms import ResizeLongestSide

    from models.mobile_sam.build import build_mobile_sam_architecture
    from models.registry import ModelSpec, build_model

    torch.manual_seed(0)
    sam = build_mobile_sam_architecture().eval()
    ckpt = workdir / "mobile_sam.pt"
    if not ckpt.exists():
        torch.save(sam.state_dict(), ckpt)
    model = build_model(ModelSpec("mobile_sam", ckpt, "cpu"))
    sam = model.encoder.sam  # the weights the registry loaded: reference and ours decode the same model
    rgb = np.random.default_rng(1).integers(0, 255, (H, W, 3), dtype=np.uint8)
    from models.interfaces import ImageInput

    emb = model.encoder.encode(ImageInput(rgb))
    ref = SamPredictor(sam)
    ref.original_size = (H, W)
    ref.input_size = emb.data.input_size
    ref.features = torch.from_numpy(emb.data.features)
    ref.is_image_set = True
    transform = ResizeLongestSide(sam.image_encoder.img_size)
    paths = {
        single: workdir / f"sam_official_{'single' if single else 'multi'}.onnx" for single in (False, True)
    }
    for single, path in paths.items():
        export_official_sam(sam, path, single)
    features = np.ascontiguousarray(emb.data.features, np.float32)
    no_mask = np.zeros((1, 1, 256, 256), np.float32)

    def official_call(p, session):
        coords = np.concatenate([p.point_coords, np.zeros((1, 2), np.float32)])[None].astype(np.float32)
        labels = np.concatenate([p.point_labels.astype(np.float32), [-1.0]])[None].astype(np.float32)
        coords = transform.apply_coords(coords, (H, W)).astype(np.float32)
        masks, iou, low = session.run(
            None,
            {
                "image_embeddings": features,
                "point_coords": coords,
                "point_labels": labels,
                "mask_input": no_mask,
                "has_mask_input": np.zeros(1, np.float32),
                "orig_im_size": np.array([H, W], np.float32),
            },
        )
        return masks > 0.0, iou, low

    def arms(threads: int) -> dict[str, dict[str, Callable[[], object]]]:
        ours = _with_threads(model.decoder, threads)
        official = {
            single: ort.InferenceSession(str(path), _ort_options(threads), providers=["CPUExecutionProvider"])
            for single, path in paths.items()
        }
        return {
            key: {
                "reference": lambda p=p: ref.predict(
                    p.point_coords, p.point_labels, multimask_output=p.multimask
                ),
                "sam_onnx_official": lambda p=p: official_call(p, official[not p.multimask]),
                "ours": lambda p=p: ours.predict(emb, p),
            }
            for key, p in _prompts().items()
        }

    return arms


def sam2_family(workdir: Path) -> Arms:
    """SAM 2's decoder (SAM 2.1 Hiera-tiny build; EdgeTAM shares it)."""
    from transformers import Sam2Config, Sam2ImageProcessor, Sam2Model

    from models.interfaces import ImageInput
    from models.registry import ModelSpec, build_model

    torch.manual_seed(0)
    ckpt = workdir / "sam2.1-hiera-tiny"
    net = Sam2Model(Sam2Config()).eval()
    if not ckpt.exists():
        net.save_pretrained(str(ckpt))
    model = build_model(ModelSpec("sam2.1_hiera_tiny", ckpt, "cpu"))
    rgb = np.random.default_rng(1).integers(0, 255, (H, W, 3), dtype=np.uint8)
    emb = model.encoder.encode(ImageInput(rgb))
    feats = [torch.from_numpy(a) for a in (emb.data.feat_s0, emb.data.feat_s1, emb.data.image_embed)]
    proc = Sam2ImageProcessor()
    scale = torch.tensor([1024.0 / W, 1024.0 / H])

    def reference(p):
        with torch.no_grad():
            o = net(
                image_embeddings=feats,
                input_points=torch.from_numpy(p.point_coords)[None, None] * scale,
                input_labels=torch.from_numpy(p.point_labels.astype(np.int64))[None, None],
                multimask_output=p.multimask,
            )
        return proc.post_process_masks(o.pred_masks, [[H, W]])

    def arms(threads: int) -> dict[str, dict[str, Callable[[], object]]]:
        ours = _with_threads(model.decoder, threads)
        return {
            key: {"reference": lambda p=p: reference(p), "ours": lambda p=p: ours.predict(emb, p)}
            for key, p in _prompts().items()
        }

    return arms


FAMILIES = {
    "sam": (sam_family, "SAM decoder: SAM ViT-B/L/H, MobileSAM (MobileSAM build)"),
    "sam2": (sam2_family, "SAM 2 decoder: SAM 2.1, EdgeTAM (SAM 2.1 Hiera-tiny build)"),
}


def measure(arms: dict[str, Callable[[], object]], iters: int, rng: random.Random, warmup: int = 5) -> dict:
    """One run: per iteration every arm once, in a random order. Returns {arm: [ms]}."""
    names = list(arms)
    for name in names:
        for _ in range(warmup):
            arms[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(iters):
        rng.shuffle(names)
        for name in names:
            t = time.perf_counter()
            arms[name]()
            times[name].append((time.perf_counter() - t) * 1e3)
    return times


def _summary(values: list[float]) -> dict:
    return {
        "median": round(float(np.median(values)), 3),
        "min": round(float(min(values)), 3),
        "max": round(float(max(values)), 3),
    }


def summarise(runs: list[dict[str, list[float]]]) -> dict:
    arms = list(runs[0])
    out: dict = {"arms": {}, "ratios_p50": {}}
    for arm in arms:
        p50 = [float(np.percentile(r[arm], 50)) for r in runs]
        p95 = [float(np.percentile(r[arm], 95)) for r in runs]
        out["arms"][arm] = {
            "p50_ms": _summary(p50),
            "p95_ms": _summary(p95),
            "n_per_run": len(runs[0][arm]),
            "runs": len(runs),
        }
    pairs = [("reference", "ours"), ("reference", "sam_onnx_official"), ("sam_onnx_official", "ours")]
    for a, b in pairs:
        if a in arms and b in arms:
            out["ratios_p50"][f"{a}_over_{b}"] = _summary(
                [float(np.percentile(r[a], 50) / np.percentile(r[b], 50)) for r in runs]
            )
    return out


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (f, t, p)
        for f in results["families"]
        for t in results["families"][f]
        for p in ("1_point", "8_points")
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 4), squeeze=False)
    for ax, (family, threads, prompt) in zip(axes[0], panels, strict=True):
        arms = results["families"][family][threads][prompt]["arms"]
        names = list(arms)
        med = [arms[a]["p50_ms"]["median"] for a in names]
        lo = [m - arms[a]["p50_ms"]["min"] for m, a in zip(med, names, strict=True)]
        hi = [arms[a]["p50_ms"]["max"] - m for m, a in zip(med, names, strict=True)]
        ax.bar(range(len(names)), med, yerr=[lo, hi], capsize=3, color=["C0", "C2", "C1"][: len(names)])
        ax.set_xticks(range(len(names)), [n.replace("sam_onnx_", "") for n in names], rotation=20, fontsize=8)
        ax.set_title(f"{family}, {threads} thr, {prompt.replace('_', ' ')}", fontsize=9)
        ax.set_ylabel("p50 ms (median of runs, bars min..max)", fontsize=8)
    fig.suptitle(f"prompt decoders -> {W}x{H} masks, CPU, torch and ONNX Runtime at equal threads")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.models", description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=200, help="iterations per run (each arm once each)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--seed", type=int, default=0, help="seed of the random arm order")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rng = random.Random(args.seed)
    load = [round(os.getloadavg()[0], 2)]
    results: dict = {
        "machine": machine(),
        "versions": {"torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__},
        "output_resolution": [H, W],
        "weights": "random, real architecture sizes, official checkpoint formats",
        "families_why": {f: why for f, (_, why) in FAMILIES.items()},
        "setting": {
            "iters": args.iters,
            "runs": args.runs,
            "order": "every iteration calls each arm once in a fresh random order",
            "threads": "torch.set_num_threads(T); ONNX Runtime intra_op_num_threads=T, inter_op 1, "
            "sequential",
        },
        "families": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XRSEG_CACHE"] = tmp
        workdir = Path(tmp)
        for family in args.families:
            build, _ = FAMILIES[family]
            results["families"][family] = {}
            arms_at = build(workdir)
            for threads in args.threads:
                torch.set_num_threads(threads)
                calls = arms_at(threads)
                per_prompt = {}
                for prompt, arms in calls.items():
                    runs = [measure(arms, args.iters, rng) for _ in range(args.runs)]
                    load.append(round(os.getloadavg()[0], 2))
                    per_prompt[prompt] = summarise(runs)
                    s = per_prompt[prompt]
                    print(
                        f"{family} {threads} thr {prompt}: "
                        + ", ".join(f"{a} p50 {v['p50_ms']['median']:.2f} ms" for a, v in s["arms"].items())
                        + " | "
                        + ", ".join(f"{k} {v['median']:.2f}" for k, v in s["ratios_p50"].items())
                        + f" | load {load[-1]}",
                        flush=True,
                    )
                results["families"][family][str(threads)] = per_prompt
    results["load_avg_1m_during"] = load
    out = write_json("models.json", results)
    _plot(results, RESULTS / "models.png")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Model backend latency: reference torch predictors vs our ONNX Runtime decoders, one run.

    python -m bench.models [--iters 30] [--out bench/results]

For each backend architecture (real size, random weights saved in the official checkpoint format
and loaded through the registry) it measures
- the image encoder at its native input (1024 x 1024), torch;
- the prompt decoder for 1 point (multimask, the predictors' default) and for 8 points (single
  mask), answering at the original image resolution (640 x 480):
  reference = segment-anything's `SamPredictor.predict` / transformers' model + `post_process_masks`,
  ours = `PromptDecoder.predict` (ONNX Runtime), interleaved call by call so both see the same
  machine load; p50 / p95 in ms and the reference/ours ratio of p50s.
Writes models.json and models.png (matplotlib, Agg). SAM ViT-L/H are left out: same decoder as
ViT-B, and their encoders take tens of seconds per image on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

H, W = 480, 640
log = logging.getLogger("bench.models")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _stats(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)), "n": len(ms)}


def _interleaved(fns: dict[str, Callable[[], object]], iters: int, warmup: int = 3) -> dict[str, dict]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(iters):
        for key, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t)
    return {k: _stats(v) for k, v in times.items()}


def _encoder(model, rgb, iters: int) -> dict:
    from models.interfaces import ImageInput

    samples = []
    emb = None
    for _ in range(iters):
        t = time.perf_counter()
        emb = model.encoder.encode(ImageInput(rgb))
        samples.append(time.perf_counter() - t)
    return {"stats": _stats(samples), "embedding": emb}


def _prompts():
    from models.interfaces import PromptInput

    rng = np.random.default_rng(0)
    pts = rng.uniform([0, 0], [W - 1, H - 1], size=(8, 2)).astype(np.float32)
    labels = np.array([1, 1, 0, 1, 0, 1, 1, 0], np.int32)
    return {
        "1_point": PromptInput(pts[:1], labels[:1], multimask=True),
        "8_points": PromptInput(pts, labels, multimask=False),
    }


def bench_sam(name: str, sam, ckpt: Path, iters: int, enc_iters: int) -> dict:
    from segment_anything import SamPredictor

    from models.registry import ModelSpec, build_model

    model = build_model(ModelSpec(name, ckpt, "cpu"))
    rgb = np.random.default_rng(1).integers(0, 255, (H, W, 3), dtype=np.uint8)
    enc = _encoder(model, rgb, enc_iters)
    emb = enc["embedding"]
    ref = SamPredictor(sam)
    ref.original_size = (H, W)
    ref.input_size = emb.data.input_size
    ref.features = torch.from_numpy(emb.data.features)
    ref.is_image_set = True
    out = {"encoder_torch": enc["stats"]}
    for key, p in _prompts().items():
        res = _interleaved(
            {
                "reference": lambda p=p: ref.predict(
                    p.point_coords, p.point_labels, multimask_output=p.multimask
                ),
                "ours": lambda p=p: model.decoder.predict(emb, p),
            },
            iters,
        )
        res["ratio_p50"] = res["reference"]["p50_ms"] / res["ours"]["p50_ms"]
        out[f"decoder_{key}"] = res
    return out


def bench_sam2(name: str, net, ckpt: Path, iters: int, enc_iters: int) -> dict:
    from transformers import Sam2ImageProcessor

    from models.registry import ModelSpec, build_model

    model = build_model(ModelSpec(name, ckpt, "cpu"))
    rgb = np.random.default_rng(1).integers(0, 255, (H, W, 3), dtype=np.uint8)
    enc = _encoder(model, rgb, enc_iters)
    emb = enc["embedding"]
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

    out = {"encoder_torch": enc["stats"]}
    for key, p in _prompts().items():
        res = _interleaved(
            {"reference": lambda p=p: reference(p), "ours": lambda p=p: model.decoder.predict(emb, p)}, iters
        )
        res["ratio_p50"] = res["reference"]["p50_ms"] / res["ours"]["p50_ms"]
        out[f"decoder_{key}"] = res
    return out


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["backends"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key in zip(axes, ("decoder_1_point", "decoder_8_points"), strict=True):
        x = np.arange(len(names))
        ref = [results["backends"][n][key]["reference"]["p50_ms"] for n in names]
        ours = [results["backends"][n][key]["ours"]["p50_ms"] for n in names]
        ax.bar(x - 0.2, ref, 0.4, label="reference torch predict")
        ax.bar(x + 0.2, ours, 0.4, label="ours (ONNX Runtime)")
        for i, n in enumerate(names):
            ax.text(
                x[i],
                max(ref[i], ours[i]) * 1.02,
                f"{results['backends'][n][key]['ratio_p50']:.2f}x",
                ha="center",
            )
        ax.set_xticks(x, names, rotation=15)
        ax.set_ylabel("p50 latency (ms)")
        ax.set_title(f"{key.replace('_', ' ')} -> {W}x{H} masks, {results['device']}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--encoder-iters", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--only", nargs="*", default=None, help="backend names to run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from segment_anything import sam_model_registry
    from transformers import EdgeTamConfig, EdgeTamModel, Sam2Config, Sam2Model, TimmWrapperConfig

    from models.mobile_sam.build import build_mobile_sam_architecture

    results = {
        "device": "cpu",
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": list(os.getloadavg()),
        "versions": {"torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__},
        "output_resolution": [H, W],
        "weights": "random, real architecture sizes, saved in the official formats",
        "backends": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XRSEG_CACHE"] = tmp
        root = Path(tmp)
        torch.manual_seed(0)
        jobs = {
            "sam_vit_b": lambda: (sam_model_registry["vit_b"]().eval(), "sam_vit_b_01ec64.pth", bench_sam),
            "mobile_sam": lambda: (build_mobile_sam_architecture(), "mobile_sam.pt", bench_sam),
            "sam2.1_hiera_tiny": lambda: (Sam2Model(Sam2Config()).eval(), "sam2.1-hiera-tiny", bench_sam2),
            "edgetam": lambda: (
                EdgeTamModel(
                    EdgeTamConfig(
                        vision_config={
                            "backbone_config": TimmWrapperConfig(
                                architecture="repvit_m1",
                                model_args={
                                    "in_chans": 3,
                                    "features_only": True,
                                    "out_indices": [0, 1, 2, 3],
                                },
                            ).to_dict()
                        }
                    )
                ).eval(),
                "EdgeTAM",
                bench_sam2,
            ),
        }
        for name, make in jobs.items():
            if args.only and name not in args.only:
                continue
            net, filename, fn = make()
            ckpt = root / filename
            if fn is bench_sam:
                torch.save(net.state_dict(), ckpt)
            else:
                net.save_pretrained(str(ckpt))
            t = time.perf_counter()
            results["backends"][name] = fn(name, net, ckpt, args.iters, args.encoder_iters)
            r = results["backends"][name]
            one, eight = r["decoder_1_point"], r["decoder_8_points"]
            print(
                f"{name:20s} encoder p50 {r['encoder_torch']['p50_ms']:8.1f} ms"
                f" | 1 pt: ref {one['reference']['p50_ms']:6.1f} ours {one['ours']['p50_ms']:6.1f}"
                f" ({one['ratio_p50']:.2f}x) | 8 pts: ref {eight['reference']['p50_ms']:6.1f}"
                f" ours {eight['ours']['p50_ms']:6.1f} ({eight['ratio_p50']:.2f}x)"
                f" [{time.perf_counter() - t:.0f} s]",
                flush=True,
            )
    results["load_average_at_end"] = list(os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "models.json").write_text(json.dumps(results, indent=2))
    _plot(results, args.out / "models.png")
    print(f"wrote {args.out / 'models.json'} and {args.out / 'models.png'}")


if __name__ == "__main__":
    main()

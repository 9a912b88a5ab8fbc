"""Image-encoder throughput against batch size: does one forward pass of N frames beat N passes?

    python -m bench.encoder_batch [--models mobile_sam sam2.1_hiera_tiny] [--batches 1 2 4 8]
                                  [--runs 3] [--threads 1] [--out bench/results]

For each encoder (real architecture and size, random weights; MobileSAM's TinyViT, SAM 2.1
Hiera-tiny through transformers, optionally SAM ViT-B) and each batch size B it encodes B distinct
640 x 480 frames with `encode_batch` (B = 1: `encode`, the per-frame baseline the scheduler used
before), `--runs` times after one warm-up frame, and reports frames/s (B / wall time of the call,
preprocessing included) per run: median and range. Batches are interleaved run by run so every
size sees the same machine load. Results are written after each encoder, so a long run that
is stopped keeps what it measured. Load averages at start and end are recorded: on a shared machine
the numbers are lower bounds on throughput.

Writes encoder_batch.json and encoder_batch.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import RESULTS, machine
from models.interfaces import ImageInput, encode_images

H, W = 480, 640
log = logging.getLogger("bench.encoder_batch")


def build_encoder(name: str):
    """The named encoder with random weights (no checkpoint files needed)."""
    torch.manual_seed(0)
    if name == "mobile_sam":
        from models.mobile_sam.build import build_mobile_sam_architecture
        from models.sam.backend import SamImageEncoder

        return SamImageEncoder(name, build_mobile_sam_architecture())
    if name == "sam_vit_b":
        from segment_anything import sam_model_registry

        from models.sam.backend import SamImageEncoder

        return SamImageEncoder(name, sam_model_registry["vit_b"]().eval())
    if name == "sam2.1_hiera_tiny":
        from transformers import Sam2Config, Sam2ImageProcessor, Sam2Model

        from models.sam2.backend import Sam2ImageEncoder

        return Sam2ImageEncoder(name, Sam2Model(Sam2Config()).eval(), Sam2ImageProcessor())
    raise SystemExit(f"unknown encoder {name!r}; choose mobile_sam, sam_vit_b or sam2.1_hiera_tiny")


def measure(encoder, batches: list[int], runs: int) -> dict[int, list[float]]:
    """{batch: [frames/s per run]}, batches interleaved within each run."""
    rng = np.random.default_rng(0)
    frames = [ImageInput(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)) for _ in range(max(batches))]
    fps: dict[int, list[float]] = {b: [] for b in batches}
    encode_images(encoder, frames[:1])  # warm-up: weights paged in, oneDNN kernels chosen
    for run in range(runs):
        for b in batches:
            t = time.perf_counter()
            out = encode_images(encoder, frames[:b])
            dt = time.perf_counter() - t
            assert len(out) == b
            fps[b].append(b / dt)
            log.info("%s run %d batch %d: %.3f frames/s", encoder.name, run, b, b / dt)
    return fps


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in results["encoders"].items():
        b = [r["batch"] for r in rows]
        med = np.array([r["fps_median"] for r in rows])
        lo = med - np.array([r["fps_min"] for r in rows])
        hi = np.array([r["fps_max"] for r in rows]) - med
        ax.errorbar(b, med, yerr=[lo, hi], marker="o", capsize=3, label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(results["batches"], [str(b) for b in results["batches"]])
    ax.set_xlabel("batch size (frames per encoder call)")
    ax.set_ylabel("frames / s")
    ax.set_title(f"encoder throughput, CPU, {results['torch_threads']} thread(s)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobile_sam", "sam2.1_hiera_tiny"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (machine is shared)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    results: dict = {
        "commit": commit,
        "machine": machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "frame": [H, W],
        "batches": args.batches,
        "runs": args.runs,
        "load_average_at_start": list(os.getloadavg()),
        "note": "frames/s per encoder call incl. preprocessing; other agents share this CPU, so "
        "figures are lower bounds on throughput",
        "encoders": {},
    }
    for name in args.models:
        encoder = build_encoder(name)
        fps = measure(encoder, args.batches, args.runs)
        base = float(np.median(fps[args.batches[0]]))
        results["encoders"][name] = [
            {
                "batch": b,
                "fps_median": round(float(np.median(v)), 4),
                "fps_min": round(float(min(v)), 4),
                "fps_max": round(float(max(v)), 4),
                "fps_runs": [round(x, 4) for x in v],
                "speedup_vs_batch1": round(float(np.median(v)) / base, 3),
            }
            for b, v in fps.items()
        ]
        del encoder
        results["load_average_at_end"] = list(os.getloadavg())
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "encoder_batch.json").write_text(json.dumps(results, indent=2))
        plot(results, args.out / "encoder_batch.png")
    for name, rows in results["encoders"].items():
        log.info(
            "%s: %s",
            name,
            ", ".join(f"B={r['batch']} {r['fps_median']:.2f} f/s (x{r['speedup_vs_batch1']})" for r in rows),
        )


if __name__ == "__main__":
    main()

"""`python -m bench.streaming`: our keyframe policy against the baselines a good engineer would write.

A synthetic moving-camera RGB-D sequence (bench/gaze_sequence.py: held-out scene seeds 1000..,
exact ground truth; the camera orbits the table 60 deg in 8 s) is streamed at 15 fps over a real
loopback WebSocket to an engine in its own process (as `xrseg serve` runs), and every frame
carries a gaze prompt of the 8 eye-tracker samples (120 Hz) of its interval, the gaze staying on
one object for 2 s, then moving to the next.

Policies (the session's KeyframeSource; everything else, from transport to mask cleaning, is the
same served path):
  scheduled    ours: background keyframes on motion / scene change / age under the duty cap,
               prompts mapped into the keyframe by depth + pose, held gaze answers reused,
               speculative decodes at fixations, stale gaze prompts dropped.
  latest       baseline (b): background encodes of the newest frame under the same duty cap, the
               same held-answer cache and speculation, prompts decoded from the latest embedding
               without mapping (bench/keyframe_baselines.py).
  newest       baseline (a): the encoder on the prompt path, newest prompt answered, stale dropped.
  every_frame  the old naive baseline: every prompt's frame encoded on the path, FIFO (queue of 8).

Per run and policy: answered prompts/s; latency over answered prompts and with drops counted (for
each prompt sent, the time until the client holds an answer to it or to a newer prompt: a dropped
prompt waits for the next answer); and the IoU of each answer's selected mask with the ground truth
of the prompt's own frame (the object under the true gaze point there). Runs are rounds: each round
renders one held-out seed and runs every policy on it in a random order (load hits all arms alike;
comparisons are paired by seed). Medians over runs with [min, max] ranges.

    python -m bench.streaming [--runs 5] [--models geometric,mobile_sam] [--frames 120] [--arc-deg 60]
        [--policies scheduled,latest,newest,every_frame] [--out streaming]

Writes bench/results/streaming.json and streaming.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import RESULTS, machine, percentiles, write_json  # noqa: E402
from bench.gaze_sequence import GazeSequence, SequenceSpec, render  # noqa: E402
from bench.keyframe_baselines import BenchPolicy, install  # noqa: E402
from clients.ws_client import EngineError, TimedResult, XrsegClient  # noqa: E402
from engine.config import EngineConfig  # noqa: E402
from engine.core import Prompt  # noqa: E402
from engine.logging_setup import configure_logging  # noqa: E402
from engine.protocol import ErrorCode  # noqa: E402
from engine.scheduler import KeyframeConfig, KeyframePolicy  # noqa: E402
from engine.server import Engine  # noqa: E402
from engine.transport.websocket import WebSocketTransport  # noqa: E402
from models.registry import ModelSpec, build_model  # noqa: E402

FPS = 15.0
GAZE_HZ = 120.0
DRAIN_S = 3.0
FIRST_SEED = 1000  # held-out scenes (bench/synthetic_accuracy.py): never used for tuning
POLICIES = (BenchPolicy.SCHEDULED, BenchPolicy.LATEST, BenchPolicy.NEWEST, BenchPolicy.EVERY_FRAME)
ENGINE_POLICY = {
    BenchPolicy.SCHEDULED: KeyframePolicy.SCHEDULED,
    BenchPolicy.LATEST: KeyframePolicy.SCHEDULED,  # needs the engine's background encoder
    BenchPolicy.NEWEST: KeyframePolicy.EVERY_FRAME,
    BenchPolicy.EVERY_FRAME: KeyframePolicy.EVERY_FRAME,
}


STAGES = {
    "queue_and_frame_decode": ("receive", "frame_decode"),
    "keyframe_wait": ("frame_decode", "encode"),
    "decoder": ("encode", "decode"),
    "map_back_clean_lift": ("decode", "lift"),
    "to_send": ("lift", "send"),
}
"""Engine stages from a result's StageTimestamps (engine/core/results.py): name -> (from, to)."""


@dataclass
class RunRecord:
    sent: dict[int, float] = field(default_factory=dict)
    results: dict[int, TimedResult] = field(default_factory=dict)
    dropped: set[int] = field(default_factory=set)
    other_errors: list[str] = field(default_factory=list)


async def serve(model: str, checkpoint: Path | None, policy: BenchPolicy, port: int, token: str) -> None:
    """The engine process: one model, one keyframe policy, a WebSocket on 127.0.0.1:port.

    Logs go to stderr at XRSEG_BENCH_LOG_LEVEL (default WARNING)."""
    configure_logging(os.environ.get("XRSEG_BENCH_LOG_LEVEL", "WARNING"))
    if policy in (BenchPolicy.NEWEST, BenchPolicy.LATEST):
        install(policy)
    config = EngineConfig(
        port=port,
        tokens=(token,),
        model=model,
        checkpoint=checkpoint,
        keyframes=KeyframeConfig(policy=ENGINE_POLICY[policy]),
    )
    async with Engine(config) as engine:
        transport = WebSocketTransport(engine, "127.0.0.1", port)
        await transport.start()
        print("ready", flush=True)
        try:
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until stdin closes
        finally:
            await transport.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_engine(
    model: str, checkpoint: Path | None, policy: BenchPolicy
) -> tuple[subprocess.Popen, int, str, list[str]]:
    port, token = _free_port(), secrets.token_hex(8)  # hex: never starts with "-" (argparse)
    cmd = [sys.executable, "-m", "bench.streaming", "serve", "--model", model, "--policy", str(policy)]
    cmd += ["--port", str(port), "--token", token]
    if checkpoint is not None:
        cmd += ["--checkpoint", str(checkpoint)]
    server = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    ready = threading.Event()
    output: list[str] = []

    def drain() -> None:  # the engine's output, read all along so that its pipe never fills up
        assert server.stdout is not None
        for line in server.stdout:
            output.append(line)
            if line.strip() == "ready":
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    ready.wait(300)
    if server.poll() is not None or not any(line.strip() == "ready" for line in output):
        raise RuntimeError(f"engine process did not start ({model}, {policy}):\n{''.join(output[-20:])}")
    return server, port, token, output


async def stream_once(model: str, checkpoint: Path | None, policy: BenchPolicy, seq: GazeSequence) -> dict:
    """Start an engine process, stream every frame with its gaze prompt at 15 fps, score the answers."""
    server, port, token, output = await asyncio.to_thread(_start_engine, model, checkpoint, policy)
    record = RunRecord()
    load_before = os.getloadavg()[0]
    try:
        async with XrsegClient.connect(f"ws://127.0.0.1:{port}", token, f"bench-{policy}") as client:
            futures: dict[int, asyncio.Future[TimedResult]] = {}
            start = time.perf_counter()
            late = []
            for index, recorded in enumerate(seq.frames):
                delay = start + index / FPS - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing a live 15 fps camera
                late.append(max(0.0, -delay))
                now = time.time()
                frame = replace(recorded, capture_ts=now)
                await client.send_frame(frame)
                samples = seq.samples(index, now, int(GAZE_HZ / FPS), GAZE_HZ)
                if samples:
                    record.sent[index] = time.time()
                    futures[index] = client.prompt_nowait(Prompt(index, frame.frame_id, gaze=samples))
            stream_s = time.perf_counter() - start
            pending = {f for f in futures.values() if not f.done()}
            if pending:
                await asyncio.wait(pending, timeout=DRAIN_S)
            window_s = time.perf_counter() - start
            cutoff = time.time()
            for index, future in futures.items():
                if not future.done():
                    future.cancel()
                    continue
                exc = future.exception()
                if exc is None:
                    record.results[index] = future.result()
                elif isinstance(exc, EngineError) and exc.code == ErrorCode.OVERLOADED:
                    record.dropped.add(index)
                else:
                    record.other_errors.append(str(exc))
            stats = await client.stats()
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        if os.environ.get("XRSEG_BENCH_LOG_LEVEL"):
            print("".join(output), file=sys.stderr)
    return summarise(policy, seq, record, stats, stream_s, window_s, cutoff, late, load_before)


def summarise(policy, seq, record, stats, stream_s, window_s, cutoff, late, load_before) -> dict:  # noqa: ANN001
    results = record.results
    latency = [r.latency_ms for r in results.values()]
    # Latency with drops counted: until the client holds an answer to this prompt or a newer one.
    answered_at = sorted((i, r.received) for i, r in results.items())
    with_drops, censored = [], 0
    for i, sent in record.sent.items():
        later = [received for j, received in answered_at if j >= i]
        if later:
            with_drops.append((min(later) - sent) * 1000)
        else:
            censored += 1
            with_drops.append((cutoff - sent) * 1000)  # a lower bound: nothing newer came before the cutoff
    ious = []
    for r in results.values():
        truth = seq.truth(r.result.frame_id)
        if truth is None:
            continue
        mask = r.result.masks[r.result.best].mask.decode().astype(bool)
        union = np.logical_or(mask, truth).sum()
        ious.append(float(np.logical_and(mask, truth).sum() / union) if union else 0.0)
    iou = np.asarray(ious)
    # Engine stages of fresh answers (held answers carry their speculation's earlier stamps).
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    for r in results.values():
        t = r.result.timestamps
        if t.receive is None or t.encode is None or t.encode < t.receive:
            continue
        for name, (a, b) in STAGES.items():
            start, end = getattr(t, a), getattr(t, b)
            if start is not None and end is not None:
                stages[name].append((end - start) * 1000)
    per_sent = np.concatenate([iou, np.zeros(len(record.sent) - len(iou))])  # unanswered count as 0
    return {
        "policy": str(policy),
        "seed": seq.spec.seed,
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "frames_sent": len(seq.frames),
        "client_pacing_late_ms": percentiles([x * 1000 for x in late]),
        "prompts_sent": len(record.sent),
        "answered": len(results),
        "dropped_overloaded": len(record.dropped),
        "unanswered_at_cutoff": len(record.sent)
        - len(results)
        - len(record.dropped)
        - len(record.other_errors),
        "errors": record.other_errors[:5],
        "stream_s": round(stream_s, 3),
        "window_s": round(window_s, 3),
        "answered_per_s": round(len(results) / window_s, 3),
        "latency_answered_ms": percentiles(latency),
        "latency_with_drops_ms": percentiles(with_drops),
        "latency_with_drops_censored": censored,
        "iou": {
            "median": round(float(np.median(iou)), 4) if iou.size else None,
            "mean": round(float(iou.mean()), 4) if iou.size else None,
            "share_above_0.5": round(float((iou > 0.5).mean()), 4) if iou.size else None,
            "n": int(iou.size),
            "mean_per_prompt_sent_unanswered_as_0": round(float(per_sent.mean()), 4)
            if per_sent.size
            else None,
        },
        "fresh_answer_stages_ms": {k: percentiles(v) for k, v in stages.items()},
        "answered_from_an_older_keyframe": sum(
            r.result.keyframe_id != r.result.frame_id for r in results.values()
        ),
        "mapping": {
            m: sum(r.mapping == m for r in results.values())
            for m in sorted({r.mapping for r in results.values()})
        },
        "session": {
            "keyframes_encoded": stats.keyframes_encoded,
            "prompts_waited_for_encode": stats.prompts_waited_for_encode,
            "prompts_dropped": stats.prompts_dropped,
            "speculative_decodes": stats.speculative_decodes,
            "speculative_hits": stats.speculative_hits,
            "frames_received": stats.frames_received,
            "frames_dropped": stats.frames_dropped,
        },
    }


def mobile_sam_checkpoint(workdir: Path) -> Path:
    """The MobileSAM architecture with random weights, saved as an official-format checkpoint, and
    its ONNX decoder exported once into workdir/cache (so engine start-up is not timed)."""
    import torch

    from models.mobile_sam.build import build_mobile_sam_architecture

    torch.manual_seed(0)
    path = workdir / "mobile_sam.pt"
    torch.save(build_mobile_sam_architecture().state_dict(), path)
    os.environ["XRSEG_CACHE"] = str(workdir / "cache")
    build_model(ModelSpec("mobile_sam", path))  # exports the decoder graphs into the cache
    return path


METRICS = {
    "answered_per_s": lambda r: r["answered_per_s"],
    "answered_share": lambda r: r["answered"] / max(r["prompts_sent"], 1),
    "latency_answered_p50_ms": lambda r: r["latency_answered_ms"]["p50"],
    "latency_answered_p95_ms": lambda r: r["latency_answered_ms"]["p95"],
    "latency_with_drops_p50_ms": lambda r: r["latency_with_drops_ms"]["p50"],
    "latency_with_drops_p95_ms": lambda r: r["latency_with_drops_ms"]["p95"],
    "iou_median": lambda r: r["iou"]["median"],
    "iou_mean": lambda r: r["iou"]["mean"],
    "iou_mean_per_prompt_sent": lambda r: r["iou"]["mean_per_prompt_sent_unanswered_as_0"],
}


def _median_range(values: list[float | None]) -> dict:
    v = [x for x in values if x is not None]
    if not v:
        return {"median": None, "min": None, "max": None, "n_runs": 0}
    return {
        "median": round(float(np.median(v)), 4),
        "min": round(float(min(v)), 4),
        "max": round(float(max(v)), 4),
        "n_runs": len(v),
    }


def aggregate(runs: list[dict], policies: tuple[BenchPolicy, ...]) -> dict:
    """Medians with [min, max] over runs per policy, and paired (same seed) ours-vs-baseline figures."""
    by = {str(p): [r for r in runs if r["policy"] == str(p)] for p in policies}
    out = {p: {m: _median_range([f(r) for r in rs]) for m, f in METRICS.items()} for p, rs in by.items()}
    paired = {}
    ours = {r["seed"]: r for r in by.get("scheduled", [])}
    for base in (p for p in by if p != "scheduled"):
        pairs = [(ours[r["seed"]], r) for r in by[base] if r["seed"] in ours]
        if not pairs:
            continue

        def ratio(metric: str, inverse: bool = False, pairs: list = pairs) -> dict:
            vals = []
            for a, b in pairs:
                x, y = METRICS[metric](a), METRICS[metric](b)
                if x and y:
                    vals.append(y / x if inverse else x / y)
            return _median_range(vals)

        paired[f"scheduled_vs_{base}"] = {
            "answered_per_s_ours_over_base": ratio("answered_per_s"),
            "latency_with_drops_p50_base_over_ours": ratio("latency_with_drops_p50_ms", inverse=True),
            "latency_with_drops_p95_base_over_ours": ratio("latency_with_drops_p95_ms", inverse=True),
            "iou_median_ours_minus_base": _median_range(
                [
                    (METRICS["iou_median"](a) or 0) - (METRICS["iou_median"](b) or 0)
                    for a, b in pairs
                    if METRICS["iou_median"](a) is not None and METRICS["iou_median"](b) is not None
                ]
            ),
            "iou_mean_per_prompt_sent_ours_minus_base": _median_range(
                [
                    METRICS["iou_mean_per_prompt_sent"](a) - METRICS["iou_mean_per_prompt_sent"](b)
                    for a, b in pairs
                ]
            ),
            "runs_ours_better_on_all_of_throughput_p95_iou": sum(
                METRICS["answered_per_s"](a) >= METRICS["answered_per_s"](b)
                and METRICS["latency_with_drops_p95_ms"](a) <= METRICS["latency_with_drops_p95_ms"](b)
                and (METRICS["iou_mean_per_prompt_sent"](a) >= METRICS["iou_mean_per_prompt_sent"](b))
                for a, b in pairs
            ),
            "n_pairs": len(pairs),
        }
    return {"policies": out, "paired": paired}


async def run(
    models: dict[str, Path | None],
    policies: tuple[BenchPolicy, ...],
    specs: list[SequenceSpec],
    order_seed: int,
    partial: Path | None = None,
) -> dict:
    """Rounds of every policy in a random order; each finished run is also appended to `partial`
    (JSON lines), so a crash late in a long run loses one run, not all."""
    rng = random.Random(order_seed)
    runs: dict[str, list[dict]] = {m: [] for m in models}
    for spec in specs:
        seq = await asyncio.to_thread(render, spec)
        for name, checkpoint in models.items():
            order = list(policies)
            rng.shuffle(order)
            for policy in order:
                print(f"seed {spec.seed} {name} {policy} ...", flush=True)
                r = await stream_once(name, checkpoint, policy, seq)
                r["order"] = [str(p) for p in order]
                runs[name].append(r)
                if partial is not None:
                    with partial.open("a") as f:
                        f.write(json.dumps({"model": name, **r}) + "\n")
                print(
                    f"  answered {r['answered']}/{r['prompts_sent']} ({r['answered_per_s']}/s), dropped "
                    f"{r['dropped_overloaded']}, p50/p95 with drops {r['latency_with_drops_ms']['p50']}/"
                    f"{r['latency_with_drops_ms']['p95']} ms, IoU median {r['iou']['median']}, "
                    f"load {r['load_avg_1m']}",
                    flush=True,
                )
    return {name: {"summary": aggregate(rs, policies), "runs": rs} for name, rs in runs.items()}


def plot(results: dict, policies: tuple[BenchPolicy, ...], path: Path) -> None:
    panels = [
        ("answered_per_s", "answered prompts / s", False),
        ("latency_with_drops_p50_ms", "latency with drops p50 (ms, log)", True),
        ("latency_with_drops_p95_ms", "latency with drops p95 (ms, log)", True),
        (
            "iou_mean_per_prompt_sent",
            "IoU vs GT of the prompt's frame\n(mean per prompt sent, unanswered = 0)",
            False,
        ),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4))
    names = list(results)
    width = 0.8 / len(policies)
    for ax, (metric, label, log) in zip(axes, panels, strict=True):
        for j, policy in enumerate(policies):
            xs = [i + (j - (len(policies) - 1) / 2) * width for i in range(len(names))]
            stats = [results[n]["summary"]["policies"][str(policy)][metric] for n in names]
            med = [s["median"] or 0 for s in stats]
            lo = [m - (s["min"] or 0) for m, s in zip(med, stats, strict=True)]
            hi = [(s["max"] or 0) - m for m, s in zip(med, stats, strict=True)]
            ax.bar(xs, med, width, yerr=[lo, hi], capsize=3, label=str(policy))
        ax.set_xticks(range(len(names)), names)
        ax.set_ylabel(label)
        if log:
            ax.set_yscale("log")
    axes[0].axhline(FPS, color="k", ls=":", lw=1)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        "synthetic orbit 640x480 @ 15 fps, gaze prompt per frame, WebSocket loopback, CPU; "
        "median, bars = min..max over runs"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.streaming")
    sub = parser.add_subparsers(dest="command")
    child = sub.add_parser("serve", help="(internal) the engine process of one run")
    child.add_argument("--model", required=True)
    child.add_argument("--checkpoint", type=Path)
    child.add_argument("--policy", required=True, choices=[str(p) for p in BenchPolicy])
    child.add_argument("--port", type=int, required=True)
    child.add_argument("--token", required=True)
    parser.add_argument("--runs", type=int, default=5, help="rounds; round r streams held-out seed 1000 + r")
    parser.add_argument("--frames", type=int, default=120, help="frames per sequence (15 fps)")
    parser.add_argument(
        "--arc-deg",
        type=float,
        default=60.0,
        help="camera orbit over the sequence (60: 7.5 deg/s at 120 frames)",
    )
    parser.add_argument("--models", default="geometric", help="comma-separated: geometric, mobile_sam")
    parser.add_argument("--policies", default=",".join(str(p) for p in POLICIES))
    parser.add_argument("--order-seed", type=int, default=0, help="seed of the random policy order per round")
    parser.add_argument("--out", default="streaming", help="result name under bench/results")
    args = parser.parse_args()
    if args.command == "serve":
        asyncio.run(serve(args.model, args.checkpoint, BenchPolicy(args.policy), args.port, args.token))
        return
    policies = tuple(BenchPolicy(p) for p in args.policies.split(","))
    specs = [SequenceSpec(FIRST_SEED + r, frames=args.frames, arc_deg=args.arc_deg) for r in range(args.runs)]
    with tempfile.TemporaryDirectory(prefix="xrseg-bench-") as tmp:
        models: dict[str, Path | None] = {}
        for name in args.models.split(","):
            models[name] = mobile_sam_checkpoint(Path(tmp)) if name == "mobile_sam" else None
        partial = RESULTS / f"{args.out}.partial.jsonl"
        partial.unlink(missing_ok=True)
        results = asyncio.run(run(models, policies, specs, args.order_seed, partial))
        partial.unlink(missing_ok=True)
    payload = {
        "machine": machine(),
        "sequence": {
            "kind": "synthetic orbit (bench/gaze_sequence.py), degraded Kinect-like depth, exact object ids",
            "seeds": [s.seed for s in specs],
            "frames": args.frames,
            "arc_deg": specs[0].arc_deg,
            "gaze_dwell_frames": specs[0].dwell_frames,
            "gaze_jitter_px": specs[0].jitter_px,
        },
        "setting": {
            "fps": FPS,
            "gaze_samples_per_prompt": int(GAZE_HZ / FPS),
            "transport": "WebSocket loopback, engine in its own process, JPEG colour + PNG16 depth",
            "prompt_queue": EngineConfig().prompt_queue,
            "background_duty": KeyframeConfig().background_duty,
            "drain_after_stream_s": DRAIN_S,
            "order": "each round (one seed) runs every policy in a random order (--order-seed)",
            "answered_per_s": "results received before the cutoff (stream end + drain) / (stream + drain) s",
            "latency_answered": "client-side, prompt sent -> its result received, answered prompts only",
            "latency_with_drops": "per prompt sent: until the client holds an answer to it or to a newer "
            "prompt; censored at the cutoff (a lower bound) when none came",
            "iou": "selected mask vs the ground-truth mask of the object under the true gaze point on the "
            "prompt's own frame; mean_per_prompt_sent counts every unanswered prompt as 0",
            "mobile_sam_weights": "random (official checkpoint layout): its masks are meaningless (IoU is "
            "not a quality figure for it), its compute is real",
        },
        "results": results,
    }
    out = write_json(f"{args.out}.json", payload)
    plot(results, policies, RESULTS / f"{args.out}.png")
    for name, r in results.items():
        for pair, figures in r["summary"]["paired"].items():
            print(f"{name} {pair}: {figures}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""`python -m bench.pipeline_latency`: how fast one prompt is answered at 640x480.

Two measurements, one run:
1. segment + lift in-process, on the served path (`Pipeline.answer` as a session calls it, mask
   cleaning on): image encoder (once per keyframe), prompt decoder, cleaning and Open3D lift
   for points on real RGB-D frames (livingroom1_micro when ../shared is present, synthetic
   scenes otherwise).
2. prompt-to-result over a real loopback WebSocket while streaming 640x480 at 15 fps, with the
   engine in its own process (`xrseg serve`) as in production.

Each measurement is repeated (`--runs`, default 3): the figures are pooled over the runs (n >= 100
for every p95) with each run's own p50 / p95 beside them, so the spread between runs shows.

Writes bench/results/pipeline_latency.json and pipeline_latency.png.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.common import RESULTS, machine, percentiles, write_json  # noqa: E402
from clients.gaze_script import GazeScript  # noqa: E402
from clients.streamer import StreamPlan, stream_sequence  # noqa: E402
from clients.ws_client import XrsegClient  # noqa: E402
from engine.config import EngineConfig  # noqa: E402
from engine.core import PointPrompt, Prompt, RGBDFrame, StageTimestamps  # noqa: E402
from engine.pipeline import Pipeline, prompt_input  # noqa: E402
from engine.session import SessionContext  # noqa: E402
from models.registry import ModelSpec, build_model  # noqa: E402
from xrseg.demo.run import DemoConfig, load_frames  # noqa: E402


def served_pipeline(model_name: str) -> Pipeline:
    """The Pipeline exactly as the engine builds it for its sessions (mask cleaning on)."""
    c = EngineConfig()
    return SessionContext(build_model(ModelSpec(model_name)), ThreadPoolExecutor(1), c).pipeline  # type: ignore[return-value]


def measure_in_process(frames: list[RGBDFrame], model_name: str) -> dict:
    """Per frame: encode + first prompt (a fresh keyframe, the full cost), then two more prompts
    that reuse the embedding (the engine's usual case). Each prompt goes through `Pipeline.answer`
    as a session's handler calls it: decode, mask cleaning, Open3D lift."""
    pipeline = served_pipeline(model_name)
    encode_ms, first_ms, reuse_ms, lift_ms, clean_on = [], [], [], [], pipeline.clean_config is not None
    for frame in frames[:3] + frames:  # the first three are warm-up
        h, w = frame.size
        points = [(w * 0.5, h * 0.55), (w * 0.3, h * 0.7), (w * 0.75, h * 0.4)]
        t0 = time.perf_counter()
        keyframe = pipeline.keyframe_now(frame)
        t1 = time.perf_counter()
        for j, (x, y) in enumerate(points):
            t2 = time.perf_counter()
            prompt = Prompt(j, frame.frame_id, points=(PointPrompt(x, y),))
            answer = pipeline.answer(frame, keyframe, prompt_input(prompt, h, w), j, StageTimestamps(), True)
            t3 = time.perf_counter()
            assert answer is not None  # the frame's own keyframe sees every prompt on it
            stamps = answer.result.timestamps
            (first_ms if j == 0 else reuse_ms).append((t3 - t0 if j == 0 else t3 - t2) * 1000)
            if stamps.lift is not None and stamps.decode is not None:
                lift_ms.append((stamps.lift - stamps.decode) * 1000)
        encode_ms.append((t1 - t0) * 1000)
    skip = 3
    raw = {"encode_ms": encode_ms[skip:], "clean_plus_lift_ms": lift_ms[skip * 3 :],
           "segment_plus_lift_ms": first_ms[skip:], "decode_plus_lift_reusing_embedding_ms": reuse_ms[skip * 2 :]}  # fmt: skip
    return {
        "_raw": raw,
        "model": model_name,
        "path": "Pipeline.answer as the session calls it",
        "mask_cleaning": clean_on,
        "frames": len(frames),
        "encode_ms": percentiles(encode_ms[skip:]),
        "clean_plus_lift_ms": percentiles(lift_ms[skip * 3 :]),
        "segment_plus_lift_ms": percentiles(first_ms[skip:]),
        "decode_plus_lift_reusing_embedding_ms": percentiles(reuse_ms[skip * 2 :]),
        "note": "segment_plus_lift = image encoder + prompt decoder + mask cleaning + Open3D lift for a "
        "prompt on a new frame; clean_plus_lift = from the decoder's return to the lift's end",
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def measure_websocket(
    frames: list[RGBDFrame], script: GazeScript, fps: float, prompt_every: int, model: str = "geometric"
) -> dict:
    port, token = _free_port(), secrets.token_hex(8)
    cmd = [sys.executable, "-m", "xrseg", "serve", "--port", str(port), "--token", token, "--log-level", "WARNING",
           "--model", model]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert server.stdout is not None
        seen = []
        while not any("ws://" in line for line in seen):  # "WebSocket sessions on ws://..."
            line = await asyncio.wait_for(asyncio.to_thread(server.stdout.readline), 120)
            if not line:
                raise RuntimeError("engine did not start: " + "".join(seen))
            seen.append(line)
        async with XrsegClient.connect(f"ws://127.0.0.1:{port}", token, "bench") as client:
            report = await stream_sequence(client, frames, script, StreamPlan(fps=fps, prompt_every=prompt_every))
    finally:
        server.terminate()
        server.wait(10)
    latency = [r.latency_ms for r in report.results]
    glass = [(r.received - r.result.timestamps.capture) * 1000 for r in report.results if r.result.timestamps.capture]
    engine_ms = [(r.result.timestamps.send - r.result.timestamps.receive) * 1000 for r in report.results]
    return {
        "fps": fps,
        "prompt_every": prompt_every,
        "frames_sent": report.frames_sent,
        "prompts_sent": report.prompts_sent,
        "results": len(report.results),
        "errors": len(report.errors),
        "frames_dropped": report.stats.frames_dropped if report.stats else None,
        "achieved_fps": round(report.frames_sent / report.wall_s, 2),
        "prompt_to_result_ms": percentiles(latency),
        "glass_to_mask_ms": percentiles(glass),
        "engine_receive_to_send_ms": percentiles(engine_ms),
        "_latencies": latency,
    }


STAGES = ["encode_ms", "decode_plus_lift_reusing_embedding_ms", "clean_plus_lift_ms", "segment_plus_lift_ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frame-step", type=int, default=2, help="in-process: every n-th frame of the sequence")
    parser.add_argument("--model", default="geometric", help="registry name (xrseg models list)")
    parser.add_argument("--out", default="pipeline_latency", help="result file name (bench/results/OUT.json)")
    args = parser.parse_args()
    path, frames, script = load_frames(DemoConfig(out=Path("unused")))
    runs_in, runs_ws, pooled_in, pooled_ws = [], [], {s: [] for s in STAGES}, []
    for run in range(args.runs):
        one = measure_in_process(frames[:: args.frame_step], args.model)
        for stage, values in one.pop("_raw").items():
            pooled_in[stage].extend(values)
        runs_in.append(one)
        ws_run = asyncio.run(measure_websocket(frames, script, fps=15.0, prompt_every=3, model=args.model))
        pooled_ws.extend(ws_run.pop("_latencies"))
        runs_ws.append(ws_run)
        print(f"run {run + 1}: segment+lift p50/p95 {one['segment_plus_lift_ms']['p50']}/"
              f"{one['segment_plus_lift_ms']['p95']} ms; websocket p50/p95 {ws_run['prompt_to_result_ms']['p50']}/"
              f"{ws_run['prompt_to_result_ms']['p95']} ms", flush=True)  # fmt: skip
    in_process = {**{k: v for k, v in runs_in[0].items() if k not in STAGES}, "runs": args.runs,
                  **{stage: percentiles(pooled_in[stage]) for stage in STAGES},
                  "per_run": [{stage: r[stage] for stage in STAGES} for r in runs_in]}  # fmt: skip
    ws = {"fps": 15.0, "prompt_every": 3, "runs": args.runs, "prompt_to_result_ms": percentiles(pooled_ws),
          "per_run": runs_ws}  # fmt: skip
    latencies = pooled_ws
    payload = {
        "model": args.model,
        "machine": machine(),
        "sequence": str(path) if path else "synthetic",
        "resolution": list(frames[0].size[::-1]),
        "segment_and_lift": in_process,
        "websocket_streaming": ws,
        "acceptance": {
            "segment_plus_lift_p95_ms": in_process["segment_plus_lift_ms"]["p95"],
            "segment_plus_lift_p95_limit_ms": 60,
            "websocket_prompt_to_result_p95_ms": ws["prompt_to_result_ms"]["p95"],
            "websocket_prompt_to_result_p95_limit_ms": 100,
        },
    }
    out = write_json(f"{args.out}.json", payload)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    stages = STAGES
    axes[0].bar([s.replace("_ms", "") for s in stages], [in_process[s]["p50"] for s in stages], label="p50")
    axes[0].bar([s.replace("_ms", "") for s in stages], [in_process[s]["p95"] - in_process[s]["p50"] for s in stages],
                bottom=[in_process[s]["p50"] for s in stages], alpha=0.5, label="p95")
    axes[0].axhline(60, color="r", ls="--", lw=1, label="60 ms target")
    axes[0].set_ylabel("ms")
    axes[0].set_title("segment + lift, 640x480, in process")
    axes[0].tick_params(axis="x", rotation=20)
    axes[0].legend()
    axes[1].hist(latencies, bins=30)
    axes[1].axvline(100, color="r", ls="--", lw=1, label="100 ms target")
    axes[1].set_xlabel("prompt-to-result ms")
    axes[1].set_title(f"WebSocket loopback, streaming {ws['fps']:.0f} fps ({args.runs} runs pooled)")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(RESULTS / f"{args.out}.png", dpi=110)
    print(f"wrote {out}")
    print(f"segment+lift p50/p95: {in_process['segment_plus_lift_ms']['p50']}/{in_process['segment_plus_lift_ms']['p95']} ms; "
          f"websocket prompt-to-result p50/p95: {ws['prompt_to_result_ms']['p50']}/{ws['prompt_to_result_ms']['p95']} ms")


if __name__ == "__main__":
    main()

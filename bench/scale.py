"""Scale-out: the engine on the local backend vs on Ray Serve with 1 and 2 decoder replicas.

    python -m bench.scale [--runs 3] [--prompts 150] [--hop 300] [--sessions 4] [--size 640x480]

Two measurements, in one process, against one throwaway single-machine Ray cluster
(`ray start --head`, CPU only; engine/remote/local_cluster.py):

1. The remote hop. One 640x480 frame is encoded on each side; then the same point prompt is decoded
   `--hop` times, one call at a time, by the in-process decoder (local) and by the remote one
   (`RemotePromptDecoder`: a direct actor call to the decoder replica holding the embedding, past
   Serve's router (engine/remote/direct.py) -> bit-packed masks back, the embedding passed by
   ObjectRef once and cached on the replica). The added latency is the difference of the p50s.
   Beside them, for reference: the same remote decode through the Serve handle (the path before
   direct calls, still taken when no replica is listed), an empty call to the decoder deployment
   through its handle (Serve's own floor) and an empty direct call to a replica's actor (Ray's).
   Arms alternate in blocks of 20 calls so all see the same machine load.
2. Throughput end to end. `--sessions` WebSocket clients, each with its own frame, send point prompts
   back to back (closed loop, each waits for its answer) to an engine on the local backend, then
   on the ray backend with 1 and with 2 decoder replicas (1 encoder replica each); `--prompts`
   answered prompts per arm and run: prompts/s and latency p50/p95 (client send -> result).
   The front-end does the same work in every arm (mask cleaning, 3D lift); only the decoder moves.

Runs repeat both, arms interleaved within each run. On this 2-core machine, shared with other jobs,
replicas do not add cores: the numbers say what the hop costs, not what a GPU cluster gains.
Writes scale.json and scale.png (provenance: commit, date, load).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.common import RESULTS, machine, percentiles, provenance, write_json
from engine.config import EngineConfig
from engine.core import PointPrompt, Prompt
from engine.pipeline import image_input
from engine.remote.config import DeploymentConfig, RayBackendConfig
from engine.remote.local_cluster import LocalRayHead
from engine.server import Engine
from engine.transport.websocket import WebSocketTransport
from models.interfaces import PromptInput
from models.registry import ModelSpec, build_model
from tests.conftest import block_frame

TOKEN = "bench"
ARMS = ("local", "ray-1", "ray-2")
HOP_ARMS = ("local", "ray", "ray-serve", "ping", "ping-direct")


def ray_config(address: str, decoders: int) -> RayBackendConfig:
    decoder = DeploymentConfig(replicas=decoders, num_cpus=0.5, max_batch_size=16, max_ongoing_requests=64)
    encoder = DeploymentConfig(replicas=1, num_cpus=0.5, max_batch_size=4, max_ongoing_requests=8)
    return RayBackendConfig(address=address, app_name=f"bench-r{decoders}", encoder=encoder, decoder=decoder)


def engine_config(arm: str, address: str, sessions: int) -> EngineConfig:
    base = EngineConfig(port=0, tokens=(TOKEN,), workers=max(2, sessions))
    if arm == "local":
        return base
    return replace(base, backend="ray", ray=ray_config(address, int(arm.split("-")[1])))


def measure_hop(address: str, calls: int, h: int, w: int) -> dict[str, list[float]]:
    """Decode latency (ms) of one prompt, in process vs over the remote hop, interleaved in blocks."""
    import ray

    from engine.remote.cluster import connect_ray_backend

    frame, _ = block_frame(1, h=h, w=w)
    local = build_model(ModelSpec("geometric"))
    remote = connect_ray_backend(engine_config("ray-1", address, 1)).model
    image = image_input(frame)
    embeddings = {"local": local.encoder.encode(image), "ray": remote.encoder.encode(image)}
    decoders = {"local": local.decoder, "ray": remote.decoder}
    prompt = PromptInput(np.array([[w * 3 // 8, h // 2]], np.float32), np.ones(1, np.int32))
    for arm in decoders:  # warm: first calls load kernels, fill the replica's embedding cache
        for _ in range(10):
            decoders[arm].predict(embeddings[arm], prompt)
    # The same remote decoder without its direct path: every prompt through the Serve handle.
    via_serve = copy.copy(decoders["ray"])
    via_serve.direct = None
    for _ in range(10):
        via_serve.predict(embeddings["ray"], prompt)
    ping = remote.decoder._handle.ping  # the bare hop: a replica method that does nothing
    replica = remote.decoder.direct.replicas.order(embeddings["ray"].data.key)[0]
    calls_of = {
        "local": lambda: decoders["local"].predict(embeddings["local"], prompt),
        "ray": lambda: decoders["ray"].predict(embeddings["ray"], prompt),
        "ray-serve": lambda: via_serve.predict(embeddings["ray"], prompt),
        "ping": lambda: ping.remote().result(),
        "ping-direct": lambda: ray.get(replica.actor.__ray_call__.remote(lambda _actor: True)),
    }
    times: dict[str, list[float]] = {arm: [] for arm in calls_of}
    block = 20
    for start in range(0, calls, block):
        arms = list(calls_of) if (start // block) % 2 == 0 else list(reversed(calls_of))
        for arm in arms:
            for _ in range(min(block, calls - start)):
                t0 = time.perf_counter()
                calls_of[arm]()
                times[arm].append((time.perf_counter() - t0) * 1e3)
    return times


async def measure_engine(config: EngineConfig, sessions: int, prompts: int, h: int, w: int) -> dict:
    """Closed-loop point prompts from `sessions` WebSocket clients until `prompts` are answered."""
    from clients.ws_client import XrsegClient

    async with Engine(config) as engine:
        transport = WebSocketTransport(engine, "127.0.0.1", 0)
        await transport.start()
        try:
            latencies: list[float] = []
            done = 0
            clients = [await XrsegClient.connect(transport.url, TOKEN) for _ in range(sessions)]
            try:
                frame, _ = block_frame(1, h=h, w=w)
                for c in clients:
                    await c.send_frame(frame)
                    await c.prompt(Prompt(1, 1, points=(PointPrompt(w * 3 // 8, h // 2),)), timeout=120)
                load0 = os.getloadavg()[0]
                t_start = time.perf_counter()

                async def loop(client: XrsegClient, offset: int) -> None:
                    nonlocal done
                    pid = 10 + offset * 1_000_000
                    while done < prompts:
                        pid += 1
                        x = w * 3 // 8 + (pid % 7) - 3
                        t0 = time.perf_counter()
                        await client.prompt(Prompt(pid, 1, points=(PointPrompt(x, h // 2),)), timeout=120)
                        latencies.append((time.perf_counter() - t0) * 1e3)
                        done += 1

                await asyncio.gather(*(loop(c, i) for i, c in enumerate(clients)))
                wall = time.perf_counter() - t_start
            finally:
                for c in clients:
                    await c.close()
        finally:
            await transport.stop()
    return {
        "prompts_per_s": round(len(latencies) / wall, 2),
        "latency_ms": percentiles(latencies),
        "load_avg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    runs = result["runs"]
    x = np.arange(len(ARMS))
    for ax, key, label in (
        (axes[0], "prompts_per_s", "prompts/s (end to end)"),
        (axes[1], "p95", "prompt latency p95 (ms)"),
    ):
        values = [
            [r["engine"][a]["prompts_per_s"] if key == "prompts_per_s" else r["engine"][a]["latency_ms"][key] for r in runs]
            for a in ARMS
        ]
        med = [float(np.median(v)) for v in values]
        lo = [m - min(v) for m, v in zip(med, values, strict=True)]
        hi = [max(v) - m for m, v in zip(med, values, strict=True)]
        ax.bar(x, med, yerr=[lo, hi], capsize=4, color=["#888", "#4a90d9", "#2a60a9"])
        ax.set_xticks(x, ARMS)
        ax.set_title(label)
    hop = [[r["hop"][a]["p50"] for r in runs] for a in HOP_ARMS]
    med = [float(np.median(v)) for v in hop]
    bars = np.arange(len(HOP_ARMS))
    axes[2].bar(bars, med, yerr=[[m - min(v) for m, v in zip(med, hop, strict=True)],
                                 [max(v) - m for m, v in zip(med, hop, strict=True)]], capsize=4,
                color=["#888", "#4a90d9", "#9ab", "#bbb", "#ddd"])  # fmt: skip
    axes[2].set_xticks(
        bars,
        ["decode\nin process", "decode\nremote", "decode\nvia Serve", "empty\nServe", "empty\ndirect"],
        fontsize=7,
    )
    axes[2].set_title(f"decode p50 (ms); added {result['summary']['hop_added_p50_ms']['median']:.2f} ms")
    p = result["provenance"]
    fig.suptitle(
        f"bench.scale: {result['sessions']} sessions, {result['size']}, {len(runs)} runs, "
        f"load {p.get('load_range', '?')}, {p['date']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarise(runs: list[dict]) -> dict:
    def spread(values: list[float]) -> dict:
        return {"median": round(float(np.median(values)), 3), "min": round(min(values), 3), "max": round(max(values), 3)}

    out: dict = {
        "hop_added_p50_ms": spread([r["hop"]["ray"]["p50"] - r["hop"]["local"]["p50"] for r in runs]),
        "hop_added_via_serve_p50_ms": spread(
            [r["hop"]["ray-serve"]["p50"] - r["hop"]["local"]["p50"] for r in runs]
        ),
        "hop_p50_ms": {a: spread([r["hop"][a]["p50"] for r in runs]) for a in HOP_ARMS},
        "hop_p95_ms": {a: spread([r["hop"][a]["p95"] for r in runs]) for a in HOP_ARMS},
    }
    for arm in ARMS:
        out[arm] = {
            "prompts_per_s": spread([r["engine"][arm]["prompts_per_s"] for r in runs]),
            "p50_ms": spread([r["engine"][arm]["latency_ms"]["p50"] for r in runs]),
            "p95_ms": spread([r["engine"][arm]["latency_ms"]["p95"] for r in runs]),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=150, help="answered prompts per arm and run (>= 100 for p95)")
    parser.add_argument("--hop", type=int, default=300, help="decoder calls per side and run")
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--size", default="640x480")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    import ray

    loads = [os.getloadavg()[0]]
    head = LocalRayHead(num_cpus=4)
    head.start()
    runs: list[dict] = []
    try:
        for run in range(args.runs):
            hop = measure_hop(head.address, args.hop, h, w)
            loads.append(os.getloadavg()[0])
            engine = {}
            order = ARMS if run % 2 == 0 else tuple(reversed(ARMS))
            for arm in order:
                config = engine_config(arm, head.address, args.sessions)
                engine[arm] = asyncio.run(measure_engine(config, args.sessions, args.prompts, h, w))
                loads.append(os.getloadavg()[0])
                print(f"run {run + 1} {arm}: {engine[arm]}", flush=True)
            runs.append({"hop": {a: percentiles(t) for a, t in hop.items()}, "engine": engine})
            print(f"run {run + 1} hop: {runs[-1]['hop']}", flush=True)
    finally:
        ray.shutdown()
        head.stop()
    result = {
        "what": "prompts/s and latency end to end (WebSocket, closed loop) on the local backend and on Ray Serve "
        "with 1 and 2 decoder replicas; decode latency in process vs over the remote hop",
        "sessions": args.sessions,
        "size": f"{w}x{h}",
        "prompts_per_arm_run": args.prompts,
        "hop_calls_per_side_run": args.hop,
        "model": "geometric",
        "cluster": "local single-machine Ray head (ray start --head --num-cpus=4), CPU only, loopback",
        "machine": machine(),
        "runs": runs,
        "summary": summarise(runs),
        "provenance": {**provenance(), "load_range": f"{min(loads):.1f}-{max(loads):.1f}"},
    }
    path = write_json("scale.json", result)
    plot(result, RESULTS / "scale.png")
    print(f"wrote {path} and scale.png: {result['summary']}")


if __name__ == "__main__":
    main()

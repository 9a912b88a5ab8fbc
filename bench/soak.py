"""`python -m bench.soak`: N sessions streaming for a long time; is anything growing?

The engine runs as `xrseg serve` in its own process (geometric model). N sessions (default 16:
half over loopback WebSocket, half over loopback WebRTC with a VP8 video track) each stream
640x480 RGB-D frames at 5-15 fps (spread over the sessions), with gaze samples on every frame
(answer mode "dwell" on the WebSocket, the unreliable gaze channel on WebRTC) and a point prompt
every 5th frame, whose send -> result latency is measured. Every 10 s the engine process's RSS and
open file descriptors are sampled, with every session's p50/p95 over that window.

Verdict: RSS and fds after warm-up (the first 20%, at least one sample) fitted by least squares;
"flat" when the 95% interval of the slope includes 0 or the growth over the run is < 5%; no
session starved when every session's p95 is within 2x of the median session's.
Writes bench/results/soak.json and soak.png, with the commit and the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib
import numpy as np
import psutil

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.common import RESULTS, machine, percentiles, write_json  # noqa: E402

TOKEN = "bench-soak"
REPO = Path(__file__).resolve().parent.parent
LIVINGROOM = REPO.parent / "shared" / "data" / "rgbd" / "livingroom1_micro"
SAMPLE_S = 10.0
_T95 = {
    1: 12.71,
    2: 4.30,
    3: 3.18,
    4: 2.78,
    5: 2.57,
    6: 2.45,
    8: 2.31,
    10: 2.23,
    15: 2.13,
    20: 2.09,
    30: 2.04,
}


@dataclass
class SessionLog:
    name: str
    transport: str
    fps: float
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (time, ms)
    prompts: int = 0
    errors: int = 0
    timeouts: int = 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def engine_process(http_port: int) -> Iterator[tuple[str, str, int]]:
    cmd = [sys.executable, "-m", "xrseg", "serve", "--port", "0", "--webrtc-port", str(http_port), "--loopback",
           "--token", TOKEN, "--log-level", "WARNING"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO
    )
    try:
        assert proc.stdout is not None
        ws = None
        for line in proc.stdout:
            ws = ws or (m.group(0) if (m := re.search(r"ws://[\d.]+:\d+", line)) else None)
            if ws and "WebRTC" in line:
                yield ws, f"http://127.0.0.1:{http_port}", proc.pid
                break
        else:
            raise RuntimeError("engine exited before listening")
    finally:
        proc.terminate()
        proc.wait(30)


def _frames(n: int = 30) -> list:
    if LIVINGROOM.is_dir():
        from clients.sources.folder import open_sequence

        seq = open_sequence(LIVINGROOM)
        return [seq[i] for i in range(min(n, len(seq)))]
    from tests.conftest import block_frame

    return [block_frame(frame_id=i, h=480, w=640)[0] for i in range(n)]


async def _ws_session(url: str, log: SessionLog, frames: list, stop_at: float) -> None:
    from clients.ws_client import EngineError, XrsegClient
    from engine.core import GazeSample, PointPrompt, Prompt
    from engine.protocol import ImageCodec, pack
    from engine.protocol import payloads as pl

    rgb = [
        pl.encode_image(f.rgb, ImageCodec.JPEG) for f in frames
    ]  # encoded once: the client is not what we measure
    depth = [pl.encode_depth(f.depth, pl.DepthCodec.RDZ) for f in frames]
    k = frames[0].intrinsics
    async with XrsegClient.connect(url, TOKEN, log.name) as client:
        fid = 0
        while time.time() < stop_at:
            t_next = time.perf_counter() + 1.0 / log.fps
            fid += 1
            i = fid % len(frames)
            header = {"type": "frame", "frame_id": fid, "width": k.width, "height": k.height, "capture_ts": time.time(),
                      "intrinsics": {"fx": k.fx, "fy": k.fy, "cx": k.cx, "cy": k.cy}, "depth_scale": frames[i].depth_scale,
                      "pose": frames[i].pose.matrix.ravel().tolist() if frames[i].pose is not None else None}  # fmt: skip
            await client.send_raw(pack(header, [("rgb", "jpeg", rgb[i]), ("depth", "rdz", depth[i])]))
            now = time.time()
            gaze = tuple(GazeSample(now - j / 120, 320 + 5 * math.sin(fid / 7), 240, 0.9) for j in range(8))
            await client.send_gaze(Prompt(10**6 + fid, fid, gaze=gaze))
            if fid % 5 == 0:
                await _measure(client, log, Prompt(fid, fid, points=(PointPrompt(320, 240),)), EngineError)
            await asyncio.sleep(max(0.0, t_next - time.perf_counter()))


async def _rtc_session(url: str, log: SessionLog, frames: list, stop_at: float) -> None:
    from clients.webrtc_client import RtcClientOptions, XrsegRtcClient
    from clients.ws_client import EngineError
    from engine.core import GazeSample, PointPrompt, Prompt

    options = RtcClientOptions(fps=log.fps, host_addresses=("127.0.0.1",), depth_every=5, keepalive_s=0.5)
    async with XrsegRtcClient.connect(url, TOKEN, log.name, options=options) as client:
        fid = 0
        while time.time() < stop_at:
            t_next = time.perf_counter() + 1.0 / log.fps
            fid += 1
            frame = replace(frames[fid % len(frames)], frame_id=fid, capture_ts=time.time())
            await client.send_frame(frame)
            now = time.time()
            gaze = tuple(GazeSample(now - j / 120, 320, 240, 0.9) for j in range(4))
            with contextlib.suppress(Exception):
                client.gaze_nowait(Prompt(10**6 + fid, fid, gaze=gaze)).add_done_callback(
                    lambda f: f.exception()
                )
            if fid % 5 == 0:
                await _measure(client, log, Prompt(fid, fid, points=(PointPrompt(320, 240),)), EngineError)
            await asyncio.sleep(max(0.0, t_next - time.perf_counter()))


async def _measure(client, log: SessionLog, prompt, engine_error: type) -> None:  # noqa: ANN001
    log.prompts += 1
    t0 = time.perf_counter()
    try:
        await client.prompt(prompt, 10.0)
        log.latencies.append((time.time(), (time.perf_counter() - t0) * 1000))
    except engine_error:
        log.errors += 1
    except (TimeoutError, ConnectionError):
        log.timeouts += 1


async def _sampler(pid: int, logs: list[SessionLog], samples: list[dict], stop_at: float, t0: float) -> None:
    proc = psutil.Process(pid)
    last = time.time()
    while time.time() + SAMPLE_S <= stop_at + 0.5:  # no sample while the sessions are closing
        await asyncio.sleep(SAMPLE_S)
        now = time.time()
        window = {}
        for log in logs:
            lat = [ms for t, ms in log.latencies if last <= t < now]
            window[log.name] = percentiles(lat)
        samples.append({"t": round(now - t0, 1), "rss_mb": round(proc.memory_info().rss / 2**20, 1),
                        "fds": proc.num_fds(), "sessions": window})  # fmt: skip
        last = now
        print(
            f"t={samples[-1]['t']:6.0f}s rss {samples[-1]['rss_mb']:7.1f} MB fds {samples[-1]['fds']:4d}",
            flush=True,
        )


def trend(t: list[float], y: list[float]) -> dict:
    """Least-squares slope (per minute) with its 95% interval, and growth over the fitted span."""
    n = len(t)
    if n < 3:
        return {"n": n, "slope_per_min": None, "ci95": None, "growth_pct": None, "verdict": "too short"}
    x, v = np.asarray(t) / 60.0, np.asarray(y, dtype=float)
    slope, intercept = np.polyfit(x, v, 1)
    resid = v - (slope * x + intercept)
    se = (
        math.sqrt(float(resid @ resid) / (n - 2) / float(((x - x.mean()) ** 2).sum()))
        if n > 2
        else float("inf")
    )
    tval = _T95[min((k for k in _T95 if k >= n - 2), default=30)]
    lo, hi = slope - tval * se, slope + tval * se
    growth = (v[-1] - v[0]) / v[0] * 100 if v[0] else 0.0
    flat = lo <= 0 <= hi or abs(growth) < 5.0
    return {"n": n, "slope_per_min": round(float(slope), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)],
            "growth_pct": round(float(growth), 2), "verdict": "flat" if flat else "growing"}  # fmt: skip


async def run(args: argparse.Namespace, ws_url: str, http_url: str, pid: int) -> dict:
    frames = await asyncio.to_thread(_frames)
    n_rtc = round(args.sessions * args.webrtc_share)
    fps_values = [5.0 + 10.0 * i / max(1, args.sessions - 1) for i in range(args.sessions)]
    logs = [
        SessionLog(f"s{i:02d}", "webrtc" if i < n_rtc else "websocket", fps_values[i])
        for i in range(args.sessions)
    ]
    t0 = time.time()
    stop_at = t0 + args.minutes * 60
    samples: list[dict] = []
    tasks = [
        (
            _rtc_session(http_url, log, frames, stop_at)
            if log.transport == "webrtc"
            else _ws_session(ws_url, log, frames, stop_at)
        )
        for log in logs
    ]
    results = await asyncio.gather(_sampler(pid, logs, samples, stop_at, t0), *tasks, return_exceptions=True)
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    warm = max(1, len(samples) // 5)
    fitted = samples[warm:]
    per_session = {log.name: {"transport": log.transport, "fps": round(log.fps, 1), **percentiles([ms for _, ms in log.latencies]),
                              "prompts": log.prompts, "errors": log.errors, "timeouts": log.timeouts} for log in logs}  # fmt: skip
    p95s = [s["p95"] for s in per_session.values() if s["p95"] is not None]
    median = float(np.median(p95s)) if p95s else None
    starved = [k for k, s in per_session.items() if s["p95"] is None or (median and s["p95"] > 2 * median)]
    return {
        "samples": samples,
        "per_session": per_session,
        "rss": trend([s["t"] for s in fitted], [s["rss_mb"] for s in fitted]),
        "fds": trend([s["t"] for s in fitted], [s["fds"] for s in fitted]),
        "median_session_p95_ms": median,
        "starved_sessions": starved,
        "client_failures": failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--webrtc-share", type=float, default=0.5, help="fraction of sessions over WebRTC")
    args = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    with engine_process(_free_port()) as (ws_url, http_url, pid):
        out = asyncio.run(run(args, ws_url, http_url, pid))
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    payload = {"bench": "soak", "commit": commit, "machine": machine(), "load_before": load_before,
               "load_after": [round(x, 2) for x in os.getloadavg()], "sessions": args.sessions, "minutes": args.minutes,
               "sample_s": SAMPLE_S, "runs": 1, **out,
               "note": "upper bounds when other work shares the machine"}  # fmt: skip
    write_json("soak.json", payload)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    ts = [s["t"] / 60 for s in out["samples"]]
    a1.plot(ts, [s["rss_mb"] for s in out["samples"]], label="RSS (MB)")
    a1b = a1.twinx()
    a1b.plot(ts, [s["fds"] for s in out["samples"]], color="tab:orange", label="open fds")
    a1.set_xlabel("minutes")
    a1.set_title(f"engine RSS {out['rss']['verdict']}, fds {out['fds']['verdict']}")
    for name in out["per_session"]:
        a2.plot(ts, [s["sessions"][name]["p95"] for s in out["samples"]], lw=0.8)
    a2.set_xlabel("minutes")
    a2.set_ylabel("prompt p95 per 10 s window (ms)")
    a2.set_title(f"{args.sessions} sessions; median p95 {out['median_session_p95_ms']} ms")
    fig.tight_layout()
    fig.savefig(RESULTS / "soak.png", dpi=120)
    print(
        f"RSS {out['rss']}\nfds {out['fds']}\nstarved {out['starved_sessions']}; wrote {RESULTS / 'soak.json'}"
    )


if __name__ == "__main__":
    main()

"""`python -m bench.webrtc`: the depth codec against PNG and zstd, and the WebRTC path end to end.

Writes bench/results/webrtc.json and bench/results/webrtc.png.

WebRTC section: the engine (geometric model) and its WebRTC transport run in this process; the
client runs in a second process (`--client`, spawned here), as a headset would, and both talk
over loopback only (ICE host candidates 127.0.0.1, no STUN). The client streams livingroom1_micro
(looped: 1500 frames = 100 s) at 640x480 and 15 fps (colour on the video track, VP8, fixed in
advance: `VIDEO_CODEC`; rdz depth with every prompted frame), prompts with the demo's scripted
gaze once a second (100 prompts a run), and records glass-to-mask latency per prompt: capture
timestamp on the client to result received on the client. `--runs` repeats the stream (2 by
default); p50/p95 come per run and pooled, each with a 95 % bootstrap interval (numpy, 10 000
resamples, percentile method). The server side reports frames
paired and dropped, the CPU time of its per-frame decode (YUV -> RGB and depth, on the worker
pool), and its process CPU per frame (everything: SCTP, DTLS, VP8 decode, model).

Depth codec section: every depth frame of the shared sequences (../shared/data/rgbd/*/depth), each
codec encoded and decoded frame by frame, codecs taken in turn for several rounds so that load
from other processes on the machine falls on all of them alike. Per frame we record the wall time
(perf_counter) and the CPU time of this thread (thread_time, which ignores time spent descheduled
on a shared machine) of encode and of decode, and report medians and p95. Ratio is raw bytes over
encoded bytes, summed over all frames.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import zstandard

from bench.common import provenance
from engine.protocol.depth_codec import DEPTH_CODEC, Backend, decode_depth, encode_depth

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "rgbd"
DEFAULT_OUT = REPO / "bench" / "results"


# ---------------------------------------------------------------------------------------------
# depth codec


@dataclass(frozen=True)
class DepthCodecCandidate:
    """A named lossless codec: encode (H, W) uint16 -> bytes, decode (bytes, H, W) -> (H, W) uint16."""

    name: str
    encode: Callable[[np.ndarray], bytes]
    decode: Callable[[bytes, int, int], np.ndarray]


@dataclass(frozen=True)
class CodecMeasurement:
    """One codec over all frames. Times are per frame in milliseconds."""

    name: str
    frames: int
    ratio: float
    mean_bytes: float
    encode_ms_p50: float
    decode_ms_p50: float
    roundtrip_ms_p50: float
    roundtrip_ms_p95: float
    roundtrip_cpu_ms_p50: float
    roundtrip_cpu_ms_p95: float
    lossless: bool


def _png_encode(depth: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", depth)
    if not ok:
        raise ValueError("cv2 could not encode the depth map as PNG")
    return buf.tobytes()


def _png_decode(data: bytes, height: int, width: int) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def _zstd_candidate(level: int) -> DepthCodecCandidate:
    def encode(depth: np.ndarray) -> bytes:
        return zstandard.ZstdCompressor(level=level).compress(np.ascontiguousarray(depth, "<u2"))

    def decode(data: bytes, height: int, width: int) -> np.ndarray:
        raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=2 * height * width)
        return np.frombuffer(raw, "<u2").reshape(height, width)

    return DepthCodecCandidate(f"zstd{level}", encode, decode)


def codec_candidates() -> list[DepthCodecCandidate]:
    """Ours (both back-ends), 16-bit PNG (cv2 default compression), plain zstd of the raw samples."""
    return [
        DepthCodecCandidate(DEPTH_CODEC, encode_depth, decode_depth),
        DepthCodecCandidate(f"{DEPTH_CODEC}-zstd", lambda d: encode_depth(d, Backend.ZSTD), decode_depth),
        DepthCodecCandidate("png", _png_encode, _png_decode),
        _zstd_candidate(1),
        _zstd_candidate(3),
    ]


def load_depth_frames(data_dir: Path, limit: int | None = None) -> list[np.ndarray]:
    """Every depth map (16-bit PNG or PGM) of every sequence under data_dir, (H, W) uint16 each."""
    paths = sorted(p for p in data_dir.glob("*/depth/*") if p.suffix.lower() in (".png", ".pgm"))
    if not paths:
        raise FileNotFoundError(
            f"no depth frames under {data_dir}/*/depth; pass --data with the shared rgbd folder"
        )
    frames = []
    for path in paths[:limit]:
        depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if depth is None or depth.dtype != np.uint16 or depth.ndim != 2:
            raise ValueError(f"{path} is not a single-channel 16-bit depth image")
        frames.append(depth)
    return frames


def measure_codecs(
    frames: Sequence[np.ndarray], candidates: Sequence[DepthCodecCandidate], rounds: int = 3
) -> list[CodecMeasurement]:
    """Encode and decode every frame with every candidate, `rounds` times, codecs in turn."""
    wall: dict[str, list[tuple[float, float]]] = {c.name: [] for c in candidates}
    cpu: dict[str, list[float]] = {c.name: [] for c in candidates}
    sizes: dict[str, int] = {c.name: 0 for c in candidates}
    lossless: dict[str, bool] = {c.name: True for c in candidates}
    for c in candidates:  # warm-up: imports, first-call allocations
        c.decode(c.encode(frames[0]), *frames[0].shape)
    for round_index in range(rounds):
        for c in candidates:
            for depth in frames:
                t0, c0 = time.perf_counter(), time.thread_time()
                data = c.encode(depth)
                t1 = time.perf_counter()
                back = c.decode(data, *depth.shape)
                t2, c2 = time.perf_counter(), time.thread_time()
                wall[c.name].append((t1 - t0, t2 - t1))
                cpu[c.name].append(c2 - c0)
                if round_index == 0:
                    sizes[c.name] += len(data)
                    lossless[c.name] &= bool(np.array_equal(back, depth))
    raw_bytes = sum(f.nbytes for f in frames)
    out = []
    for c in candidates:
        enc = np.array([w[0] for w in wall[c.name]]) * 1e3
        dec = np.array([w[1] for w in wall[c.name]]) * 1e3
        cpu_ms = np.array(cpu[c.name]) * 1e3
        out.append(
            CodecMeasurement(
                name=c.name,
                frames=len(frames),
                ratio=raw_bytes / sizes[c.name],
                mean_bytes=sizes[c.name] / len(frames),
                encode_ms_p50=float(np.median(enc)),
                decode_ms_p50=float(np.median(dec)),
                roundtrip_ms_p50=float(np.median(enc + dec)),
                roundtrip_ms_p95=float(np.percentile(enc + dec, 95)),
                roundtrip_cpu_ms_p50=float(np.median(cpu_ms)),
                roundtrip_cpu_ms_p95=float(np.percentile(cpu_ms, 95)),
                lossless=lossless[c.name],
            )
        )
    return out


def codec_section(measurements: Sequence[CodecMeasurement], data_dir: Path) -> dict:
    by_name = {m.name: m for m in measurements}
    ours, png = by_name[DEPTH_CODEC], by_name["png"]
    return {
        "data": str(data_dir),
        "chosen": DEPTH_CODEC,
        "codecs": {m.name: asdict(m) for m in measurements},
        "ratio_vs_png": ours.ratio / png.ratio,
        "speedup_vs_png_wall": png.roundtrip_ms_p50 / ours.roundtrip_ms_p50,
        "speedup_vs_png_cpu": png.roundtrip_cpu_ms_p50 / ours.roundtrip_cpu_ms_p50,
    }


def _print_codecs(section: dict) -> None:
    print(f"{'codec':8s} {'ratio':>6s} {'enc ms':>7s} {'dec ms':>7s} {'rt ms':>7s} {'rt cpu':>7s} lossless")
    for m in section["codecs"].values():
        print(
            f"{m['name']:8s} {m['ratio']:6.2f} {m['encode_ms_p50']:7.2f} {m['decode_ms_p50']:7.2f} "
            f"{m['roundtrip_ms_p50']:7.2f} {m['roundtrip_cpu_ms_p50']:7.2f} {m['lossless']}"
        )
    print(
        f"{section['chosen']}: {section['ratio_vs_png']:.2f}x PNG's ratio, "
        f"{section['speedup_vs_png_wall']:.1f}x faster (wall), {section['speedup_vs_png_cpu']:.1f}x (cpu)"
    )


# ---------------------------------------------------------------------------------------------
# WebRTC glass-to-mask

LOOPBACK = ("127.0.0.1",)
TOKEN = "bench-token"
VIDEO_CODEC = "VP8"
VIDEO_CODEC_WHY = (
    "chosen before measuring, not per run: VP8 is mandatory to implement for WebRTC browsers (RFC 7742) "
    "and aiortc encodes it in software everywhere; picking the faster of two runs would bias p95 down"
)
BOOTSTRAP_RESAMPLES = 10_000


def bootstrap_ci(
    values: Sequence[float], q: float, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> list[float]:
    """95 % percentile-bootstrap interval of the q-th percentile of `values` (numpy; no scipy here)."""
    v = np.asarray(values, np.float64)
    if v.size < 2:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    for start in range(0, resamples, 1000):  # in chunks: 1000 x n indices at a time
        idx = rng.integers(0, v.size, (min(1000, resamples - start), v.size))
        stats[start : start + len(idx)] = np.percentile(v[idx], q, axis=1)
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return [round(float(lo), 1), round(float(hi), 1)]


@dataclass(frozen=True)
class StreamSettings:
    """What the client process streams."""

    frames: int = 1500  # the 211-frame sequence looped: 100 prompts at one a second
    fps: float = 15.0
    prompt_every: int = 15  # one selection a second: what the engine sustains today (see README)
    video_codec: str = VIDEO_CODEC


async def run_client(url: str, settings: StreamSettings, sequence: Path) -> dict:
    """The client process: stream, prompt, and report what came back (runs with --client)."""
    from dataclasses import replace

    from clients.sources.folder import open_sequence
    from clients.webrtc_client import RtcClientOptions, XrsegRtcClient
    from clients.ws_client import EngineError
    from engine.core import GazeSample, Prompt
    from xrseg.demo.scripts import gaze_script_for

    seq = open_sequence(sequence)
    recorded_frames = [seq[i] for i in range(len(seq))]
    script = gaze_script_for(sequence, recorded_frames)
    n_rec = len(recorded_frames)
    frames = [replace(recorded_frames[i % n_rec], frame_id=i) for i in range(settings.frames)]  # looped
    options = RtcClientOptions(
        fps=settings.fps,
        video_codec=settings.video_codec,
        depth_every=settings.prompt_every,
        host_addresses=LOOPBACK,
    )
    futures: dict[int, asyncio.Future] = {}
    errors: list[str] = []
    async with XrsegRtcClient.connect(url, TOKEN, "bench", options=options) as client:
        cpu0, start = time.process_time(), time.perf_counter()
        for index, recorded in enumerate(frames):
            delay = start + index / settings.fps - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # the camera's clock
            frame = replace(recorded, capture_ts=time.time())
            await client.send_frame(frame)
            if frame.frame_id % settings.prompt_every == 0:
                gaze = script.gaze(index % n_rec, frame, frame.capture_ts) or GazeSample(
                    frame.capture_ts, 320.0, 240.0
                )
                futures[index] = client.prompt_nowait(
                    Prompt(prompt_id=index, frame_id=frame.frame_id, gaze=(gaze,))
                )
        glass_to_mask, transport, stages, on_own_frame = [], [], [], 0
        for index, future in futures.items():
            try:
                timed = await asyncio.wait_for(future, 60)
            except (EngineError, TimeoutError) as exc:
                errors.append(f"prompt {index}: {exc!r}")
                continue
            glass_to_mask.append((timed.received - timed.result.timestamps.capture) * 1000.0)
            stamps = timed.result.timestamps
            if stamps.receive is not None and stamps.send is not None:  # the transport's share, both ways
                transport.append((stamps.receive - stamps.capture + timed.received - stamps.send) * 1000.0)
            stages.append(
                {**stamps.durations_ms(), "back": (timed.received - (stamps.send or timed.received)) * 1000}
            )
            on_own_frame += timed.result.frame_id == frames[index].frame_id
        wall = time.perf_counter() - start
        video_bytes = 0
        for report in (await client.channel.pc.getStats()).values():
            if getattr(report, "type", "") == "outbound-rtp":
                video_bytes = report.bytesSent
        return {
            "frames_sent": len(frames),
            "prompts_sent": len(futures),
            "results": len(glass_to_mask),
            "results_on_their_own_frame": on_own_frame,
            "errors": errors,
            "glass_to_mask_ms": glass_to_mask,
            "transport_ms": transport,
            "stage_ms_p50": {
                k: float(np.median([st[k] for st in stages if k in st]))
                for k in (stages[0] if stages else {})
            },
            "stage_ms_per_prompt": [{k: round(v, 1) for k, v in st.items()} for st in stages],
            "video_frames_replaced_before_encode": client.channel.track.replaced
            if client.channel.track
            else 0,
            "video_fillers": client.channel.track.flushes if client.channel.track else 0,
            "video_kbit_per_s": video_bytes * 8 / wall / 1000,
            "data_channel_kbit_per_s": client.channel.bytes_sent * 8 / wall / 1000,
            "client_cpu_ms_per_frame": (time.process_time() - cpu0) * 1000 / len(frames),
            "stream_s": wall,
        }


async def measure_webrtc(settings: StreamSettings, sequence: Path) -> dict:
    """Serve an engine over WebRTC here, stream to it from a client process, collect both sides."""

    from engine.config import EngineConfig
    from engine.server import Engine
    from engine.transport.webrtc import WebRTCConfig, WebRTCTransport

    load_start = round(os.getloadavg()[0], 2)
    config = EngineConfig(tokens=(TOKEN,))
    async with Engine(config) as engine:
        transport = WebRTCTransport(engine, WebRTCConfig(port=0, host_addresses=LOOPBACK))
        await transport.start()
        try:
            usage0 = resource.getrusage(resource.RUSAGE_SELF)
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            args = [
                *(
                    sys.executable,
                    "-m",
                    "bench.webrtc",
                    "--client",
                    transport.url,
                    "--data",
                    str(sequence.parent),
                ),
                *("--frames", str(settings.frames), "--fps", str(settings.fps)),
                *("--prompt-every", str(settings.prompt_every), "--video-codec", settings.video_codec),
            ]
            proc = await asyncio.create_subprocess_exec(
                *args, cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE
            )
            peers: list[dict] = []
            reader = asyncio.create_task(proc.stdout.read())  # type: ignore[union-attr]
            while not (await asyncio.wait({reader}, timeout=2.0))[
                0
            ]:  # sample per-peer counters while it streams
                peers = [
                    await p.metrics() for p in list(transport.peers.values())
                ] or peers  # in-process only
            out = reader.result()
            await proc.wait()
            peers = list(transport.recently_closed) or peers  # final counters
            usage1 = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            await transport.stop()
    lines = out.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"bench client failed (exit code {proc.returncode}); its error is printed above")
    client = json.loads(lines[-1])
    peer = peers[-1] if peers else {}
    lat = np.array(client["glass_to_mask_ms"]) if client["glass_to_mask_ms"] else np.array([np.nan])
    server_cpu_s = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    return {
        "load_avg_1m": [load_start, round(os.getloadavg()[0], 2)],
        "glass_to_mask_ms_p50_ci95": bootstrap_ci(client["glass_to_mask_ms"], 50),
        "glass_to_mask_ms_p95_ci95": bootstrap_ci(client["glass_to_mask_ms"], 95),
        "video_codec": settings.video_codec,
        "frames": settings.frames,
        "fps": settings.fps,
        "prompt_every": settings.prompt_every,
        "glass_to_mask_ms_p50": float(np.percentile(lat, 50)),
        "glass_to_mask_ms_p95": float(np.percentile(lat, 95)),
        "glass_to_mask_ms_all": [round(v, 1) for v in client["glass_to_mask_ms"]],
        "transport_ms_p50": float(np.percentile(client["transport_ms"], 50))
        if client["transport_ms"]
        else None,
        "transport_ms_p95": float(np.percentile(client["transport_ms"], 95))
        if client["transport_ms"]
        else None,
        "frames_paired": peer.get("frames_paired"),
        "frames_not_paired": settings.frames - (peer.get("frames_paired") or 0),
        "metadata_dropped": peer.get("metadata_dropped"),
        "video_dropped": peer.get("video_dropped"),
        "metadata_latency_ms_p50": peer.get("metadata_latency_ms_p50"),
        "depth_metadata_latency_ms_p50": peer.get("depth_metadata_latency_ms_p50"),
        "video_latency_ms_p50": peer.get("video_latency_ms_p50"),
        "decode_cpu_ms_p50": peer.get("decode_ms_p50"),
        "decode_cpu_ms_p95": peer.get("decode_ms_p95"),
        "server_cpu_ms_per_frame": server_cpu_s * 1000 / settings.frames,
        "session": peer.get("session"),
        "client": {k: v for k, v in client.items() if k not in ("glass_to_mask_ms", "transport_ms")},
    }


def pooled(runs: list[dict]) -> dict:
    """All runs' prompts together (p50 / p95 with bootstrap intervals) and each run's own figures."""
    latencies = [v for r in runs for v in r["glass_to_mask_ms_all"]]
    return {
        "video_codec": runs[0]["video_codec"],
        "video_codec_why": VIDEO_CODEC_WHY,
        "n": len(latencies),
        "runs": len(runs),
        "glass_to_mask_ms_p50": float(np.percentile(latencies, 50)),
        "glass_to_mask_ms_p95": float(np.percentile(latencies, 95)),
        "glass_to_mask_ms_p50_ci95": bootstrap_ci(latencies, 50),
        "glass_to_mask_ms_p95_ci95": bootstrap_ci(latencies, 95),
        "glass_to_mask_ms_all": [v for r in runs for v in r["glass_to_mask_ms_all"]],
        "bootstrap": f"percentile method, {BOOTSTRAP_RESAMPLES} resamples, numpy",
        "load_avg_1m": [x for r in runs for x in r["load_avg_1m"]],
        "per_run": [{k: v for k, v in r.items() if k != "glass_to_mask_ms_all"} for r in runs],
        "provenance": provenance(),
    }


def _print_webrtc(section: dict) -> None:
    c = section["client"]
    print(
        f"{section['video_codec']}: glass-to-mask p50 {section['glass_to_mask_ms_p50']:.0f} ms "
        f"{section['glass_to_mask_ms_p50_ci95']}, p95 {section['glass_to_mask_ms_p95']:.0f} ms "
        f"{section['glass_to_mask_ms_p95_ci95']} load {section['load_avg_1m']} "
        f"(transport p50 {section['transport_ms_p50'] or 0:.0f}, "
        f"p95 {section['transport_ms_p95'] or 0:.0f} ms) over {c['results']}/{c['prompts_sent']} prompts "
        f"({c['results_on_their_own_frame']} on their own frame); frames paired {section['frames_paired']}"
        f"/{section['frames']}; decode cpu p50 {section['decode_cpu_ms_p50']} ms; server cpu/frame "
        f"{section['server_cpu_ms_per_frame']:.1f} ms; video {c['video_kbit_per_s']:.0f} kbit/s, "
        f"data {c['data_channel_kbit_per_s']:.0f} kbit/s"
    )


# ---------------------------------------------------------------------------------------------
# output


def _machine() -> dict:
    import os

    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}


def write_results(out_dir: Path, sections: dict) -> Path:
    """Merge sections into out_dir/webrtc.json (keeping sections this run did not measure)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "webrtc.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results.update(sections)
    results["machine"] = _machine()
    results["written_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results["provenance"] = provenance()
    path.write_text(json.dumps(results, indent=2) + "\n")
    _plot(results, out_dir / "webrtc.png")
    return path


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("depth_codec", "webrtc") if k in results]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, key in zip(axes[0], panels, strict=True):
        if key == "depth_codec":
            codecs = list(results[key]["codecs"].values())
            for m in codecs:
                ax.scatter(m["roundtrip_ms_p50"], m["ratio"], s=60)
                ax.annotate(
                    m["name"], (m["roundtrip_ms_p50"], m["ratio"]), textcoords="offset points", xytext=(6, 4)
                )
            ax.set_xscale("log")
            ax.set_xlabel("encode + decode, ms per 640x480 frame (median)")
            ax.set_ylabel("compression ratio")
            ax.set_title(f"lossless depth codecs, {codecs[0]['frames']} frames")
            ax.grid(True, alpha=0.3)
        else:
            _plot_latency(ax, results[key])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_latency(ax, section: dict) -> None:
    latencies = section.get("glass_to_mask_ms_all", [])
    if latencies:
        ax.hist(latencies, bins=40)
    for q in ("p50", "p95"):
        value = section.get(f"glass_to_mask_ms_{q}")
        if value is not None:
            ax.axvline(value, linestyle="--", color="k")
            ax.annotate(
                f"{q} {value:.0f} ms", (value, 0), textcoords="offset points", xytext=(4, 20), rotation=90
            )
    ax.set_xlabel("glass-to-mask latency, ms")
    ax.set_ylabel("prompts")
    ax.set_title(
        f"WebRTC loopback, 640x480, {section.get('video_codec')}: n {section.get('n')} x "
        f"{section.get('runs')} runs\np95 95% CI {section.get('glass_to_mask_ms_p95_ci95')} ms",
        fontsize=9,
    )


# ---------------------------------------------------------------------------------------------
# entry point


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.webrtc", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="folder of RGB-D sequences (shared/data/rgbd)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where webrtc.json and webrtc.png go")
    parser.add_argument("--rounds", type=int, default=3, help="passes over all frames per codec")
    parser.add_argument("--codec-only", action="store_true", help="only the depth codec comparison")
    parser.add_argument("--webrtc-only", action="store_true", help="only the WebRTC stream")
    parser.add_argument("--frames", type=int, default=StreamSettings.frames)
    parser.add_argument("--fps", type=float, default=StreamSettings.fps)
    parser.add_argument("--prompt-every", type=int, default=StreamSettings.prompt_every)
    parser.add_argument("--video-codec", default=VIDEO_CODEC, help="VP8 (the fixed default) or H264")
    parser.add_argument("--runs", type=int, default=2, help="WebRTC streams, one after another")
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)  # the spawned client process
    args = parser.parse_args(argv)
    settings = StreamSettings(args.frames, args.fps, args.prompt_every, args.video_codec)
    sequence = args.data / "livingroom1_micro"
    if args.client:
        print(json.dumps(asyncio.run(run_client(args.client, settings, sequence))))
        return

    sections: dict = {}
    if not args.webrtc_only:
        frames = load_depth_frames(args.data)
        sections["depth_codec"] = {
            **codec_section(measure_codecs(frames, codec_candidates(), args.rounds), args.data),
            "provenance": provenance(),
        }
        _print_codecs(sections["depth_codec"])
    if not args.codec_only:
        runs = []
        for _ in range(args.runs):
            runs.append(asyncio.run(measure_webrtc(settings, sequence)))
            _print_webrtc(runs[-1])
        sections["webrtc"] = pooled(runs)
        w = sections["webrtc"]
        print(
            f"pooled over {len(runs)} runs: p50 {w['glass_to_mask_ms_p50']:.0f} ms "
            f"{w['glass_to_mask_ms_p50_ci95']}, p95 {w['glass_to_mask_ms_p95']:.0f} "
            f"ms {w['glass_to_mask_ms_p95_ci95']} (n {w['n']})"
        )
    path = write_results(args.out, sections)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

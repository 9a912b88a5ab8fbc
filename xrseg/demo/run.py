"""Run the demo: the server `xrseg serve` runs (engine/app.py), in-process on loopback, and a
client streaming a sequence to it over WebSocket or WebRTC.

The demo is an app above the engine and the clients (xrseg/): it is the one place, besides the
command line, that uses both.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from clients.gaze_script import GazeScript
from clients.replies import TimedResult
from clients.session import ClientSession, Transport
from clients.streamer import StreamPlan, StreamReport, stream_sequence
from engine.app import ServeConfig, XrsegServer
from engine.config import EngineConfig
from engine.core import RGBDFrame
from engine.protocol import DepthCodec, ImageCodec
from engine.transport.webrtc import WebRTCConfig
from xrseg.demo.outputs import (
    fuse_segments,
    latency_table,
    render_overlay,
    write_contact_sheet,
    write_html,
    write_ply,
)
from xrseg.demo.scripts import gaze_script_for, synthetic_sequence

log = logging.getLogger(__name__)

SHARED_SEQUENCE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "rgbd" / "livingroom1_micro"


@dataclass(frozen=True)
class DemoConfig:
    out: Path
    sequence: Path | None = None  # None: the shared livingroom1_micro, or a synthetic scene without it
    synthetic: bool = False  # force the generated synthetic scene
    fps: float = 15.0
    prompt_every: int = 3
    max_frames: int | None = None
    overlays: int = 24  # overlays written (evenly spread over the results)
    engine: EngineConfig = EngineConfig(port=0)
    transport: Transport = Transport.WS
    webrtc: WebRTCConfig = WebRTCConfig(port=0, page=None)  # its ICE settings, when transport is WebRTC


def load_frames(config: DemoConfig) -> tuple[Path | None, list[RGBDFrame], GazeScript]:
    """Frames and gaze of the chosen sequence, or of a generated synthetic one when none is available."""
    path = config.sequence
    if path is None and SHARED_SEQUENCE.is_dir() and not config.synthetic:
        path = SHARED_SEQUENCE
    if path is None:
        frames, script = synthetic_sequence(config.max_frames or 90)
        return None, frames, script
    from clients.sources.folder import open_sequence

    seq = open_sequence(path)
    n = len(seq) if config.max_frames is None else min(len(seq), config.max_frames)
    frames = [seq[i] for i in range(n)]
    return path, frames, gaze_script_for(path, frames)


async def run_demo(config: DemoConfig) -> dict:
    out = config.out
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    (out / "segments").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    path, frames, script = await asyncio.to_thread(load_frames, config)
    token = secrets.token_urlsafe(12)
    webrtc = config.transport == Transport.WEBRTC
    serve = ServeConfig(
        replace(config.engine, host="127.0.0.1", port=0, tokens=(token,)),
        websocket=not webrtc,
        webrtc=replace(config.webrtc, host="127.0.0.1", port=0) if webrtc else None,
    )
    plan = StreamPlan(fps=config.fps, prompt_every=config.prompt_every)
    options = None
    if webrtc:  # colour on the video track, depth (rdz) with the prompted frames on the data channel
        from clients.webrtc_client import RtcClientOptions

        plan = replace(plan, rgb_codec=ImageCodec.VIDEO, depth_codec=DepthCodec.RDZ)
        options = RtcClientOptions(fps=config.fps, depth_every=config.prompt_every, host_addresses=("127.0.0.1",))
    results: list[tuple[int, TimedResult]] = []
    async with XrsegServer(serve) as server:
        url = server.webrtc.url if server.webrtc is not None else server.websocket.url  # type: ignore[union-attr]
        async with ClientSession.connect(url, token, "xrseg-demo", options=options) as client:
            with Progress(TextColumn("[bold]streaming"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[masks]} masks"), TimeElapsedColumn()) as bar:
                task = bar.add_task("frames", total=len(frames), masks=0)
                report = await stream_sequence(
                    client,
                    frames,
                    script,
                    plan,
                    on_result=lambda i, r: (results.append((i, r)), bar.update(task, masks=len(results))),
                    on_frame=lambda i: bar.update(task, advance=1),
                )
    results.sort(key=lambda item: item[0])
    summary = await asyncio.to_thread(write_outputs, out, path, frames, script, results, report, started, config.overlays)
    return summary


def write_outputs(
    out: Path,
    path: Path | None,
    frames: list[RGBDFrame],
    script: GazeScript,
    results: list[tuple[int, TimedResult]],
    report: StreamReport,
    started: float,
    overlay_count: int,
) -> dict:
    frame_by_id = {f.frame_id: f for f in frames}
    step = max(1, len(results) // overlay_count) if results else 1
    overlays: list[Path] = []
    by_target: dict[str, list] = {}
    for index, timed in results:
        target = script.target_at(index)
        name = target.name if target is not None else "gaze"
        by_target.setdefault(name, []).append(timed.result)
        seg = timed.result.segment
        if seg is not None and seg.status == "ok":
            write_ply(out / "segments" / f"prompt_{index:05d}.ply", seg.points)
    for index, timed in results[::step]:
        target = script.target_at(index)
        frame = frame_by_id[timed.result.frame_id]
        img = render_overlay(frame, timed.result, target.name if target else "gaze")
        p = out / "overlays" / f"frame_{timed.result.frame_id:05d}.png"
        cv2.imwrite(str(p), img)
        overlays.append(p)
    plys = []
    for name, target_results in by_target.items():
        points = fuse_segments(target_results)
        if len(points):
            p = out / f"object_{name.replace(' ', '_')}.ply"
            write_ply(p, points)
            plys.append(p)
    latency = {k: asdict(v) for k, v in latency_table([t for _, t in results]).items()}
    stats = report.stats
    summary = {
        "sequence": str(path) if path is not None else "synthetic",
        "frames_sent": report.frames_sent,
        "prompts_sent": report.prompts_sent,
        "results_received": len(report.results),
        "errors": len(report.errors),
        "frames_dropped": stats.frames_dropped if stats else None,
        "frames_decoded": stats.frames_decoded if stats else None,
        "segments_with_3d": sum(1 for _, t in results if t.result.segment is not None and t.result.segment.status == "ok"),
        "objects": sorted(by_target),
        "wall_s": round(time.perf_counter() - started, 2),
        "latency_ms": latency,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    write_contact_sheet(out / "contact_sheet.png", overlays)
    write_html(out / "index.html", summary, overlays, plys)
    return summary

"""`xrseg`: the command line (typer). Each command is a thin wrapper over a typed config."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from engine.system import SystemLibraryError, check_system_libraries

try:
    check_system_libraries()
except SystemLibraryError as exc:
    raise SystemExit(f"xrseg: {exc}") from None

from engine.config import EngineConfig  # noqa: E402  (after the check: it imports open3d)
from engine.logging_setup import configure_logging  # noqa: E402

T = TypeVar("T")

app = typer.Typer(help="xrseg: real-time streaming segmentation for AR/VR.", no_args_is_help=True, add_completion=False)
console = Console()


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for overlays, PLY segments, summary.json, index.html.")] = Path("out/demo"),
    sequence: Annotated[Path | None, typer.Option(help="RGB-D folder (Redwood, TUM or slambook layout).")] = None,
    synthetic: Annotated[bool, typer.Option(help="Stream a generated synthetic scene instead.")] = False,
    fps: Annotated[float, typer.Option(help="Frames per second to stream.")] = 15.0,
    prompt_every: Annotated[int, typer.Option(help="Send a gaze prompt every n-th frame.")] = 3,
    max_frames: Annotated[int | None, typer.Option(help="Stream at most this many frames.")] = None,
    model: Annotated[str, typer.Option(help="Segmentation backend (xrseg models list).")] = "geometric",
    checkpoint: Annotated[Path | None, typer.Option(help="Weights for backends that need them.")] = None,
    capture: Annotated[bool, typer.Option(help="3D object capture: track the chair, fuse a mesh, write OUT/capture/.")] = False,
    log_level: str = "WARNING",
) -> None:
    """Stream an RGB-D sequence to an in-process engine over a real WebSocket and save what comes back."""
    from engine.demo.run import DemoConfig, run_demo

    configure_logging(log_level)
    if capture:
        from engine.demo.capture import run_capture_demo

        engine_config = EngineConfig(port=0, model=model, checkpoint=checkpoint)
        result = _run_or_explain(run_capture_demo(out, None if synthetic else sequence, max_frames, engine_config, synthetic=synthetic))
        console.print_json(json.dumps(result))
        console.print(f"[green]wrote {out}/capture/: mesh.ply, mesh.obj, mesh.glb, view0-2.png, tracked_masks.png, coco/, store/")
        return
    config = DemoConfig(
        out=out,
        sequence=sequence,
        synthetic=synthetic,
        fps=fps,
        prompt_every=prompt_every,
        max_frames=max_frames,
        engine=EngineConfig(port=0, model=model, checkpoint=checkpoint),
    )
    summary = _run_or_explain(run_demo(config))
    console.print_json(json.dumps({k: v for k, v in summary.items() if k != "latency_ms"}))
    for stage, s in summary["latency_ms"].items():
        console.print(f"  {stage:>18}: p50 {s['p50']:7.1f} ms   p95 {s['p95']:7.1f} ms   (n={s['n']})")
    console.print(f"[green]wrote {out}/summary.json, {out}/index.html, {out}/contact_sheet.png, overlays/, segments/")


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    token: Annotated[list[str] | None, typer.Option(help="Accepted session token (repeatable). Required.")] = None,
    model: Annotated[str, typer.Option(help="Segmentation backend (xrseg models list).")] = "geometric",
    checkpoint: Annotated[Path | None, typer.Option(help="Weights for backends that need them.")] = None,
    device: str = "cpu",
    workers: int = 2,
    clip_checkpoint: Annotated[
        Path | None, typer.Option(help="CLIP weights for text prompts: open_clip folder, or weights file + --clip-arch.")
    ] = None,
    clip_arch: Annotated[str | None, typer.Option(help="open_clip architecture of a --clip-checkpoint file.")] = None,
    webrtc_port: Annotated[int, typer.Option(help="WebRTC signalling (HTTP offer, /health, /metrics); 0 for none.")] = 8766,
    log_level: str = "INFO",
) -> None:
    """Run the engine: WebSocket on ws://HOST:PORT and WebRTC signalling on http://HOST:WEBRTC_PORT.

    For STUN/TURN servers and other WebRTC settings use `xrseg webrtc serve`.
    """
    from engine.server import Engine
    from engine.transport.webrtc import WebRTCConfig, WebRTCTransport
    from engine.transport.websocket import WebSocketTransport

    configure_logging(log_level)
    if not token:
        raise typer.BadParameter("give at least one --token; clients send it in their hello message", param_hint="--token")
    config = EngineConfig(host=host, port=port, tokens=tuple(token), model=model, checkpoint=checkpoint, device=device, workers=workers,
                          clip_checkpoint=clip_checkpoint, clip_arch=clip_arch)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with Engine(config) as engine:
            transport = WebSocketTransport(engine)
            await transport.start()
            webrtc = WebRTCTransport(engine, WebRTCConfig(host, webrtc_port)) if webrtc_port else None
            if webrtc is not None:
                await webrtc.start()
            console.print(f"[green]xrseg engine ({engine.model.name}) on {transport.url}", soft_wrap=True)
            if webrtc is not None:
                console.print(f"[green]WebRTC offers to {webrtc.url}/webrtc/offer", soft_wrap=True)
            await stop.wait()
            if webrtc is not None:
                await webrtc.stop()
            await transport.stop()

    _run_or_explain(main())


@app.command()
def stream(
    sequence: Annotated[Path, typer.Argument(help="RGB-D folder (Redwood, TUM or slambook layout).")],
    url: str = "ws://127.0.0.1:8765",
    token: str = "",
    fps: float = 15.0,
    prompt_every: int = 3,
    mode: Annotated[str, typer.Option(help="Prompt with 'gaze' samples or 'click' points.")] = "gaze",
    max_frames: int | None = None,
) -> None:
    """Stream a recorded RGB-D sequence to a running engine with scripted gaze or clicks; print what comes back."""
    from clients.gaze_script import GazeScript, PixelAnchor
    from clients.sources.folder import open_sequence
    from clients.streamer import PromptMode, StreamPlan, stream_sequence
    from clients.ws_client import XrsegClient

    seq = open_sequence(sequence)
    frames = [seq[i] for i in range(len(seq) if max_frames is None else min(len(seq), max_frames))]
    k = frames[0].intrinsics
    script = GazeScript.from_anchors(frames, [PixelAnchor("centre", 0, k.width / 2, k.height / 2, 0, len(frames) - 1)])

    async def main() -> None:
        async with XrsegClient.connect(url, token, "xrseg-stream") as client:
            plan = StreamPlan(fps=fps, prompt_every=prompt_every, mode=PromptMode(mode))
            report = await stream_sequence(client, frames, script, plan)
        lat = sorted(r.latency_ms for r in report.results)
        console.print(f"sent {report.frames_sent} frames, {report.prompts_sent} prompts; {len(report.results)} results, "
                      f"{len(report.errors)} errors; engine stats {report.stats}")
        if lat:
            console.print(f"prompt-to-result p50 {lat[len(lat) // 2]:.1f} ms, max {lat[-1]:.1f} ms")

    asyncio.run(main())


def _run_or_explain(main: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; a model that cannot load ends the command with its message, not a traceback."""
    from models.interfaces import ModelError

    try:
        return asyncio.run(main)
    except ModelError as exc:
        console.print(f"[red]xrseg: {exc}")
        raise typer.Exit(2) from None


def _mount_sub_apps() -> None:
    """Sub-commands owned by other packages."""
    from clients.webrtc_cli import webrtc_app
    from models.cli import models_app

    app.add_typer(models_app, name="models", help="List, check and export model backends.")
    app.add_typer(webrtc_app, name="webrtc", help="Serve the WebRTC transport with its settings, or stream over it.")


_mount_sub_apps()


if __name__ == "__main__":
    app()

"""`xrseg`: the command line (typer). Each command is a thin wrapper over a typed config."""

from __future__ import annotations

import asyncio
import json
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
    port: Annotated[int, typer.Option(help="WebSocket port; 0 picks a free one.")] = 8765,
    token: Annotated[list[str] | None, typer.Option(help="Accepted plain session token (repeatable; one identity each).")] = None,
    token_secret_file: Annotated[
        Path | None, typer.Option(help="HMAC secret of signed, expiring tokens (mint them with `xrseg token`).")
    ] = None,
    model: Annotated[str, typer.Option(help="Segmentation backend (xrseg models list).")] = "geometric",
    checkpoint: Annotated[Path | None, typer.Option(help="Weights for backends that need them.")] = None,
    device: str = "cpu",
    workers: int = 2,
    clip_checkpoint: Annotated[
        Path | None, typer.Option(help="CLIP weights for text prompts: open_clip folder, or weights file + --clip-arch.")
    ] = None,
    clip_arch: Annotated[str | None, typer.Option(help="open_clip architecture of a --clip-checkpoint file.")] = None,
    webrtc_port: Annotated[int, typer.Option(help="HTTP: WebRTC offers, /health, /metrics (bearer token); 0 for none.")] = 8766,
    ws: Annotated[bool, typer.Option(help="Serve the WebSocket transport.")] = True,
    ice_server: Annotated[list[str] | None, typer.Option(help="STUN/TURN url, e.g. stun:host:3478 (repeatable).")] = None,
    ice_username: str | None = None,
    ice_credential: str | None = None,
    loopback: Annotated[bool, typer.Option(help="Gather ICE candidates on 127.0.0.1 only.")] = False,
    idle_timeout_s: Annotated[float, typer.Option(help="Close a WebRTC peer silent this long.")] = 10.0,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: serve wss:// and https://.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    admin_port: Annotated[int | None, typer.Option(help="Separate /health + /metrics bind without a token.")] = None,
    admin_host: Annotated[str, typer.Option(help="Address of the admin bind (keep it private).")] = "127.0.0.1",
    clip: Annotated[list[Path] | None, typer.Option(help="RGB-D folder the web page may stream (repeatable).",
                                                    exists=True, file_okay=False)] = None,
    cors_origin: Annotated[list[str] | None, typer.Option(help="Origin of a page elsewhere allowed to call the engine (repeatable).")] = None,
    backend: Annotated[str, typer.Option(help="Where the models run: local (this process) or ray (Ray Serve).")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster (host:port, auto, ray://...); none: a private local one.")] = None,
    ray_app: Annotated[str, typer.Option(help="Serve application name; front-ends with the same one share replicas.")] = "xrseg",
    encoder_replicas: Annotated[int, typer.Option(help="ray: image encoder replicas.")] = 1,
    decoder_replicas: Annotated[int, typer.Option(help="ray: prompt decoder replicas.")] = 1,
    encoder_gpus: Annotated[float, typer.Option(help="ray: GPUs (or a fraction) per encoder replica.")] = 0.0,
    decoder_gpus: Annotated[float, typer.Option(help="ray: GPUs (or a fraction) per decoder replica.")] = 0.0,
    log_level: str = "INFO",
) -> None:
    """Run the engine: WebSocket on ws://HOST:PORT, WebRTC signalling and /health, /metrics on
    http://HOST:WEBRTC_PORT (wss/https with --tls-cert/--tls-key). engine/app.py assembles it."""
    from engine.app import ServeConfig, TlsConfig, run_until_stopped
    from engine.auth import load_secret
    from engine.transport.web_page import WebPageConfig
    from engine.transport.webrtc import IceServer, WebRTCConfig

    configure_logging(log_level)
    secret = None
    if token_secret_file is not None:
        try:
            secret = load_secret(token_secret_file)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--token-secret-file") from None
    if not token and secret is None:
        raise typer.BadParameter(
            "give --token-secret-file (signed tokens) or at least one --token; clients send it in their hello",
            param_hint="--token",
        )
    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("give both --tls-cert and --tls-key", param_hint="--tls-cert")
    engine = EngineConfig(host=host, port=port, tokens=tuple(token or ()), token_secret=secret, model=model,
                          checkpoint=checkpoint, device=device, workers=workers, clip_checkpoint=clip_checkpoint,
                          clip_arch=clip_arch, backend=backend,
                          ray=_ray_config(ray_address, ray_app, encoder_replicas, decoder_replicas, encoder_gpus,
                                          decoder_gpus))  # fmt: skip
    servers = tuple(IceServer(url, ice_username, ice_credential) for url in ice_server or ())
    rtc = None
    if webrtc_port > 0:
        page = WebPageConfig(cors_origins=tuple(cors_origin or ()), clips=tuple(clip or ()))
        rtc = WebRTCConfig(host, webrtc_port, servers, ("127.0.0.1",) if loopback else None, idle_timeout_s=idle_timeout_s,
                           page=page)  # fmt: skip
    config = ServeConfig(
        engine, websocket=ws, webrtc=rtc, tls=TlsConfig(tls_cert, tls_key) if tls_cert and tls_key else None,
        admin_host=admin_host, admin_port=admin_port,
    )  # fmt: skip

    def ready(server: Any) -> None:
        for line in server.describe():
            console.print(f"[green]{line}", soft_wrap=True)
        if server.webrtc is not None and rtc is not None and rtc.page is not None and token:
            console.print(f"[green]web page: {server.webrtc.url}/#token={token[0]}", soft_wrap=True)

    try:
        _run_or_explain(run_until_stopped(config, ready))
    except ValueError as exc:  # a certificate that does not load
        console.print(f"[red]xrseg: {exc}")
        raise typer.Exit(2) from None


def _ray_config(address: str | None, app_name: str, encoders: int, decoders: int, encoder_gpus: float,
                decoder_gpus: float) -> Any:  # fmt: skip
    """The ray backend's settings from `xrseg serve` flags (defaults for batching and CPUs)."""
    from dataclasses import replace

    from engine.remote.config import RayBackendConfig

    base = RayBackendConfig()
    try:
        return RayBackendConfig(
            address=address, app_name=app_name,
            encoder=replace(base.encoder, replicas=encoders, num_gpus=encoder_gpus),
            decoder=replace(base.decoder, replicas=decoders, num_gpus=decoder_gpus),
        )  # fmt: skip
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--encoder-replicas/--decoder-replicas") from None


@app.command()
def token(
    secret_file: Annotated[Path, typer.Option(help="The engine's --token-secret-file.")],
    identity: Annotated[str, typer.Option(help="Who the token is for; the sessions it opens are theirs.")],
    ttl: Annotated[float, typer.Option(help="Seconds the token stays valid.")] = 3600.0,
) -> None:
    """Mint a signed, expiring session token (printed on stdout)."""
    from engine.auth import load_secret, mint_token

    try:
        typer.echo(mint_token(load_secret(secret_file), identity, ttl))
    except ValueError as exc:
        typer.echo(f"xrseg: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def stream(
    target: Annotated[str | None, typer.Argument(help="Folder or recording (folder, bag), camera serial (realsense) or index (webcam).")] = None,
    source: Annotated[str, typer.Option(help="folder | realsense | bag | openxr+realsense | webcam.")] = "folder",
    transport: Annotated[str | None, typer.Option(help="ws | webrtc (default: from --url, else ws).")] = None,
    url: Annotated[str | None, typer.Option(help="Engine address: ws://HOST:8765 or http://HOST:8766 (WebRTC).")] = None,
    token: str = "",
    fps: Annotated[float | None, typer.Option(help="Camera mode fps; recordings are paced at it (default: theirs).")] = None,
    width: int = 640,
    height: int = 480,
    prompt_every: Annotated[int, typer.Option(help="Prompt (gaze, or head gaze without eye tracking) every n-th frame.")] = 5,
    mode: Annotated[str, typer.Option(help="Prompt with 'gaze' samples or 'click' points.")] = "gaze",
    max_frames: int | None = None,
    gaze_file: Annotated[Path | None, typer.Option(help="Recorded gaze trace (CSV or JSON lines) to replay.")] = None,
    calibration: Annotated[Path | None, typer.Option(help="Camera-to-head calibration JSON (openxr+realsense).")] = None,
    reference_space: Annotated[str, typer.Option(help="OpenXR reference space: local | stage.")] = "local",
    spatial: Annotated[bool, typer.Option(help="RealSense spatial depth filter.")] = False,
    temporal: Annotated[bool, typer.Option(help="RealSense temporal depth filter.")] = False,
    hole_filling: Annotated[bool, typer.Option(help="RealSense hole-filling depth filter.")] = False,
    align: Annotated[bool, typer.Option(help="Align RealSense depth to colour.")] = True,
    video_codec: Annotated[str, typer.Option(help="WebRTC video codec: VP8 or H264.")] = "VP8",
    depth_every: Annotated[int | None, typer.Option(help="WebRTC: depth with every n-th frame (default: the prompted ones).")] = None,
    log_level: str = "WARNING",
) -> None:
    """Stream a device or recording to a running engine; print progress and answered prompts."""
    from clients.stream_cli import stream_command

    configure_logging(log_level)
    code = stream_command(**locals())
    if code:
        raise typer.Exit(code)


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

"""`xrseg webrtc ...`: serve the engine's WebRTC front door, or stream a sequence to it.

Mount on the main CLI with `app.add_typer(webrtc_app, name="webrtc")`.

    xrseg webrtc serve --token T                      # engine + WebSocket :8765 + WebRTC signalling :8766
    xrseg webrtc stream ../shared/data/rgbd/livingroom1_micro --token T
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

webrtc_app = typer.Typer(
    help="WebRTC transport: serve it, or stream an RGB-D sequence over it.", no_args_is_help=True
)

LOOPBACK_HELP = "Gather ICE candidates on 127.0.0.1 only (this machine talking to itself)."


@webrtc_app.command()
def serve(
    token: Annotated[list[str], typer.Option(help="Accepted session token (repeatable).")],
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP signalling port (offer, health, metrics).")] = 8766,
    ws_port: Annotated[int, typer.Option(help="WebSocket port beside it; 0 for none.")] = 8765,
    ice_server: Annotated[
        list[str] | None, typer.Option(help="STUN/TURN url, e.g. stun:host:3478 (repeatable).")
    ] = None,
    ice_username: str | None = None,
    ice_credential: str | None = None,
    loopback: Annotated[bool, typer.Option(help=LOOPBACK_HELP)] = False,
    model: str = "geometric",
    checkpoint: Path | None = None,
    idle_timeout_s: float = 10.0,
) -> None:
    """Alias of `xrseg serve` (engine/app.py assembles both): WebRTC front door + WebSocket beside it."""
    from engine.cli import serve as engine_serve

    engine_serve(
        host=host, port=ws_port, token=token, token_secret_file=None, model=model, checkpoint=checkpoint,
        device="cpu", workers=2, clip_checkpoint=None, clip_arch=None, webrtc_port=port, ws=ws_port != 0,
        ice_server=ice_server, ice_username=ice_username, ice_credential=ice_credential, loopback=loopback,
        idle_timeout_s=idle_timeout_s, tls_cert=None, tls_key=None, admin_port=None, admin_host="127.0.0.1",
        log_level="INFO",
    )  # fmt: skip


@webrtc_app.command()
def stream(
    sequence: Annotated[Path, typer.Argument(help="RGB-D folder (Redwood, TUM or slambook layout).")],
    url: str = "http://127.0.0.1:8766",
    token: str = "",
    fps: float = 15.0,
    prompt_every: Annotated[
        int, typer.Option(help="Prompt (scripted gaze) on every n-th frame; depth rides those.")
    ] = 15,
    video_codec: Annotated[str, typer.Option(help="VP8 or H264.")] = "VP8",
    max_frames: int | None = None,
    loopback: Annotated[bool, typer.Option(help=LOOPBACK_HELP)] = False,
) -> None:
    """Stream a recorded RGB-D sequence over WebRTC with scripted gaze; print what comes back."""
    from clients.gaze_script import GazeScript, PixelAnchor
    from clients.sources.folder import open_sequence
    from clients.streamer import StreamPlan, stream_sequence
    from clients.webrtc_client import RtcClientOptions, XrsegRtcClient
    from engine.protocol import DepthCodec, ImageCodec

    seq = open_sequence(sequence)
    frames = [seq[i] for i in range(len(seq) if max_frames is None else min(len(seq), max_frames))]
    k = frames[0].intrinsics
    script = GazeScript.from_anchors(
        frames, [PixelAnchor("centre", 0, k.width / 2, k.height / 2, 0, len(frames) - 1)]
    )
    options = RtcClientOptions(
        fps=fps,
        video_codec=video_codec,
        depth_every=prompt_every,
        host_addresses=("127.0.0.1",) if loopback else None,
    )
    plan = StreamPlan(
        fps=fps, prompt_every=prompt_every, rgb_codec=ImageCodec.VIDEO, depth_codec=DepthCodec.RDZ
    )

    async def main() -> None:
        async with XrsegRtcClient.connect(url, token, "xrseg-webrtc-stream", options=options) as client:
            report = await stream_sequence(client, frames, script, plan)  # type: ignore[arg-type]
            replaced = client.channel.track.replaced if client.channel.track is not None else 0
        lat = sorted(
            (r.received - r.result.timestamps.capture) * 1000
            for r in report.results
            if r.result.timestamps.capture
        )
        typer.echo(
            f"sent {report.frames_sent} frames, {report.prompts_sent} prompts; "
            f"{len(report.results)} results, "
            f"{len(report.errors)} errors; {replaced} frames replaced before encoding; engine {report.stats}"
        )
        if lat:
            typer.echo(f"glass-to-mask p50 {lat[len(lat) // 2]:.0f} ms, max {lat[-1]:.0f} ms")

    asyncio.run(main())

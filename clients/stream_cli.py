"""`xrseg stream`: its flags -> StreamConfig -> run_stream, with clean failures.

The command is the clients' own; the `xrseg` command line (xrseg/cli.py) mounts it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from clients.session import Transport
from clients.sources.base import DepthFilters, SourceOptions
from clients.stream import PromptMode, StreamConfig, explain, run_stream


def stream_command(
    target: str | None,
    source: str,
    transport: str | None,
    url: str | None,
    token: str,
    fps: float | None,
    width: int,
    height: int,
    prompt_every: int,
    mode: str,
    max_frames: int | None,
    gaze_file: Path | None,
    calibration: Path | None,
    reference_space: str,
    spatial: bool,
    temporal: bool,
    hole_filling: bool,
    align: bool,
    video_codec: str,
    depth_every: int | None = None,
    loopback: bool | None = None,
    **_: object,
) -> int:
    """Run the stream; print progress lines and a summary. Returns the exit code (0 ok, 2 failed)."""
    try:
        config = StreamConfig(
            source=source,
            options=SourceOptions(
                target=target,
                width=width,
                height=height,
                fps=fps,
                filters=DepthFilters(spatial, temporal, hole_filling),
                align=align,
                gaze_file=gaze_file,
                calibration=calibration,
                reference_space=reference_space,
                max_frames=max_frames,
            ),
            url=url,
            token=token,
            transport=Transport(transport) if transport else None,
            prompt_every=max(1, prompt_every),
            depth_every=max(1, depth_every) if depth_every else None,
            mode=PromptMode(mode),
            video_codec=video_codec,
            loopback=loopback,
        )
        config.resolved()
    except ValueError as exc:
        print(f"xrseg stream: {exc}", file=sys.stderr)
        return 2
    try:
        summary = asyncio.run(run_stream(config, lambda line: print(line, flush=True)))
    except KeyboardInterrupt:
        print("xrseg stream: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure gets one line; an unexpected one keeps its traceback
        message = explain(exc, config)
        if message is None:
            raise
        print(f"xrseg stream: {message}", file=sys.stderr)
        return 2
    print(f"done: {summary.line()}")
    for result in summary.results[:3] + summary.results[3:][-2:]:
        r = result.result
        best = r.masks[r.best] if r.masks else None
        area = int(best.mask.counts[1::2].sum()) if best is not None else 0
        print(
            f"  prompt {r.prompt_id} on frame {r.frame_id}: {len(r.masks)} masks"
            + (f", best score {best.score:.2f}, {area} px" if best is not None else "")
            + f", {result.latency_ms:.0f} ms"
        )
    for failure in summary.failed[:3]:
        print(f"  failed: {failure}")
    if summary.dropped:
        print(f"  dropped, e.g.: {summary.dropped[0]}")
    return 0 if summary.prompts_sent == 0 or summary.results else 2


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
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    code = stream_command(**locals())
    if code:
        raise typer.Exit(code)

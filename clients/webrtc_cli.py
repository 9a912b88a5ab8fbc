"""`xrseg webrtc stream`: stream a recorded RGB-D sequence to an engine over WebRTC.

Kept for its short form; it is `xrseg stream FOLDER --transport webrtc` with a prompt every 15th
frame and depth on the prompted frames, so it fails the same way: one line, exit code 2. The
`xrseg` command line (xrseg/cli.py) mounts it beside `xrseg webrtc serve`, the engine's alias.

    xrseg webrtc stream ../shared/data/rgbd/livingroom1_micro --token T
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clients.stream_cli import stream_command

LOOPBACK_HELP = "Gather ICE candidates on 127.0.0.1 only (default: when --url is this machine)."


def stream(
    sequence: Annotated[Path, typer.Argument(help="RGB-D folder (Redwood, TUM or slambook layout).")],
    url: str = "http://127.0.0.1:8766",
    token: str = "",
    fps: float = 15.0,
    prompt_every: Annotated[
        int, typer.Option(help="Prompt (head gaze) on every n-th frame; depth rides those.")
    ] = 15,
    video_codec: Annotated[str, typer.Option(help="VP8 or H264.")] = "VP8",
    max_frames: int | None = None,
    loopback: Annotated[bool | None, typer.Option("--loopback/--no-loopback", help=LOOPBACK_HELP)] = None,
) -> None:
    """Stream a recorded RGB-D sequence over WebRTC; print what comes back."""
    code = stream_command(
        target=str(sequence), source="folder", transport="webrtc", url=url, token=token, fps=fps, width=640,
        height=480, prompt_every=prompt_every, mode="gaze", max_frames=max_frames, gaze_file=None, calibration=None,
        reference_space="local", spatial=False, temporal=False, hole_filling=False, align=True,
        video_codec=video_codec, depth_every=prompt_every, loopback=loopback,
    )  # fmt: skip
    if code:
        raise typer.Exit(code)

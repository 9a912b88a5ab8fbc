"""The flags of `xrseg demo`: its own (what to stream, how fast, where to write) plus the model
and ICE flags every command that starts an engine shares (engine/options.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from clients.session import Transport
from engine.options import IceOptions, ModelOptions
from xrseg.demo.run import DemoConfig


@dataclass(frozen=True)
class DemoOptions:
    out: Annotated[Path, typer.Option(help="Folder for overlays, PLY segments, summary.json, index.html.")] = Path("out/demo")
    sequence: Annotated[Path | None, typer.Option(help="RGB-D folder (Redwood, TUM or slambook layout).")] = None
    synthetic: Annotated[bool, typer.Option(help="Stream a generated synthetic scene instead.")] = False
    fps: Annotated[float, typer.Option(help="Frames per second to stream.")] = 15.0
    prompt_every: Annotated[int, typer.Option(help="Send a gaze prompt every n-th frame.")] = 3
    max_frames: Annotated[int | None, typer.Option(help="Stream at most this many frames.")] = None
    transport: Annotated[Transport, typer.Option(help="Stream over the WebSocket (ws) or WebRTC (webrtc).")] = Transport.WS
    capture: Annotated[bool, typer.Option(help="3D object capture: track the chair, fuse a mesh, write OUT/capture/.")] = False
    model: ModelOptions = field(default_factory=ModelOptions)
    ice: IceOptions = field(default_factory=IceOptions)

    def demo_config(self) -> DemoConfig:
        return DemoConfig(
            out=self.out, sequence=self.sequence, synthetic=self.synthetic, fps=self.fps,
            prompt_every=self.prompt_every, max_frames=self.max_frames, engine=self.model.engine_config(port=0),
            transport=self.transport, webrtc=self.ice.webrtc_config("127.0.0.1", 0, page=None),
        )  # fmt: skip

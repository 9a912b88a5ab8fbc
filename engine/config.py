"""Engine settings, in one frozen dataclass the CLI fills from flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.lift import LiftConfig
from engine.protocol import Limits


@dataclass(frozen=True)
class EngineConfig:
    """Everything an Engine needs to start.

    Attributes:
        tokens: session tokens accepted in Hello; empty means "accept any" (local demos only).
        model: registry name of the segmentation backend (`xrseg models list`).
        checkpoint: weights file for backends that need one.
        workers: threads for image decode, encode, decode and lift, shared by all sessions.
        frame_window: frames a session keeps (undecoded) so prompts can refer to recent ones;
            newer frames push out older ones, and those never used are counted as dropped.
        prompt_queue: prompts a session may have waiting; the oldest is dropped (and reported)
            when a new one arrives on a full queue.
        session_linger_s: how long a disconnected session waits to be resumed before it is freed.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    tokens: tuple[str, ...] = ()
    model: str = "geometric"
    checkpoint: Path | None = None
    device: str = "cpu"
    workers: int = 2
    frame_window: int = 4
    prompt_queue: int = 8
    session_linger_s: float = 30.0
    hello_timeout_s: float = 10.0
    limits: Limits = field(default_factory=Limits)
    lift: LiftConfig = field(default_factory=LiftConfig)

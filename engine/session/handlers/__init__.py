"""One handler per prompt kind, in one table; background work in priority order.

A new prompt kind is a new handler and a row in `HANDLERS`, not a new branch in the session.
Handlers get the prompt and the session's parts (engine/session/parts.py) and return what to
send (`Reply` / `Failure`); they never touch the transport, and they raise domain errors
(engine/errors.py) that the session maps to wire codes in one place (engine/session/wire.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol

from engine.protocol import PromptMessage
from engine.session.handlers.capture import CaptureControl
from engine.session.handlers.everything import EverythingHandler
from engine.session.handlers.gaze import (
    GazeHandler,
    GazeSpeculation,
    gaze_only,
    resume_deferred_speculation,
)
from engine.session.handlers.spatial import SpatialHandler
from engine.session.handlers.text import TextHandler
from engine.session.handlers.track import TrackStep, cancel_tracking
from engine.session.parts import Outgoing, SessionParts
from engine.session.prompt_queue import PromptJob

__all__ = [
    "BACKGROUND",
    "CAPTURE",
    "HANDLERS",
    "PromptKind",
    "cancel_tracking",
    "gaze_only",
    "prompt_kind",
    "resume_deferred_speculation",
]


class PromptKind(StrEnum):
    SPATIAL = "spatial"  # points, box, rough mask
    GAZE = "gaze"  # gaze samples (alone or with points): dwell, held answers
    TEXT = "text"  # voice text ranked by CLIP
    EVERYTHING = "everything"  # every object of the frame


class PromptHandler(Protocol):
    async def handle(self, job: PromptJob, parts: SessionParts) -> list[Outgoing]: ...


class BackgroundWork(Protocol):
    """Work the session does on its own when no prompt is waiting for a slot."""

    def due(self, parts: SessionParts) -> bool: ...

    async def run(self, parts: SessionParts) -> list[Outgoing]: ...


HANDLERS: Mapping[PromptKind, PromptHandler] = MappingProxyType(
    {
        PromptKind.SPATIAL: SpatialHandler(),
        PromptKind.GAZE: GazeHandler(),
        PromptKind.TEXT: TextHandler(),
        PromptKind.EVERYTHING: EverythingHandler(),
    }
)
"""Handlers are stateless (their state is the session's parts), so one table serves every session."""

CAPTURE = CaptureControl()
"""Capture messages (start / stop / cancel / status) are not prompts: their own handler."""

BACKGROUND: tuple[BackgroundWork, ...] = (GazeSpeculation(), TrackStep())
"""In priority order: a speculative decode at the user's fixation, then a tracking step."""


def prompt_kind(message: PromptMessage) -> PromptKind:
    prompt = message.prompt
    if message.everything is not None:
        return PromptKind.EVERYTHING
    if prompt.text:
        return PromptKind.TEXT
    if prompt.gaze:
        return PromptKind.GAZE
    return PromptKind.SPATIAL

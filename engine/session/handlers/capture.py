"""3D object capture: start / stop / cancel / status of a tracked object's capture, and each
tracking step's mask fused into it (engine/capture/handler.py does the work).

A session gets its CaptureHandler on its first capture message (so a session that never captures
opens no store). Capture replies are ready protocol messages (`Notice`); a CaptureError becomes a
`Failure` and gets its wire code in engine/session/wire.py like every other domain error.
"""

from __future__ import annotations

import numpy as np

from engine.capture.config import CaptureError
from engine.capture.handler import CaptureHandler, CaptureReply
from engine.core import RGBDFrame
from engine.errors import UnsupportedPrompt
from engine.protocol.capture import CaptureRequest
from engine.session.parts import Failure, Notice, Outgoing, SessionParts


class CaptureControl:
    async def handle(self, request: CaptureRequest, parts: SessionParts) -> list[Outgoing]:
        handler = await _handler(parts, request.prompt_id)
        replies = await handler.request(request, tracked=request.prompt_id in parts.tracks)
        return outgoing(replies, request.prompt_id)


async def capture_tracked(
    parts: SessionParts, prompt_id: int, frame: RGBDFrame, mask: np.ndarray
) -> list[Outgoing]:
    """Fuse one tracking step's mask into the object's capture, if it is being captured."""
    capture = parts.capture
    if capture is None or prompt_id not in capture.capturing:
        return []
    return outgoing(await capture.on_tracked_frame(prompt_id, frame, mask), prompt_id)


def outgoing(replies: list[CaptureReply], prompt_id: int) -> list[Outgoing]:
    return [Failure(r, prompt_id) if isinstance(r, CaptureError) else Notice(r) for r in replies]


async def _handler(parts: SessionParts, prompt_id: int) -> CaptureHandler:
    if parts.capture is None:
        open_store = parts.context.capture_store
        if open_store is None:
            raise UnsupportedPrompt(
                "this engine was started without a capture store; captures are off", prompt_id
            )
        parts.capture = CaptureHandler(parts.context.executor, await open_store(), parts.config.capture)
    return parts.capture

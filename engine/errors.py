"""Domain errors: what went wrong with one work item, in the engine's own words.

Why not wire codes: the pipeline, the schedulers and the handlers should not know how a client
hears of a failure (a WebSocket error message, a WebRTC data-channel message, an HTTP status).
They raise these; the session maps them to the protocol's error codes in one place
(engine/session/wire.py). `ref_id` is the id of the prompt (or frame) the error belongs to, when
the raiser knows it; the session fills it in otherwise.
"""

from __future__ import annotations


class EngineError(Exception):
    """One work item failed for a reason the client can act on; the session goes on."""

    def __init__(self, message: str, ref_id: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.ref_id = ref_id


class BadPrompt(EngineError):
    """The prompt is malformed for this frame: outside the image, empty, wrong sizes."""


class UnsupportedPrompt(EngineError):
    """The prompt is valid but this engine cannot answer it (e.g. text without a text encoder)."""


class NoFrame(EngineError):
    """A prompt arrived before any frame it could refer to."""


class NoDepth(EngineError):
    """The work needs depth (a depth-needing encoder, a 3D capture) and the frame has none usable."""


class Overloaded(EngineError):
    """A bounded queue or limit refused the item; it was dropped and counted."""


class SessionClosed(EngineError):
    """The session was closed (bye, reaped, engine stopping); open a new one."""


class BackendUnavailable(Overloaded):
    """The remote model backend could not answer: its replica died and the retry failed too, it
    timed out, or the keyframe's embedding was lost with its node. Transient: send the item again
    (the wire code is `overloaded`, as for other work the engine could not take now)."""

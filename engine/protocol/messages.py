"""Schema v1: every message that crosses a transport, as typed dataclasses.

Names follow the words of the field (frame, prompt, mask, segment) and are the same in the
Python client, the browser client and docs/protocol.md. Transports never build these by hand:
they call engine.protocol.codec.encode_message / decode_message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from engine.core import Prompt, RGBDFrame, SegmentationResult
from engine.protocol.errors import ErrorCode

PROTOCOL_VERSION = 1


class MessageType(StrEnum):
    # client -> engine
    HELLO = "hello"
    FRAME = "frame"
    PROMPT = "prompt"
    PING = "ping"
    BYE = "bye"
    # engine -> client
    WELCOME = "welcome"
    RESULT = "result"
    ERROR = "error"
    PONG = "pong"
    STATS = "stats"


@dataclass(frozen=True)
class Limits:
    """Sizes the engine accepts; sent in Welcome so clients can check before sending."""

    max_message_bytes: int = 8 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    max_width: int = 1920
    max_height: int = 1440
    max_points: int = 64
    max_gaze_samples: int = 256
    max_text_chars: int = 256


@dataclass(frozen=True)
class Hello:
    """First message of a session: proves the client may talk to this engine."""

    token: str
    client: str = ""
    protocol_version: int = PROTOCOL_VERSION
    session_id: str | None = None  # resume an existing session (reconnect)


@dataclass(frozen=True)
class Welcome:
    session_id: str
    model: str
    limits: Limits = field(default_factory=Limits)
    protocol_version: int = PROTOCOL_VERSION


@dataclass(frozen=True, eq=False)
class FrameMessage:
    frame: RGBDFrame


@dataclass(frozen=True, eq=False)
class PromptMessage:
    prompt: Prompt


@dataclass(frozen=True, eq=False)
class ResultMessage:
    result: SegmentationResult


@dataclass(frozen=True)
class ErrorMessage:
    """Sent to the one client whose message failed; ref_id is its frame_id or prompt_id."""

    code: ErrorCode
    message: str
    ref_id: int | None = None


@dataclass(frozen=True)
class Ping:
    t: float


@dataclass(frozen=True)
class Pong:
    t: float  # echoed from Ping
    server_t: float


@dataclass(frozen=True)
class Bye:
    reason: str = ""


@dataclass(frozen=True)
class SessionStats:
    """Per-session counters; sent on request (ping) and at bye."""

    frames_received: int = 0
    frames_dropped: int = 0
    frames_decoded: int = 0
    prompts_received: int = 0
    prompts_answered: int = 0
    prompts_dropped: int = 0
    errors_sent: int = 0


@dataclass(frozen=True)
class StatsMessage:
    stats: SessionStats


Message = (
    Hello
    | Welcome
    | FrameMessage
    | PromptMessage
    | ResultMessage
    | ErrorMessage
    | Ping
    | Pong
    | Bye
    | StatsMessage
)

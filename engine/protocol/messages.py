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
    CANCEL = "cancel"  # stop tracking a prompt's object (schema v1 addition, see docs/protocol.md)
    CAPTURE = "capture"  # 3D object capture: start/stop/cancel/status (engine/protocol/capture.py)
    # engine -> client
    WELCOME = "welcome"
    RESULT = "result"
    ERROR = "error"
    PONG = "pong"
    STATS = "stats"
    CAPTURE_PROGRESS = "capture_progress"
    CAPTURE_SAVED = "capture_saved"


SESSION_REQUESTS = frozenset(
    {MessageType.PROMPT, MessageType.CANCEL, MessageType.PING, MessageType.CAPTURE, MessageType.BYE}
)
"""What a client may send, besides frames, once its session is open (anything else is refused undecoded)."""


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


class AnswerMode(StrEnum):
    """When a prompt is answered (header field "answer"; absent means "now", as v1 always did)."""

    NOW = "now"  # one result for this prompt, as soon as possible
    DWELL = "dwell"  # gaze stream: feed the fixation detector; a result only if a dwell completes


class ResultKind(StrEnum):
    """Why a result was sent (header field "kind"; absent means "answer")."""

    ANSWER = "answer"  # the answer to a prompt
    DWELL = "dwell"  # a gaze dwell selection completed during this prompt's samples
    TRACK = "track"  # the tracked object of this prompt_id, on a newer frame
    EVERYTHING = "everything"  # every mask of the frame (prompt item "everything")


@dataclass(frozen=True)
class EverythingRequest:
    """Prompt item {"type": "everything"}: SAM-style automatic masks from a point grid.

    Thresholds left None use the engine's (SAM's defaults: predicted IoU 0.88, stability 0.95).
    """

    points_per_side: int = 32
    pred_iou_thresh: float | None = None
    stability_score_thresh: float | None = None


@dataclass(frozen=True, eq=False)
class PromptMessage:
    """A prompt plus how to answer it.

    track: keep segmenting the selected object on every new frame (results of kind "track" with
    this prompt_id) until a `cancel`. answer: see AnswerMode. everything: answer with every mask.
    """

    prompt: Prompt
    track: bool = False
    answer: AnswerMode = AnswerMode.NOW
    everything: EverythingRequest | None = None


@dataclass(frozen=True, eq=False)
class ResultMessage:
    """A result; kind says why it was sent, mapping how its masks reached frame_id's pixels
    from the keyframe (identity, reprojection, rotation or shift; engine/mapping.py)."""

    result: SegmentationResult
    kind: ResultKind = ResultKind.ANSWER
    mapping: str = "identity"


@dataclass(frozen=True)
class Cancel:
    """Stop tracking the object of prompt_id (None: every tracked object of the session)."""

    prompt_id: int | None = None


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
    keyframes_encoded: int = 0  # keyframes computed for this session (prompt, motion, age)
    prompts_waited_for_encode: int = 0  # prompts that found no usable embedding and waited
    speculative_decodes: int = 0  # decodes at a gaze fixation before anyone asked
    speculative_hits: int = 0  # prompts / dwell selections answered from one
    dwell_selections: int = 0
    track_results: int = 0
    replies_dropped: int = 0  # replies not sent because the client did not read them


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
    | Cancel
)

"""Error codes every transport reports to the client that caused them."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Stable, machine-readable reasons. The message beside each says what to do."""

    MALFORMED = "malformed"  # bytes are not a v1 message
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_TYPE = "unknown_type"  # message type not in schema v1
    INVALID_FIELD = "invalid_field"  # a field is missing, of the wrong type, or out of range
    TOO_LARGE = "too_large"  # message exceeds the negotiated size limit
    BAD_IMAGE = "bad_image"  # payload does not decode, or sizes disagree
    BAD_DEPTH = "bad_depth"  # depth does not decode, mismatches colour, or has no valid sample
    UNKNOWN_PROMPT = "unknown_prompt"  # prompt item type not in schema v1
    BAD_PROMPT = "bad_prompt"  # outside the image, empty, malformed
    UNSUPPORTED_PROMPT = "unsupported_prompt"  # valid, but the loaded model cannot answer it
    NO_FRAME = "no_frame"  # a prompt arrived before any frame
    UNAUTHORIZED = "unauthorized"  # missing or wrong session token
    OVERLOADED = "overloaded"  # a bounded queue was full; the item was dropped
    NO_POSE = "no_pose"  # capture needs a camera pose with every frame (or pose_source "odometry")
    CAPTURE_FAILED = "capture_failed"  # capture out of order (stop before start) or nothing to mesh
    INTERNAL = "internal"  # the engine failed on this item; the session keeps running


class ProtocolError(ValueError):
    """A client's message violates schema v1. Carries the code and the id it refers to."""

    def __init__(self, code: ErrorCode, message: str, ref_id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref_id = ref_id

"""The one place where the engine's answers and errors become the protocol's messages.

Domain code raises domain errors (engine/errors.py, models' ModelError, core's PromptError);
the protocol's own decoding raises ProtocolError with its code. Whatever reaches a session's
edge is turned into an ErrorMessage here, so a client always gets a coded error and never a
traceback, and a new domain error needs one row below.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from engine.capture.config import CaptureError, NoPoseError
from engine.core.prompts import PromptError
from engine.errors import (
    BadPrompt,
    EngineError,
    NoDepth,
    NoFrame,
    Overloaded,
    SessionClosed,
    UnsupportedPrompt,
)
from engine.pipeline import Answer
from engine.protocol import ErrorCode, ErrorMessage, Message, ProtocolError, ResultKind, ResultMessage
from engine.session.context import Counters
from engine.session.parts import Failure, Notice, Outgoing, Reply
from models.interfaces import ModelError

log = logging.getLogger(__name__)

_CODES: tuple[tuple[type[Exception], ErrorCode], ...] = (
    (NoPoseError, ErrorCode.NO_POSE),
    (CaptureError, ErrorCode.CAPTURE_FAILED),
    (BadPrompt, ErrorCode.BAD_PROMPT),
    (PromptError, ErrorCode.BAD_PROMPT),
    (UnsupportedPrompt, ErrorCode.UNSUPPORTED_PROMPT),
    (NoFrame, ErrorCode.NO_FRAME),
    (NoDepth, ErrorCode.BAD_DEPTH),
    (Overloaded, ErrorCode.OVERLOADED),
    (SessionClosed, ErrorCode.UNAUTHORIZED),
)


def error_message(exc: Exception, ref_id: int | None = None) -> ErrorMessage:
    """The coded error a client gets for `exc`; ref_id (the work item's prompt) wins over the
    error's own, since the client waits on its prompt's id whichever frame failed."""
    own = getattr(exc, "ref_id", None)
    ref = ref_id if ref_id is not None else own
    if isinstance(exc, ProtocolError):
        return ErrorMessage(exc.code, exc.message, ref)
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return ErrorMessage(code, str(exc), ref)
    if isinstance(exc, ModelError):
        return ErrorMessage(ErrorCode.INTERNAL, f"model failed: {exc}", ref)
    if isinstance(exc, EngineError):
        return ErrorMessage(ErrorCode.INTERNAL, str(exc), ref)
    return ErrorMessage(ErrorCode.INTERNAL, f"engine error on this item: {exc!r}", ref)


def result_message(answer: Answer, kind: ResultKind) -> ResultMessage:
    """An answer as the client gets it, stamped with its send time."""
    result = answer.result
    result = replace(result, timestamps=replace(result.timestamps, send=time.time()))
    return ResultMessage(result, kind, str(answer.mapping))


def is_expected(exc: Exception) -> bool:
    """Errors that are part of normal operation (logged briefly); others are engine bugs (logged in full)."""
    return isinstance(exc, ProtocolError | EngineError | PromptError | ModelError)


def outgoing_message(item: Outgoing, counters: Counters, session_id: str) -> Message:
    """The message a client gets for one handler output, counted where its session stats count it."""
    if isinstance(item, Notice):
        return item.message
    if isinstance(item, Failure):
        counters.errors_sent += 1
        message = error_message(item.error, item.ref_id)
        log.debug("session %s: %s (%s, ref %s)", session_id, message.message, message.code, message.ref_id)
        return message
    assert isinstance(item, Reply)
    if item.kind is ResultKind.TRACK:
        counters.track_results += 1
    else:
        counters.prompts_answered += 1
    return result_message(item.answer, item.kind)

"""Field validation for decoded headers: every error names the field and what was expected.

Why a module of its own: these checks are the engine's first line against hostile input, and
every decoder (engine/protocol/codec.py) goes through them. Beyond types they bound magnitudes:
a finite but absurd number (fx = 1e-300, a translation of 1e300, an integer of 2**80) passes a
type check and then overflows a later stage, so values are bounded here, where the error can
still name the field.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import numpy as np

from engine.protocol.errors import ErrorCode, ProtocolError

MAX_ABS_FLOAT = 1e12
"""Largest magnitude of any float field (timestamps in seconds or ms, pixels, metres all fit)."""
MAX_ABS_INT = 2**53
"""Largest magnitude of any integer field: ids must survive a JavaScript client's number type."""


def field(obj: dict[str, Any], key: str, kind: type, default: Any = ..., ref_id: int | None = None) -> Any:
    """obj[key] checked to be of `kind` (int, float, str, bool, list, dict) and of sane size.

    A missing key (or null) returns `default`, or raises INVALID_FIELD when there is none.
    """
    if key not in obj or obj[key] is None:
        if default is ...:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"missing field {key!r}", ref_id)
        return default
    value = obj[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > MAX_ABS_FLOAT:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, f"field {key!r} is out of range (|x| <= {MAX_ABS_FLOAT:g})", ref_id
            )
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"field {key!r} must be {kind.__name__}, got {type(value).__name__}",
            ref_id,
        )
    if kind is float:
        if not math.isfinite(value):
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"field {key!r} must be finite", ref_id)
        if abs(value) > MAX_ABS_FLOAT:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, f"field {key!r} is out of range (|x| <= {MAX_ABS_FLOAT:g})", ref_id
            )
    elif kind is int and abs(value) > MAX_ABS_INT:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"field {key!r} is out of range (|n| <= 2**53)", ref_id)
    elif kind is str:
        check_text(value, key, ref_id)
    return value


def bounded(
    obj: dict[str, Any], key: str, low: float, high: float, default: Any = ..., ref_id: int | None = None
) -> Any:
    """A float field that must lie in [low, high] (its error says the range)."""
    value = field(obj, key, float, default, ref_id)
    if value is not None and value is not default and not low <= value <= high:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"field {key!r} must be in [{low:g}, {high:g}], got {value:g}", ref_id
        )
    return value


def check_text(value: str, key: str, ref_id: int | None = None) -> None:
    """Strings must be valid Unicode: JSON's \\ud800 escapes make lone surrogates, which no
    UTF-8 encoder (a log file, a tokenizer, the reply) can write."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"field {key!r} is not valid Unicode (lone surrogate)", ref_id
        ) from None


def floats(
    obj: dict[str, Any], key: str, n: int, ref_id: int | None, limit: float = MAX_ABS_FLOAT
) -> np.ndarray:
    """A list of exactly n finite numbers of magnitude <= limit, as float64."""
    value = field(obj, key, list, ref_id=ref_id)
    if len(value) != n or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"field {key!r} must be a list of {n} numbers", ref_id)
    if any(isinstance(v, int) and abs(v) > limit for v in value):  # before float(): 10**400 overflows it
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"field {key!r} has a value out of range (|x| <= {limit:g})", ref_id
        )
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"field {key!r} must be finite", ref_id)
    if np.any(np.abs(arr) > limit):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"field {key!r} has a value out of range (|x| <= {limit:g})", ref_id
        )
    return arr


def known(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Keep the keys a dataclass knows: a newer peer may add fields (forward compatibility)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in values.items() if k in names}

"""The envelope of every schema-v1 message: b"XRSG" | uint32 LE header length | JSON header | payloads.

parse_envelope splits raw bytes into a header and named payloads, refusing anything malformed with
a coded ProtocolError (engine/protocol/codec.py interprets them); pack is its inverse.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from engine.protocol.errors import ErrorCode, ProtocolError
from engine.protocol.fields import MAX_ABS_INT
from engine.protocol.fields import field as _field
from engine.protocol.messages import PROTOCOL_VERSION, Limits, MessageType

MAGIC = b"XRSG"
_PREFIX = struct.Struct("<4sI")


@dataclass(frozen=True, eq=False)
class Envelope:
    """A parsed but not yet interpreted message: its header and named payloads.

    Transports use it to route cheaply (e.g. keep only the newest frame) before the costly
    image decode in decode_message.
    """

    header: dict[str, Any]
    payloads: dict[str, tuple[str, memoryview]]  # name -> (codec, bytes)

    @property
    def type(self) -> str:
        return self.header["type"]

    @property
    def ref_id(self) -> int | None:
        for key in ("prompt_id", "frame_id"):
            value = self.header.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_ABS_INT:
                return value  # an id out of range is not echoed: the client could not decode it
        return None


# ---------------------------------------------------------------------------------------------
# envelope


def parse_envelope(data: bytes | bytearray | memoryview | str, limits: Limits = Limits()) -> Envelope:
    """Split raw bytes into header and payloads; raise ProtocolError on anything malformed."""
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError(
                ErrorCode.MALFORMED, "text message is not valid Unicode (lone surrogate)"
            ) from None
        if len(raw) > limits.max_header_bytes:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"text message of {len(raw)} bytes exceeds {limits.max_header_bytes}"
            )
        header = _load_header(raw)
        if header.get("payloads"):
            raise ProtocolError(
                ErrorCode.MALFORMED, "a text message cannot carry payloads; send a binary message"
            )
        return Envelope(header, {})
    view = memoryview(data)
    if len(view) > limits.max_message_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"message of {len(view)} bytes exceeds the limit of {limits.max_message_bytes}",
        )
    if len(view) < _PREFIX.size:
        raise ProtocolError(ErrorCode.MALFORMED, "message shorter than the 8-byte prefix")
    magic, header_len = _PREFIX.unpack_from(view)
    if magic != MAGIC:
        raise ProtocolError(
            ErrorCode.MALFORMED, f"message does not start with {MAGIC!r}; is this an xrseg client?"
        )
    if header_len > limits.max_header_bytes or _PREFIX.size + header_len > len(view):
        raise ProtocolError(
            ErrorCode.MALFORMED, f"header length {header_len} is invalid for a {len(view)}-byte message"
        )
    header = _load_header(bytes(view[_PREFIX.size : _PREFIX.size + header_len]))
    offset = _PREFIX.size + header_len
    payloads: dict[str, tuple[str, memoryview]] = {}
    for item in _field(header, "payloads", list, default=[]):
        if not isinstance(item, dict):
            raise ProtocolError(
                ErrorCode.MALFORMED, "each payload entry must be an object with name, codec, size"
            )
        name, codec, size = _field(item, "name", str), _field(item, "codec", str), _field(item, "size", int)
        if size < 0 or offset + size > len(view):
            raise ProtocolError(
                ErrorCode.MALFORMED, f"payload {name!r} of {size} bytes runs past the end of the message"
            )
        payloads[name] = (codec, view[offset : offset + size])
        offset += size
    if offset != len(view):
        raise ProtocolError(
            ErrorCode.MALFORMED, f"{len(view) - offset} trailing bytes after the declared payloads"
        )
    return Envelope(header, payloads)


def _load_header(raw: bytes) -> dict[str, Any]:
    try:
        header = json.loads(raw)
    except RecursionError:  # "[[[[...": nesting beyond the interpreter's recursion limit
        raise ProtocolError(ErrorCode.MALFORMED, "header JSON is nested too deeply") from None
    except ValueError as exc:  # not UTF-8, not JSON, or an integer past Python's 4300-digit limit
        raise ProtocolError(
            ErrorCode.MALFORMED, f"header is not valid UTF-8 JSON: {str(exc)[:200]}"
        ) from None
    if not isinstance(header, dict):
        raise ProtocolError(ErrorCode.MALFORMED, "header must be a JSON object")
    version = header.get("v")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {version!r} is not supported; this engine speaks v{PROTOCOL_VERSION}",
        )
    kind = header.get("type")
    if kind not in MessageType.__members__.values():
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r}; v1 types: {', '.join(MessageType)}"
        )
    return header


def pack(header: dict[str, Any], payloads: list[tuple[str, str, bytes]] = ()) -> bytes:
    """Frame a header and (name, codec, bytes) payloads as one v1 message (adds \"v\" and \"payloads\")."""
    header = {"v": PROTOCOL_VERSION, **header}
    if payloads:
        header["payloads"] = [{"name": n, "codec": c, "size": len(b)} for n, c, b in payloads]
    raw = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return b"".join([_PREFIX.pack(MAGIC, len(raw)), raw, *(b for _, _, b in payloads)])

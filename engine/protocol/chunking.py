"""Data-channel framing: schema-v1 messages split into chunks that fit a WebRTC data channel.

Why: SCTP data channels carry messages of at most 64 KiB between browsers (aiortc refuses to
send more than the peer's max-message-size), and one big message holds up everything queued
behind it. A message no larger than `max_chunk` goes as it is (it starts with b"XRSG", or is a
text header); a larger one goes as chunks, each:

    b"XC" | version u8 (=1) | reserved u8 | message id u32 | index u16 | count u16 | bytes

all little-endian, on an ordered reliable channel, chunks of one message back to back.

The Reassembler bounds what a peer can make us hold: at most `max_message_bytes` per message
(checked from the chunk count before anything is kept) and `max_partial` unfinished messages;
any violation raises ProtocolError(MALFORMED or TOO_LARGE) and drops that message only.
"""

from __future__ import annotations

import struct
from collections import OrderedDict

from engine.protocol.errors import ErrorCode, ProtocolError

CHUNK_MAGIC = b"XC"
CHUNK_VERSION = 1
DEFAULT_MAX_CHUNK = 16 * 1024
"""Bytes per data-channel message: safe for every browser and small enough to interleave."""

_CHUNK = struct.Struct("<2sBBIHH")


def split_message(data: bytes, message_id: int, max_chunk: int = DEFAULT_MAX_CHUNK) -> list[bytes]:
    """One encoded message -> the data-channel messages that carry it (itself when it fits)."""
    if len(data) <= max_chunk:
        return [data]
    body = max_chunk - _CHUNK.size
    count = -(-len(data) // body)
    if count > 0xFFFF:
        raise ValueError(f"message of {len(data)} bytes needs {count} chunks; at most 65535 fit the framing")
    mid = message_id & 0xFFFFFFFF
    return [
        _CHUNK.pack(CHUNK_MAGIC, CHUNK_VERSION, 0, mid, i, count) + data[i * body : (i + 1) * body]
        for i in range(count)
    ]


class Reassembler:
    """Joins chunks from one ordered channel back into messages.

    feed(data) returns the complete message (bytes or str) or None while one is incomplete.
    """

    def __init__(
        self, max_message_bytes: int, max_chunk: int = DEFAULT_MAX_CHUNK, max_partial: int = 2
    ) -> None:
        self._max_message_bytes = max_message_bytes
        self._max_chunk = max_chunk
        self._max_partial = max_partial
        self._partial: OrderedDict[int, tuple[int, list[bytes]]] = OrderedDict()
        self._refused: set[int] = set()
        self.dropped = 0  # unfinished messages given up (newer ones arrived, or a bad chunk)

    def feed(self, data: bytes | str) -> bytes | str | None:
        if isinstance(data, str) or not data.startswith(CHUNK_MAGIC):
            return data
        if len(data) < _CHUNK.size:
            raise ProtocolError(ErrorCode.MALFORMED, f"chunk of {len(data)} bytes is shorter than its header")
        _, version, _, mid, index, count = _CHUNK.unpack_from(data)
        if version != CHUNK_VERSION:
            raise ProtocolError(
                ErrorCode.MALFORMED, f"chunk framing version {version}; this engine speaks {CHUNK_VERSION}"
            )
        body = memoryview(data)[_CHUNK.size :]
        if count == 0 or index >= count or len(data) > self._max_chunk:
            raise ProtocolError(
                ErrorCode.MALFORMED, f"chunk {index} of {count} ({len(data)} bytes) is not valid"
            )
        if mid in self._refused:  # the rest of a message already refused: one error is enough
            if index + 1 == count:
                self._refused.discard(mid)
            return None
        if (count - 1) * (self._max_chunk - _CHUNK.size) >= self._max_message_bytes:  # smallest it can be
            self._refuse(mid, index, count)
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"a message of {count} chunks exceeds the limit of {self._max_message_bytes} bytes",
            )
        if index == 0:
            if mid in self._partial:
                self._partial.pop(mid)
                self.dropped += 1
            self._partial[mid] = (count, [])
            while len(self._partial) > self._max_partial:
                self._partial.popitem(last=False)
                self.dropped += 1
        entry = self._partial.get(mid)
        if entry is None or entry[0] != count or len(entry[1]) != index:
            self._partial.pop(mid, None)
            self.dropped += 1
            self._refuse(mid, index, count)
            raise ProtocolError(
                ErrorCode.MALFORMED, f"chunk {index} of message {mid} arrived out of order or alone"
            )
        entry[1].append(bytes(body))
        if index + 1 < count:
            return None
        del self._partial[mid]
        message = b"".join(entry[1])
        if len(message) > self._max_message_bytes:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"message of {len(message)} bytes exceeds the limit of {self._max_message_bytes}",
            )
        return message

    def _refuse(self, mid: int, index: int, count: int) -> None:
        """Skip the remaining chunks of message mid silently (bounded: a few ids at most)."""
        if index + 1 < count:
            self._refused.add(mid)
            while len(self._refused) > 4 * self._max_partial:
                self._refused.pop()

"""Message schema v1 (docs/protocol.md). Clients and transports import from here only."""

from engine.protocol.codec import Envelope, decode_envelope, decode_message, encode_frame, encode_message, parse_envelope
from engine.protocol.errors import ErrorCode, ProtocolError
from engine.protocol.messages import (
    PROTOCOL_VERSION,
    Bye,
    ErrorMessage,
    FrameMessage,
    Hello,
    Limits,
    Message,
    MessageType,
    Ping,
    Pong,
    PromptMessage,
    ResultMessage,
    SessionStats,
    StatsMessage,
    Welcome,
)
from engine.protocol.payloads import DepthCodec, ImageCodec

__all__ = [
    "PROTOCOL_VERSION",
    "Bye",
    "DepthCodec",
    "Envelope",
    "ErrorCode",
    "ErrorMessage",
    "FrameMessage",
    "Hello",
    "ImageCodec",
    "Limits",
    "Message",
    "MessageType",
    "Ping",
    "Pong",
    "PromptMessage",
    "ProtocolError",
    "ResultMessage",
    "SessionStats",
    "StatsMessage",
    "Welcome",
    "decode_envelope",
    "decode_message",
    "encode_frame",
    "encode_message",
    "parse_envelope",
]

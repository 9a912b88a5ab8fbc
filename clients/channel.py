"""The channel a client session talks over: whole schema messages in and out, one per transport.

Why: the WebSocket and WebRTC clients used to be two classes with drifting methods. The session
logic (prompt futures, tracking, cancel, stats, hello/resume) now lives once in
`clients.session.ClientSession`; a transport only moves bytes. A frame is the one thing a
transport splits its own way (WebSocket: one binary message; WebRTC: metadata and depth on the
data channel, colour on the video track), so `send_frame` is part of the channel.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from engine.core import RGBDFrame
from engine.protocol import DepthCodec, ImageCodec, Welcome


class Lane(StrEnum):
    """Delivery a message asks for; a transport without a lossy lane sends everything reliably."""

    RELIABLE = "reliable"  # ordered, retransmitted: frames, prompts, cancel, ping, bye
    LOSSY = "lossy"  # unordered, no retransmission (WebRTC "gaze" channel): gaze samples


class ChannelClosed(ConnectionError):
    """The connection is gone; reconnect with the same session_id to resume the session."""


class Channel(Protocol):
    """One open, authenticated connection to an engine (the hello was answered by `welcome`)."""

    welcome: Welcome

    async def send(self, data: bytes, lane: Lane = Lane.RELIABLE) -> None:
        """Send one whole encoded schema message (the channel frames or chunks it as needed).

        Raises ChannelClosed when the connection is gone."""
        ...

    async def send_raw(self, data: bytes | str) -> None:
        """Send bytes exactly as given, unchunked (tests of the engine's input checks)."""
        ...

    async def send_frame(
        self,
        frame: RGBDFrame,
        rgb_codec: ImageCodec | None = None,
        depth_codec: DepthCodec | None = None,
        with_depth: bool | None = None,
    ) -> None:
        """Send one RGB-D frame the transport's way; None codecs take the transport's default.

        with_depth: False sends colour and metadata only; None lets the transport decide
        (WebSocket: depth when the frame has it; WebRTC: its options' depth_every rule)."""
        ...

    async def recv(self) -> bytes | str:
        """The next whole message from the engine. Raises ChannelClosed when the connection ends."""
        ...

    async def close(self) -> None:
        """Close the connection (idempotent); a pending recv raises ChannelClosed."""
        ...

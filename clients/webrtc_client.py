"""Python client for the engine's WebRTC transport (aiortc).

    async with ClientSession.connect("http://127.0.0.1:8766", token="...") as client:
        await client.send_frame(frame)  # colour on the video track, depth + metadata on "xrseg"
        click = Prompt(prompt_id=1, frame_id=frame.frame_id, points=(PointPrompt(320, 240),))
        result = await client.prompt(click)

This module is the WebRTC `Channel` under `clients.session.ClientSession` (the same session
methods as over WebSocket); `XrsegRtcClient` is the old name of ClientSession, kept for
existing callers. Depends only on engine.core and engine.protocol (the message schema).

What goes where (docs/protocol.md, "WebRTC"):
- video track: colour, pts = frame_id * pts_per_frame on a 90 kHz clock (the engine pairs it
  with the metadata by that rule). Newest frame wins: if the encoder is busy, a waiting frame is
  replaced, not queued.
- "xrseg" channel (reliable, ordered): schema-v1 messages, chunked to max_chunk bytes; a frame's
  metadata message has rgb codec "video" and carries depth (rdz by default) unless the channel
  is backed up, in which case depth is skipped for that frame and counted.
- "gaze" channel (unreliable, unordered): gaze prompts, one message each (send_gaze).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace

import aiohttp
import aioice.ice
import av
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from clients.channel import ChannelClosed, Lane
from clients.replies import EngineError
from clients.session import ClientSession
from engine.core import RGBDFrame
from engine.protocol import (
    DepthCodec,
    ErrorCode,
    Hello,
    ImageCodec,
    Limits,
    Ping,
    Welcome,
    encode_frame,
    encode_message,
)
from engine.protocol.channels import CONTROL_LABEL, GAZE_LABEL, VIDEO_CLOCK_HZ
from engine.protocol.chunking import DEFAULT_MAX_CHUNK, Reassembler, split_message


XrsegRtcClient = ClientSession
"""Old name (WebRTC client); `XrsegRtcClient.connect("http://...", options=...)` opens a ClientSession."""


@dataclass(frozen=True)
class RtcClientOptions:
    """How the client connects and streams.

    Attributes:
        fps: nominal camera rate; sets pts_per_frame (90000 / fps), which the video encoder's
            rate control reads as the frame interval.
        video: send colour on a video track (False: JPEG inside each frame message instead).
        video_codec: "VP8" or "H264" (aiortc encodes in software: VP8 up to 1.5 Mbit/s,
            H.264 up to 3 Mbit/s, raised from the default as the engine's REMB allows).
        depth_codec: codec of the depth payload (rdz: lossless, fast).
        depth_every: depth goes with every frame whose id is a multiple of n, and only with
            those (prompt those frames). aiortc's data channels carry ~1.5 MB/s on this machine,
            about full-rate depth (15 fps x ~50 KB of rdz), so at n > 1 depth rides only where needed.
        max_buffered_bytes: with depth_every=1, skip depth on a frame (and count it) while more
            than this waits in the data channel's send buffer: the link is not keeping up.
        ice_servers: (urls, username, credential) STUN/TURN servers; none by default.
        host_addresses: restrict ICE host candidates (("127.0.0.1",) on loopback); None: all.
        keepalive_s: send a ping when nothing was sent for this long, so the engine does not
            treat a quiet client as abandoned.
    """

    fps: float = 15.0
    video: bool = True
    video_codec: str = "VP8"
    depth_codec: DepthCodec = DepthCodec.RDZ
    depth_every: int = 1
    max_chunk: int = DEFAULT_MAX_CHUNK
    max_buffered_bytes: int = 256 * 1024
    ice_servers: tuple[tuple[str, str | None, str | None], ...] = ()
    host_addresses: tuple[str, ...] | None = None
    keepalive_s: float = 2.0
    connect_timeout_s: float = 20.0

    @property
    def pts_per_frame(self) -> int:
        return max(1, round(VIDEO_CLOCK_HZ / self.fps))


class FrameTrack(MediaStreamTrack):
    """A video track fed by put(): a slow encoder never builds up latency.

    Plain frames: only the newest waits (newest wins). Pinned frames (those with depth, which
    prompts use) queue up to `max_pinned`, because skipping one would leave its prompt without
    its frame; a waiting plain frame older than a new pinned one is dropped. Frames dropped
    before the encoder took them are counted in `replaced`.

    flush_after_s: aiortc's receiver hands a frame on only when the first packet of the *next*
    frame arrives (its jitter buffer knows no marker bit), which would add a whole frame
    interval to every colour frame's latency. So when no new frame follows within this time,
    the track repeats the last image half a frame interval later (off the frame grid, which
    the engine ignores), pushing the real frame out at once. None turns this off.
    """

    kind = "video"

    def __init__(self, pts_per_frame: int, max_pinned: int = 3, flush_after_s: float | None = 0.001) -> None:
        super().__init__()
        self._filler_offset = (
            pts_per_frame // 2
        )  # half-way between two frames: as far off the grid as it gets
        self._pinned: deque[av.VideoFrame] = deque()
        self._max_pinned = max_pinned
        self._newest: av.VideoFrame | None = None
        self._flush_after_s = flush_after_s
        self._last: av.VideoFrame | None = None
        self._ready = asyncio.Event()
        self.replaced = 0
        self.flushes = 0

    def put(self, frame: av.VideoFrame, pin: bool = False) -> None:
        if pin:
            if self._newest is not None:  # older than this pinned frame: sending it would go backwards
                self._newest = None
                self.replaced += 1
            self._pinned.append(frame)
            while len(self._pinned) > self._max_pinned:
                self._pinned.popleft()
                self.replaced += 1
        else:
            self.replaced += self._newest is not None
            self._newest = frame
        self._ready.set()

    async def recv(self) -> av.VideoFrame:
        if (
            not self._pinned
            and self._newest is None
            and self._last is not None
            and self._flush_after_s is not None
        ):
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), self._flush_after_s)
            except TimeoutError:
                last, self._last = self._last, None
                self.flushes += 1
                return _filler_after(last, self._filler_offset)
        while not self._pinned and self._newest is None:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        if self._pinned:
            frame = self._pinned.popleft()
        else:
            frame, self._newest = self._newest, None
        self._last = frame
        return frame

    def stop(self) -> None:
        super().stop()
        self._ready.set()


def _filler_after(frame: av.VideoFrame, offset: int) -> av.VideoFrame:
    """The same picture half a frame interval later (off the frame grid): a tiny delta frame."""
    filler = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
    filler.pts = frame.pts + offset
    filler.time_base = frame.time_base
    return filler


class WebRTCChannel:
    """A `clients.channel.Channel` over one aiortc peer connection: reliable messages chunked on
    "xrseg", lossy ones on "gaze", colour on the video track (when options.video)."""

    def __init__(self, pc: RTCPeerConnection, control, gaze, track: FrameTrack | None, welcome: Welcome,
                 options: RtcClientOptions) -> None:  # fmt: skip
        self.pc = pc
        self.welcome = welcome
        self.options = options
        self.track = track
        self.control = control
        self.gaze = gaze
        self._reassembler = Reassembler(64 * 1024 * 1024, options.max_chunk, max_partial=4)
        # Drained at once by the session's reader task; aiortc's callback cannot wait, so this
        # queue cannot push back. It holds what arrived between two turns of the event loop.
        self._inbox: asyncio.Queue[bytes | str | None] = asyncio.Queue()
        self._message_id = 0
        self._last_send = time.monotonic()
        self._closed = False
        self.depth_skipped = 0
        self.bytes_sent = 0  # on the "xrseg" channel, chunk headers included
        control.on("message", self._on_message)
        control.on("close", self._on_closed)
        pc.on(
            "connectionstatechange",
            lambda: pc.connectionState in ("failed", "closed") and self._on_closed(),
        )
        self._keepalive = asyncio.create_task(self._keep_alive(), name="xrseg-rtc-keepalive")

    # -- Channel -----------------------------------------------------------------------------

    async def send(self, data: bytes, lane: Lane = Lane.RELIABLE) -> None:
        if lane == Lane.LOSSY:
            if len(data) > self.options.max_chunk:
                raise ValueError(f"gaze message of {len(data)} bytes does not fit one data-channel message")
            if self.gaze.readyState != "open":
                raise ChannelClosed("the engine's gaze channel is closed; reconnect with the same session_id")
            self.gaze.send(data)
            return
        self.send_chunked(data)

    async def send_raw(self, data: bytes | str) -> None:
        if self.control.readyState != "open":
            raise ChannelClosed("the engine's data channel is closed; reconnect with the same session_id")
        self.control.send(data)
        self._last_send = time.monotonic()

    async def send_frame(
        self,
        frame: RGBDFrame,
        rgb_codec: ImageCodec | None = None,
        depth_codec: DepthCodec | None = None,
        with_depth: bool | None = None,
    ) -> None:
        """Metadata + depth on "xrseg", colour on the video track.

        rgb_codec applies only without a video track (options.video=False); depth_codec
        defaults to options.depth_codec; with_depth=True/False overrides options.depth_every.
        """
        depth_codec = depth_codec or self.options.depth_codec
        every = self.options.depth_every
        if with_depth is None:
            with_depth = frame.frame_id % every == 0
            if with_depth and every == 1 and self.control.bufferedAmount > self.options.max_buffered_bytes:
                with_depth = False
                self.depth_skipped += 1
        if frame.depth is not None and not with_depth:
            frame = replace(frame, depth=None)
        if self.track is None:
            codec = rgb_codec if rgb_codec not in (None, ImageCodec.VIDEO) else ImageCodec.JPEG
            self.send_chunked(await asyncio.to_thread(encode_frame, frame, codec, depth_codec))
            return
        data = await asyncio.to_thread(encode_frame, frame, ImageCodec.VIDEO, depth_codec)
        self.send_chunked(data)  # metadata first: the engine locks its pts offset on the first pair
        video = av.VideoFrame.from_ndarray(frame.rgb, format="rgb24")
        video.pts = frame.frame_id * self.options.pts_per_frame
        video.time_base = fractions.Fraction(1, VIDEO_CLOCK_HZ)
        self.track.put(video, pin=frame.depth is not None)

    async def recv(self) -> bytes | str:
        data = await self._inbox.get()
        if data is None:
            self._inbox.put_nowait(None)  # every later recv sees the end too
            raise ChannelClosed("the engine closed the WebRTC connection")
        return data

    async def close(self) -> None:
        """Let what was sent drain (a bye frees the session at once), then close the peer."""
        self._keepalive.cancel()
        if self.control.readyState == "open":
            await self._drained(timeout=2.0)
        if self.track is not None:
            self.track.stop()
        await self.pc.close()
        self._on_closed()

    # -- internals ---------------------------------------------------------------------------

    def send_chunked(self, data: bytes) -> None:
        """One message on "xrseg", split into chunks of at most options.max_chunk bytes."""
        if self.control.readyState != "open":
            raise ChannelClosed("the engine's data channel is closed; reconnect with the same session_id")
        self._message_id += 1
        for chunk in split_message(data, self._message_id, self.options.max_chunk):
            self.control.send(chunk)
            self.bytes_sent += len(chunk)
        self._last_send = time.monotonic()

    def _on_message(self, data: bytes | str) -> None:
        message = self._reassembler.feed(data)
        if message is not None:
            self._inbox.put_nowait(message)

    def _on_closed(self) -> None:
        if not self._closed:
            self._closed = True
            self._inbox.put_nowait(None)

    async def _drained(self, timeout: float) -> None:
        """Wait until the data channel has handed everything to the transport."""
        if self.control.bufferedAmount == 0:
            return
        done = asyncio.Event()
        self.control.bufferedAmountLowThreshold = 0
        self.control.on("bufferedamountlow", done.set)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)

    async def _keep_alive(self) -> None:
        """A ping when nothing was sent for options.keepalive_s, so the engine keeps the session."""
        while True:
            await asyncio.sleep(self.options.keepalive_s / 2)
            quiet = time.monotonic() - self._last_send >= self.options.keepalive_s
            if quiet and self.control.readyState == "open":
                self.send_chunked(encode_message(Ping(time.time())))


async def open_webrtc(url: str, hello: Hello, options: RtcClientOptions) -> WebRTCChannel:
    """Offer over HTTP (the hello's token, session_id and client name ride in the offer), and
    return the channel once the "xrseg" data channel is open.

    Raises EngineError with the engine's code when the offer is refused (wrong token, ...)."""
    servers = [RTCIceServer(urls, username, credential) for urls, username, credential in options.ice_servers]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
    try:
        negotiation = _negotiate(pc, url.rstrip("/"), hello, options)
        return await asyncio.wait_for(negotiation, options.connect_timeout_s)
    except BaseException:
        await pc.close()
        raise


async def _negotiate(pc: RTCPeerConnection, url: str, hello: Hello, opts: RtcClientOptions) -> WebRTCChannel:
    control = pc.createDataChannel(CONTROL_LABEL, ordered=True)
    gaze = pc.createDataChannel(GAZE_LABEL, ordered=False, maxRetransmits=0)
    track = FrameTrack(opts.pts_per_frame) if opts.video else None
    if track is not None:
        transceiver = pc.addTransceiver(track, direction="sendonly")
        wanted = f"video/{opts.video_codec}".lower()
        codecs = [
            c
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType.lower() in (wanted, "video/rtx")
        ]
        if not any(c.mimeType.lower() == wanted for c in codecs):
            raise ValueError(f"video codec {opts.video_codec!r} is not available; use VP8 or H264")
        transceiver.setCodecPreferences(codecs)
    opened = asyncio.Event()
    control.on("open", opened.set)
    offer = await pc.createOffer()
    with _host_candidates(opts.host_addresses):
        await pc.setLocalDescription(offer)
    body = {
        "sdp": pc.localDescription.sdp,
        "type": "offer",
        "token": hello.token,
        "session_id": hello.session_id,
        "client": hello.client,
        "video_pts_per_frame": opts.pts_per_frame,
    }
    async with aiohttp.ClientSession() as http, http.post(f"{url}/webrtc/offer", json=body) as response:
        reply = await response.json(content_type=None)
    if response.status != 200:
        code = reply.get("code", ErrorCode.INTERNAL) if isinstance(reply, dict) else ErrorCode.INTERNAL
        message = reply.get("message", str(reply)) if isinstance(reply, dict) else str(reply)
        known = code in ErrorCode.__members__.values()
        raise EngineError(ErrorCode(code) if known else ErrorCode.INTERNAL, message, None)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type=reply["type"]))
    await opened.wait()
    welcome = Welcome(reply["session_id"], reply["model"], Limits(**reply["limits"]))
    return WebRTCChannel(pc, control, gaze, track, welcome, opts)


_ALLOWED: ContextVar[tuple[str, ...] | None] = ContextVar("xrseg_client_ice_hosts", default=None)
_MARK = "_xrseg_client_dispatch"


@contextlib.contextmanager
def _host_candidates(addresses: Sequence[str] | None) -> Iterator[None]:
    """Within this context (this task only), aioice gathers host candidates on `addresses`.

    aioice has no per-connection setting and skips loopback; a ContextVar-routed lookup gives
    the restriction to the task that asked and leaves every other peer as it was.
    """
    if addresses is None:
        yield
        return
    current = aioice.ice.get_host_addresses
    if not getattr(current, _MARK, False):

        def dispatch(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            allowed = _ALLOWED.get()
            if allowed is None:
                return current(use_ipv4, use_ipv6)
            return [a for a in allowed if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

        setattr(dispatch, _MARK, True)
        aioice.ice.get_host_addresses = dispatch
    token = _ALLOWED.set(tuple(addresses))
    try:
        yield
    finally:
        _ALLOWED.reset(token)

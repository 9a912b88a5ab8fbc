"""Python client for the engine's WebRTC transport (aiortc).

    async with XrsegRtcClient.connect("http://127.0.0.1:8766", token="...") as client:
        await client.send_frame(frame)  # colour on the video track, depth + metadata on "xrseg"
        click = Prompt(prompt_id=1, frame_id=frame.frame_id, points=(PointPrompt(320, 240),))
        result = await client.prompt(click)

Same methods as the WebSocket client (clients.ws_client.XrsegClient), so clients.streamer and
the CLI drive either. Depends only on engine.core and engine.protocol (the message schema).

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

from clients.replies import EngineError, ReplyRouter, TimedResult
from engine.core import Prompt, RGBDFrame, SegmentationResult
from engine.protocol import (
    Bye,
    DepthCodec,
    ErrorCode,
    ErrorMessage,
    ImageCodec,
    Limits,
    Ping,
    PromptMessage,
    SessionStats,
    Welcome,
    decode_message,
    encode_frame,
    encode_message,
)
from engine.protocol.channels import CONTROL_LABEL, GAZE_LABEL, VIDEO_CLOCK_HZ
from engine.protocol.chunking import DEFAULT_MAX_CHUNK, Reassembler, split_message


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


class XrsegRtcClient:
    """One session with an engine over WebRTC. Use `connect` as an async context manager."""

    def __init__(self, pc: RTCPeerConnection, control, gaze, track: FrameTrack | None, welcome: Welcome,
                 options: RtcClientOptions) -> None:  # fmt: skip
        self.pc = pc
        self.welcome = welcome
        self.options = options
        self.track = track
        self._control = control
        self._gaze = gaze
        self._reassembler = Reassembler(64 * 1024 * 1024, options.max_chunk, max_partial=4)
        self._replies = ReplyRouter()
        self._message_id = 0
        self._last_send = time.monotonic()
        self.depth_skipped = 0
        self.bytes_sent = 0  # on the "xrseg" channel, chunk headers included
        control.on("message", self._on_message)
        control.on("close", self._fail_pending)
        pc.on(
            "connectionstatechange",
            lambda: pc.connectionState in ("failed", "closed") and self._fail_pending(),
        )
        self._keepalive = asyncio.create_task(self._keep_alive(), name="xrseg-rtc-keepalive")

    @classmethod
    def connect(
        cls,
        url: str,
        token: str = "",
        client_name: str = "xrseg-python-webrtc",
        session_id: str | None = None,
        options: RtcClientOptions = RtcClientOptions(),
    ) -> _Connector:
        return _Connector(url, token, client_name, session_id, options)

    @property
    def session_id(self) -> str:
        return self.welcome.session_id

    @property
    def limits(self) -> Limits:
        return self.welcome.limits

    # -- sending -----------------------------------------------------------------------------

    async def send_frame(
        self,
        frame: RGBDFrame,
        rgb_codec: ImageCodec = ImageCodec.VIDEO,
        depth_codec: DepthCodec | None = None,
        with_depth: bool | None = None,
    ) -> None:
        """Send one frame: metadata + depth on "xrseg", colour on the video track.

        rgb_codec applies only without a video track (options.video=False); depth_codec
        defaults to options.depth_codec; with_depth=True/False overrides options.depth_every.
        """
        depth_codec = depth_codec or self.options.depth_codec
        every = self.options.depth_every
        if with_depth is None:
            with_depth = frame.frame_id % every == 0
            if with_depth and every == 1 and self._control.bufferedAmount > self.options.max_buffered_bytes:
                with_depth = False
                self.depth_skipped += 1
        if frame.depth is not None and not with_depth:
            frame = replace(frame, depth=None)
        if self.track is None:
            codec = rgb_codec if rgb_codec != ImageCodec.VIDEO else ImageCodec.JPEG
            self._send_bytes(await asyncio.to_thread(encode_frame, frame, codec, depth_codec))
            return
        data = await asyncio.to_thread(encode_frame, frame, ImageCodec.VIDEO, depth_codec)
        self._send_bytes(data)  # metadata first: the engine locks its pts offset on the first pair
        video = av.VideoFrame.from_ndarray(frame.rgb, format="rgb24")
        video.pts = frame.frame_id * self.options.pts_per_frame
        video.time_base = fractions.Fraction(1, VIDEO_CLOCK_HZ)
        self.track.put(video, pin=frame.depth is not None)

    async def send_raw(self, data: bytes | str) -> None:
        """Send one data-channel message as it is (tests of the engine's input checks)."""
        self._control.send(data)
        self._last_send = time.monotonic()

    def gaze_nowait(self, prompt: Prompt) -> asyncio.Future[TimedResult]:
        """A gaze prompt on the unreliable "gaze" channel: no retransmission, so on a lossy link
        the future may never resolve (a newer gaze prompt supersedes it); wait with a timeout."""
        data = encode_message(PromptMessage(prompt))
        if len(data) > self.options.max_chunk:
            raise ValueError(f"gaze prompt of {len(data)} bytes does not fit one data-channel message")
        future = self._replies.expect(prompt.prompt_id)
        self._gaze.send(data)
        return future

    def prompt_nowait(self, prompt: Prompt) -> asyncio.Future[TimedResult]:
        """Send a prompt; the returned future resolves when its result (or error) arrives."""
        future = self._replies.expect(prompt.prompt_id)
        self._send_bytes(encode_message(PromptMessage(prompt)))
        return future

    async def prompt(self, prompt: Prompt, timeout: float = 30.0) -> SegmentationResult:
        return (await asyncio.wait_for(self.prompt_nowait(prompt), timeout)).result

    async def next_error(self, timeout: float = 10.0) -> ErrorMessage:
        """The next error not tied to a pending prompt (frames, malformed bytes, ...)."""
        return await asyncio.wait_for(self._replies.errors.get(), timeout)

    async def stats(self, timeout: float = 10.0) -> SessionStats:
        self._replies.stats_event.clear()
        self._send_bytes(encode_message(Ping(time.time())))
        await asyncio.wait_for(self._replies.stats_event.wait(), timeout)
        assert self._replies.stats is not None
        return self._replies.stats

    async def close(self, bye: bool = True) -> None:
        """Say bye (the engine then frees the session at once) and close the connection."""
        self._keepalive.cancel()
        if bye and self._control.readyState == "open":
            self._send_bytes(encode_message(Bye("client closed")))
            await self._drained(timeout=2.0)
        if self.track is not None:
            self.track.stop()
        await self.pc.close()
        self._fail_pending()

    def _fail_pending(self) -> None:
        """The connection is gone: every prompt still waiting fails now, not at its timeout."""
        self._replies.fail_all("connection closed before the result arrived")

    def _send_bytes(self, data: bytes) -> None:
        if self._control.readyState != "open":
            raise ConnectionError("the engine's data channel is closed; reconnect with the same session_id")
        self._message_id += 1
        for chunk in split_message(data, self._message_id, self.options.max_chunk):
            self._control.send(chunk)
            self.bytes_sent += len(chunk)
        self._last_send = time.monotonic()

    async def _drained(self, timeout: float) -> None:
        """Wait until the data channel has handed everything to the transport."""
        if self._control.bufferedAmount == 0:
            return
        done = asyncio.Event()
        self._control.bufferedAmountLowThreshold = 0
        self._control.on("bufferedamountlow", done.set)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.options.keepalive_s / 2)
            if (
                time.monotonic() - self._last_send >= self.options.keepalive_s
                and self._control.readyState == "open"
            ):
                self._send_bytes(encode_message(Ping(time.time())))

    # -- receiving -----------------------------------------------------------------------------

    def _on_message(self, data: bytes | str) -> None:
        message = self._reassembler.feed(data)
        if message is not None:
            self._replies.dispatch(decode_message(message), time.time())


class _Connector:
    """Awaitable and async context manager returned by XrsegRtcClient.connect."""

    def __init__(
        self, url: str, token: str, client_name: str, session_id: str | None, options: RtcClientOptions
    ) -> None:
        self._url = url.rstrip("/")
        self._token = token
        self._client_name = client_name
        self._session_id = session_id
        self._options = options
        self._client: XrsegRtcClient | None = None

    async def _open(self) -> XrsegRtcClient:
        opts = self._options
        servers = [
            RTCIceServer(urls, username, credential) for urls, username, credential in opts.ice_servers
        ]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        try:
            return await asyncio.wait_for(self._negotiate(pc), opts.connect_timeout_s)
        except BaseException:
            await pc.close()
            raise

    async def _negotiate(self, pc: RTCPeerConnection) -> XrsegRtcClient:
        opts = self._options
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
            "token": self._token,
            "session_id": self._session_id,
            "client": self._client_name,
            "video_pts_per_frame": opts.pts_per_frame,
        }
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self._url}/webrtc/offer", json=body) as response,
        ):
            reply = await response.json(content_type=None)
        if response.status != 200:
            code = reply.get("code", ErrorCode.INTERNAL) if isinstance(reply, dict) else ErrorCode.INTERNAL
            message = reply.get("message", str(reply)) if isinstance(reply, dict) else str(reply)
            raise EngineError(
                ErrorCode(code) if code in ErrorCode.__members__.values() else ErrorCode.INTERNAL,
                message,
                None,
            )
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type=reply["type"]))
        await opened.wait()
        welcome = Welcome(reply["session_id"], reply["model"], Limits(**reply["limits"]))
        return XrsegRtcClient(pc, control, gaze, track, welcome, opts)

    def __await__(self):  # type: ignore[no-untyped-def]
        return self._open().__await__()

    async def __aenter__(self) -> XrsegRtcClient:
        self._client = await self._open()
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()


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

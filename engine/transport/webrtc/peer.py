"""One client's RTCPeerConnection, bound to its engine Session.

Channels (the client opens them; names are the protocol's):
- "xrseg": reliable, ordered. Schema-v1 messages both ways, chunked (engine.protocol.chunking).
  Frame messages whose rgb codec is "video" are metadata (+ rdz depth) for a colour frame that
  travels on the video track; everything else goes to the session as from the WebSocket.
- "gaze": unreliable, unordered. Prompt messages with raw gaze samples, one per data-channel
  message; a lost one is simply superseded by the next.
- video track: colour, paired with its metadata by the FrameAligner.

Nothing heavy runs on the event loop: the drain and the aligner are O(1) per frame, and a frame
is converted (YUV -> RGB) and its depth decoded on the engine's worker pool only when a prompt
uses it (Session's newest-frame-wins window decides).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from engine.admission import TokenBucket
from engine.core import RGBDFrame
from engine.errors import SessionClosed
from engine.protocol import (
    Envelope,
    ErrorCode,
    ErrorMessage,
    FrameMessage,
    ImageCodec,
    Message,
    MessageType,
    ProtocolError,
    ResultMessage,
    decode_envelope,
    parse_envelope,
)
from engine.protocol.channels import CONTROL_LABEL, GAZE_LABEL
from engine.protocol.chunking import CHUNK_MAGIC, Reassembler, split_message
from engine.protocol.codec import check_frame
from engine.server import Engine
from engine.session import Lease, PendingFrame, Session
from engine.transport.outbox import Outbox
from engine.transport.webrtc.alignment import FrameAligner, PairedFrame
from engine.transport.webrtc.media import TrackDrain
from engine.transport.webrtc.settings import WebRTCConfig
from engine.transport.webrtc.stats import PeerStats

log = logging.getLogger(__name__)

_INBOX = 64  # data-channel messages waiting to be handled; beyond it they are refused
_MAX_BUFFERED = 1 << 20  # bytes aiortc may hold unsent on the control channel before the writer waits
TRANSPORT = "webrtc"


class RtcPeer:
    """Lifecycle: start() -> (messages, frames) -> close(). close() is idempotent and frees all."""

    def __init__(
        self,
        engine: Engine,
        session: Session,
        pc: RTCPeerConnection,
        config: WebRTCConfig,
        pts_per_frame: int,
        on_closed: Callable[[RtcPeer], None],
    ) -> None:
        self.engine = engine
        self.session = session
        self._lease: Lease | None = None
        self.pc = pc
        self._config = config
        self._limits = engine.config.limits
        self._on_closed = on_closed
        self.aligner = FrameAligner(
            pts_per_frame, config.pair_wait_s, config.pair_window, config.video_window
        )
        self.stats = PeerStats(session.session_id)
        self._reassembler = Reassembler(self._limits.max_message_bytes, config.max_chunk)
        self._inbox: asyncio.Queue[tuple[str, bytes | str]] = asyncio.Queue(_INBOX)
        self._control: RTCDataChannel | None = None
        self._drains: list[TrackDrain] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._deferred: OrderedDict[int, list[tuple[Envelope, float]]] = OrderedDict()
        self._newest_metadata = -1  # highest frame id whose metadata has arrived
        self._message_id = 0
        self._closing: asyncio.Task[None] | None = None
        a = engine.config.admission
        self._outbox = Outbox(self._write, engine.metrics, TRANSPORT, a.outbox_messages, a.outbox_bytes, session.session_id)
        self._bucket = TokenBucket(a.message_burst, a.messages_per_s)
        self._noticed = 0.0
        self.closed = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)
        name = self.session.session_id
        self._tasks = [
            asyncio.create_task(self._consume(), name=f"rtc-inbox-{name}"),
            asyncio.create_task(self._watchdog(), name=f"rtc-watchdog-{name}"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._task_ended)
        self._outbox.start()

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        """A loop of this peer ended on its own: free the peer rather than leave it "connected" and deaf."""
        if task.cancelled() or self._closing is not None:
            return
        exc = task.exception()
        log.error("session %s: peer task %s ended (%r); closing the peer", self.session.session_id, task.get_name(), exc)
        self.request_close(f"internal failure in {task.get_name()}")

    def request_close(self, reason: str, end_session: bool = False) -> asyncio.Task[None]:
        """Close from anywhere (including this peer's own tasks); returns the closing task."""
        if self._closing is None:
            self._closing = asyncio.create_task(
                self._close(reason, end_session), name=f"rtc-close-{self.session.session_id}"
            )
        return self._closing

    async def close(self, reason: str = "closed", end_session: bool = False) -> None:
        await self.request_close(reason, end_session)

    async def _close(self, reason: str, end_session: bool) -> None:
        log.info("peer of session %s closing: %s", self.session.session_id, reason)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        for drain in self._drains:
            await drain.stop()
        await self._outbox.close()
        self._deferred.clear()
        self.aligner.reset()  # frees the decoded frames and depth payloads still waiting
        await self.pc.close()
        if end_session:
            await self.engine.close_session(self.session)
        elif self._lease is not None:
            self.session.detach(self._lease)  # lingers for a reconnect with the same token; then reaped
        self._on_closed(self)
        self.closed.set()

    # -- metrics -----------------------------------------------------------------------------

    def counters(self) -> dict[str, Any]:
        """Counters and rates without RTP statistics (cheap, synchronous; valid after close)."""
        sctp = self.pc.sctp.transport if self.pc.sctp is not None else None
        srtt = getattr(sctp, "_srtt", None)  # aiortc's SCTP smoothed RTT, seconds (best effort)
        snap = self.stats.snapshot(
            self.pc.connectionState, self.aligner.counters, srtt * 1000 if srtt else None
        )
        return {
            **snap.as_dict(),
            "off_grid": self.aligner.counters.off_grid,
            "session": vars(self.session.stats),
        }

    async def metrics(self) -> dict[str, Any]:
        """counters() plus the video track's RTP statistics."""
        video: dict[str, Any] = {}
        for report in (await self.pc.getStats()).values():
            if getattr(report, "type", "") == "inbound-rtp":
                video = {
                    "packets_received": report.packetsReceived,
                    "packets_lost": report.packetsLost,
                    "jitter": report.jitter,
                }
        return {**self.counters(), "video_rtp": video}

    # -- events from aiortc -------------------------------------------------------------------

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        self.stats.touch()
        if channel.label == CONTROL_LABEL:
            self._control = channel
            channel.on("message", lambda data: self._enqueue(CONTROL_LABEL, data))
            if channel.readyState == "open":
                self._attach()
            else:
                channel.on("open", self._attach)
        elif channel.label == GAZE_LABEL:
            channel.on("message", lambda data: self._enqueue(GAZE_LABEL, data))
        else:
            log.info("session %s: ignoring data channel %r", self.session.session_id, channel.label)

    def _attach(self) -> None:
        try:
            self._lease = self.session.attach(self._send, lambda: self._outbox.congested)
        except SessionClosed as exc:  # closed between the offer and the channel opening
            self.request_close(str(exc))

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            self.aligner.reset()
            drain = TrackDrain(track, self._on_video, self.session.session_id)
        else:
            drain = TrackDrain(track, lambda frame, at: None, f"{self.session.session_id}-{track.kind}")
        self._drains.append(drain)
        drain.start()

    def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self.request_close(f"connection {self.pc.connectionState}")

    def _on_video(self, frame: Any, arrival: float) -> None:
        self.stats.on_video()
        paired = self.aligner.add_video(frame, arrival)
        if paired is not None:
            self._offer(paired)

    def _enqueue(self, label: str, data: bytes | str) -> None:
        self.stats.on_message(len(data))
        metrics = self.engine.metrics
        metrics.messages.labels(TRANSPORT).inc()
        now = time.monotonic()
        reason = None
        if not self._bucket.take(now):
            reason = "rate"
        else:
            try:
                self._inbox.put_nowait((label, data))
            except asyncio.QueueFull:
                reason = "inbox_full"
        if reason is None:
            return
        self.stats.messages_rejected += 1
        metrics.messages_refused.labels(TRANSPORT, reason).inc()
        if now - self._noticed >= self.engine.config.admission.notice_interval_s:  # one notice a second, no task per drop
            self._noticed = now
            self._outbox.offer(ErrorMessage(ErrorCode.OVERLOADED, "messages refused: the engine is behind on this peer; slow down"))

    # -- inbound work --------------------------------------------------------------------------

    async def _consume(self) -> None:
        while True:
            label, data = await self._inbox.get()
            try:
                await self._handle(label, data)
            except ProtocolError as exc:
                self.stats.messages_rejected += 1
                self.session.report(exc)
            except Exception:  # a bug on one message must not end this loop (the peer would stay deaf)
                self.engine.metrics.handler_failures.labels(TRANSPORT).inc()
                if self.engine.log_throttle.allow("rtc_handler"):
                    log.exception("session %s: data-channel message failed", self.session.session_id)
                self._outbox.offer(ErrorMessage(ErrorCode.INTERNAL, "the engine failed on this message"))

    async def _handle(self, label: str, data: bytes | str) -> None:
        if label == GAZE_LABEL:
            if isinstance(data, bytes) and data.startswith(CHUNK_MAGIC):
                raise ProtocolError(ErrorCode.MALFORMED, "gaze messages must fit in one data-channel message")
            message: bytes | str | None = data
        else:
            message = self._reassembler.feed(data)
            if message is None:
                return
        env = parse_envelope(message, self._limits)
        if label == GAZE_LABEL and env.type != MessageType.PROMPT:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, f"the gaze channel carries prompt messages only, got {env.type!r}"
            )
        if env.type == MessageType.FRAME and env.payloads.get("rgb", ("", b""))[0] == ImageCodec.VIDEO:
            header = check_frame(env, self._limits)
            self.stats.metadata_in += 1
            self._newest_metadata = max(self._newest_metadata, header.frame_id)
            paired = self.aligner.add_metadata(header.frame_id, (env, header), time.time())
            if paired is not None:
                self._offer(paired)
            return
        if env.type == MessageType.PROMPT and self._defer(env):
            return
        await self.session.receive(env)
        if env.type == MessageType.FRAME and env.ref_id is not None:  # colour inside (a browser's
            self._newest_metadata = max(self._newest_metadata, env.ref_id)  # JPEG): whole on arrival
            self._release(lambda frame_id: frame_id <= self._newest_metadata)
        if env.type == MessageType.BYE:
            self.request_close("client said bye", end_session=True)

    def _offer(self, paired: PairedFrame) -> None:
        """Hand a complete frame to the session, undecoded; decode() runs on the worker pool."""
        envelope, header = paired.metadata
        width, height = header.width, header.height
        if (paired.video.width, paired.video.height) != (width, height):
            self._report_soon(
                ProtocolError(
                    ErrorCode.BAD_IMAGE,
                    f"video frame is {paired.video.width}x{paired.video.height} "
                    f"but its metadata says {width}x{height}",
                    paired.frame_id,
                )
            )
            return
        video, limits, stats = paired.video, self._limits, self.stats

        def decode() -> RGBDFrame:
            started = time.thread_time()
            rgb = video.to_ndarray(format="rgb24")
            payloads = dict(envelope.payloads)
            payloads["rgb"] = (ImageCodec.RAW.value, memoryview(rgb).cast("B"))
            msg = decode_envelope(Envelope(envelope.header, payloads), limits)
            assert isinstance(msg, FrameMessage)
            stats.decode_ms.append((time.thread_time() - started) * 1000.0)
            return msg.frame

        received = max(paired.metadata_arrival, paired.video_arrival)
        if header.capture_ts > 0:  # on one machine (or synchronised clocks) these are one-way delays
            self.stats.metadata_ms.append((paired.metadata_arrival - header.capture_ts) * 1000.0)
            if "depth" in envelope.payloads:
                self.stats.depth_metadata_ms.append((paired.metadata_arrival - header.capture_ts) * 1000.0)
            self.stats.video_ms.append((paired.video_arrival - header.capture_ts) * 1000.0)
        log.debug("session %s: frame %s paired", self.session.session_id, paired.frame_id)
        has_depth = "depth" in envelope.payloads
        self.session.offer_frame(PendingFrame(paired.frame_id, decode, received, header.pose, has_depth))
        self._release(lambda frame_id: frame_id <= paired.frame_id)

    def _defer(self, env: Envelope) -> bool:
        """Hold a prompt whose frame is not complete yet; released when it pairs (or gives up).

        Prompts travel on data channels and colour on the video track, and a gaze prompt on the
        unordered channel can even overtake its frame's metadata; answering at once would use
        an older frame (or none).
        """
        frame_id = env.header.get("frame_id")
        if not isinstance(frame_id, int):
            return False
        if not (self.aligner.waiting_for(frame_id) or frame_id > self._newest_metadata):
            return False
        log.debug("session %s: prompt %s waits for frame %s", self.session.session_id, env.ref_id, frame_id)
        self._deferred.setdefault(frame_id, []).append((env, time.monotonic()))
        while sum(len(v) for v in self._deferred.values()) > _INBOX:
            for stale, _ in self._deferred.popitem(last=False)[1]:
                self._report_soon(
                    ProtocolError(
                        ErrorCode.OVERLOADED, "prompt dropped while its frame was late", stale.ref_id
                    )
                )
        return True

    def _release(self, due: Callable[[int], bool]) -> None:
        """Hand deferred prompts whose frame is ready (or given up) to the session, in order."""
        for frame_id in [f for f in self._deferred if due(f)]:
            for env, _ in self._deferred.pop(frame_id):
                log.debug(
                    "session %s: prompt %s released (frame %s)", self.session.session_id, env.ref_id, frame_id
                )
                self._receive_soon(env)

    def _given_up(self, frame_id: int, now: float) -> bool:
        """A deferred prompt's frame will not complete: its metadata expired, or never came."""
        if self.aligner.waiting_for(frame_id):
            return False
        waited = now - self._deferred[frame_id][0][1]
        return frame_id <= self._newest_metadata or waited > self._config.pair_wait_s

    def _receive_soon(self, env: Envelope) -> None:
        task = asyncio.ensure_future(self.session.receive(env))
        self._tasks.append(task)
        task.add_done_callback(lambda t: t in self._tasks and self._tasks.remove(t))

    # -- outbound ------------------------------------------------------------------------------

    async def _send(self, msg: Message) -> None:
        """The session's SendFn: queued on this peer's bounded outbox, never awaited."""
        if self._control is None or self._control.readyState != "open":
            return
        if self._outbox.offer(msg) and isinstance(msg, ResultMessage):
            self.stats.on_result()

    async def _write(self, data: bytes) -> None:
        """The outbox's writer: waits while aiortc holds too much unsent (a client not reading)."""
        channel = self._control
        while channel is not None and channel.readyState == "open" and channel.bufferedAmount > _MAX_BUFFERED:
            await asyncio.sleep(0.01)
        if channel is None or channel.readyState != "open":
            return
        self._message_id += 1
        for chunk in split_message(data, self._message_id, self._config.max_chunk):
            channel.send(chunk)

    def _report_soon(self, exc: ProtocolError) -> None:
        self.session.report(exc)

    # -- abandonment -----------------------------------------------------------------------------

    async def _watchdog(self) -> None:
        period = max(0.02, min(0.25, self._config.idle_timeout_s / 4))
        while True:
            await asyncio.sleep(period)
            self.aligner.expire(time.time())
            now = time.monotonic()
            self._release(lambda frame_id, now=now: self._given_up(frame_id, now))
            if self._control is None or self._control.readyState != "open":
                if time.monotonic() - self.stats.started > self._config.connect_timeout_s:
                    self.request_close(f"not connected after {self._config.connect_timeout_s:.1f} s")
                    return
            elif time.monotonic() - self.stats.last_activity > self._config.idle_timeout_s:
                self.request_close(f"no traffic for {self._config.idle_timeout_s:.1f} s (abandoned)")
                return

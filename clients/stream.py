"""`xrseg stream`: any device source to a running engine, over WebSocket or WebRTC.

Frames are read from the source in a worker thread (cameras block), stamped with the time
they were read (live) or sent (recordings, paced at the source's rate), and sent in order. Every
`prompt_every`-th frame is prompted with the source's gaze samples, or, for a source without
eye tracking, with head gaze (the centre of the image). A progress line per second says the
frame rate sent, prompts answered and their latency; every failure ends with one line that says
what to do (`explain`), never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from urllib.parse import urlparse

from clients.channel import ChannelClosed
from clients.replies import EngineError, TimedResult
from clients.session import ClientSession, Transport
from clients.sources.base import Source, SourceError, SourceFrame, SourceInfo, SourceOptions
from clients.sources.registry import build_source
from engine.core import GazeSample, PointPrompt, Prompt
from engine.protocol import ErrorCode

DEFAULT_URLS = {Transport.WS: "ws://127.0.0.1:8765", Transport.WEBRTC: "http://127.0.0.1:8766"}


class PromptMode(StrEnum):
    GAZE = "gaze"  # the gaze samples as a gaze prompt
    CLICK = "click"  # a click (positive point) where the user looks


@dataclass(frozen=True)
class StreamConfig:
    """What `xrseg stream` does.

    Attributes:
        source: a name of clients.sources.registry.SOURCES; options: its settings.
        url: engine address (ws:// or http:// for WebRTC signalling); None: the transport's default.
        transport: None: from the URL's scheme.
        prompt_every: prompt on every n-th frame.
        depth_every: WebRTC only: depth rides every n-th frame; None: the prompted frames only
            (prompt_every), which keeps the data channel (~1.5 MB/s with aiortc) far from full;
            1: every frame, skipped while the channel is backed up.
        loopback: WebRTC ICE on 127.0.0.1 only; None: when the URL's host is local.
    """

    source: str
    options: SourceOptions
    url: str | None = None
    token: str = ""
    transport: Transport | None = None
    prompt_every: int = 5
    depth_every: int | None = None
    mode: PromptMode = PromptMode.GAZE
    video_codec: str = "VP8"
    loopback: bool | None = None
    connect_timeout_s: float = 20.0
    result_timeout_s: float = 30.0
    progress_every_s: float = 1.0

    def resolved(self) -> tuple[str, Transport]:
        kind = self.transport or (Transport.for_url(self.url) if self.url else Transport.WS)
        return self.url or DEFAULT_URLS[kind], kind


@dataclass
class StreamSummary:
    frames_sent: int = 0
    prompts_sent: int = 0
    results: list[TimedResult] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # errors other than the engine's overload drops
    dropped: list[str] = field(
        default_factory=list
    )  # prompts the engine dropped, overloaded (coded, counted)
    wall_s: float = 0.0
    session_id: str = ""

    @property
    def fps(self) -> float:
        return self.frames_sent / self.wall_s if self.wall_s > 0 else 0.0

    def latency_ms(self, q: float) -> float | None:
        values = sorted(r.latency_ms for r in self.results)
        return values[min(len(values) - 1, int(q * len(values)))] if values else None

    def line(self) -> str:
        p50, p95 = self.latency_ms(0.5), self.latency_ms(0.95)
        latency = (
            f"latency p50 {p50:.0f} ms, p95 {p95:.0f} ms"
            if p50 is not None and p95 is not None
            else "latency -"
        )
        return (
            f"{self.frames_sent} frames sent ({self.fps:.1f} fps) | {self.prompts_sent} prompts, "
            f"{len(self.results)} answered, {len(self.dropped)} dropped by the busy engine, "
            f"{len(self.failed)} failed | {latency}"
        )


async def run_stream(config: StreamConfig, echo: Callable[[str], None] = print) -> StreamSummary:
    """Stream the source to the engine until the source ends (or max_frames); returns what happened.

    Raises SourceError, EngineError, ChannelClosed, OSError, TimeoutError (see `explain`).
    """
    url, kind = config.resolved()
    source = build_source(config.source, config.options)
    info = await asyncio.to_thread(source.start)
    try:
        echo(
            f"source: {info.name} ({info.intrinsics.width}x{info.intrinsics.height}, "
            f"{'live' if info.live else f'recording at {info.fps:g} fps'})"
        )
        options = None
        if kind == Transport.WEBRTC:
            from clients.webrtc_client import RtcClientOptions

            loopback = config.loopback if config.loopback is not None else _is_local(url)
            options = RtcClientOptions(
                fps=info.fps,
                video_codec=config.video_codec,
                depth_every=config.depth_every or config.prompt_every,
                host_addresses=("127.0.0.1",) if loopback else None,
                connect_timeout_s=config.connect_timeout_s,
            )
        connector = ClientSession.connect(url, config.token, "xrseg-stream", transport=kind, options=options)
        client = await asyncio.wait_for(connector, config.connect_timeout_s)
        try:
            echo(f"engine: {client.welcome.model} at {url} over {kind}, session {client.session_id}")
            return await _stream(client, source, info, config, echo)
        finally:
            with contextlib.suppress(ConnectionError):
                await client.close()
    finally:
        await asyncio.to_thread(source.stop)


async def _stream(
    client: ClientSession, source: Source, info: SourceInfo, config: StreamConfig, echo: Callable[[str], None]
) -> StreamSummary:
    summary = StreamSummary(session_id=client.session_id)
    pending: set[asyncio.Future[TimedResult]] = set()
    period = 1.0 / info.fps
    start = time.perf_counter()
    last_progress = start

    def done(future: asyncio.Future[TimedResult]) -> None:
        pending.discard(future)
        if future.cancelled():
            return
        if (exc := future.exception()) is not None:
            overloaded = isinstance(exc, EngineError) and exc.code == ErrorCode.OVERLOADED
            (summary.dropped if overloaded else summary.failed).append(str(exc))
        else:
            summary.results.append(future.result())

    index = 0
    while True:
        item: SourceFrame | None = await asyncio.to_thread(source.read)
        if item is None:
            break
        now = time.time()
        if not info.live:
            delay = start + index * period - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing a recording at its frame rate
            now = time.time()
        frame = replace(item.frame, frame_id=index, capture_ts=now)
        await client.send_frame(frame)  # the transport's codecs: WebSocket JPEG + PNG16, WebRTC video + rdz
        summary.frames_sent += 1
        if index % config.prompt_every == 0:
            gaze = _gaze_now(item, now)
            if gaze:
                future = client.prompt_nowait(_prompt(index, gaze, config.mode))
                future.add_done_callback(done)
                pending.add(future)
                summary.prompts_sent += 1
        index += 1
        if time.perf_counter() - last_progress >= config.progress_every_s:
            last_progress = time.perf_counter()
            summary.wall_s = last_progress - start
            echo(summary.line())
    if pending:
        await asyncio.wait(set(pending), timeout=config.result_timeout_s)
    summary.wall_s = time.perf_counter() - start
    return summary


def _gaze_now(item: SourceFrame, now: float) -> tuple[GazeSample, ...]:
    """The frame's gaze samples moved onto the send clock, or head gaze (image centre) without any."""
    if item.gaze:
        shift = now - item.device_ts
        return tuple(replace(g, t=g.t + shift) for g in item.gaze)
    k = item.frame.intrinsics
    return (GazeSample(t=now, x=k.width / 2.0, y=k.height / 2.0, confidence=1.0),)


def _prompt(index: int, gaze: tuple[GazeSample, ...], mode: PromptMode) -> Prompt:
    if mode == PromptMode.GAZE:
        return Prompt(prompt_id=index, frame_id=index, gaze=gaze)
    last = gaze[-1]
    return Prompt(prompt_id=index, frame_id=index, points=(PointPrompt(last.x, last.y),))


def _is_local(url: str) -> bool:
    return (urlparse(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


def explain(exc: BaseException, config: StreamConfig) -> str | None:
    """One line telling the user what went wrong and what to do; None for an unexpected error."""
    url, kind = config.resolved()
    serve = "start it with `xrseg serve --token TOKEN`"
    cause = getattr(exc, "os_error", None)  # aiohttp wraps the socket's error
    if isinstance(cause, OSError):
        exc = cause
    match exc:
        case SourceError():
            return str(exc)
        case EngineError(code=ErrorCode.UNAUTHORIZED):
            return (
                f"the engine at {url} refused the token ({exc.message}): pass the token it was started "
                "with (--token); to resume a session, its session id must still be alive"
            )
        case EngineError():
            return f"the engine at {url} refused the session: {exc.code}: {exc.message}"
        case ConnectionRefusedError() | OSError(errno=errno.ECONNREFUSED):
            return f"cannot reach the engine at {url} (connection refused): {serve}, or check --url"
        case ChannelClosed():
            return f"the engine closed the connection: {exc}. It may have stopped; reconnecting resumes it"
        case TimeoutError():
            return (
                f"no answer from the engine at {url} within {config.connect_timeout_s:g} s over {kind}: "
                f"is it running and reachable ({serve})?"
            )
        case OSError():
            return f"cannot reach the engine at {url}: {exc.strerror or exc}: {serve}, or check --url"
        case ValueError():
            return str(exc)
    module = type(exc).__module__
    if module.startswith(("aiohttp", "websockets")):
        return f"cannot talk to the engine at {url} over {kind}: {exc}; is --url the engine's {kind} address?"
    return None

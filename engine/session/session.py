"""One client's stream, as a facade over small parts (see engine/session/__init__.py for the map).

The facade routes messages, owns the session's tasks and its lifecycle, and sends what the
handlers return; it decides nothing about frames, keyframes or prompts itself.

Each prompt is answered in a task of its own (at most `prompt_queue` at once), so a prompt waiting
for a keyframe never blocks the prompts behind it; the session's blocking calls go to the worker
pool one at a time (`SerialRunner`), so one busy session cannot starve the others. Replies go
through a bounded outbox drained by one sender task: a client that does not read loses replies
(counted), never the engine's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from engine.core import Prompt
from engine.errors import Overloaded, SessionClosed
from engine.protocol import (
    SESSION_REQUESTS,
    Bye,
    Cancel,
    Envelope,
    ErrorCode,
    Message,
    MessageType,
    Ping,
    Pong,
    PromptMessage,
    ProtocolError,
    SessionStats,
    StatsMessage,
    decode_envelope,
)
from engine.protocol.capture import CaptureRequest
from engine.scheduler import Keyframe
from engine.session.context import SessionContext
from engine.session.frames import PendingFrame
from engine.session.handlers import (
    BACKGROUND,
    CAPTURE,
    HANDLERS,
    cancel_tracking,
    prompt_kind,
    resume_deferred_speculation,
)
from engine.session.lease import Lease, Leases
from engine.session.outbox import Outbox, SendFn
from engine.session.parts import Failure, Outgoing, build_parts, session_stats
from engine.session.prompt_queue import PromptJob, PromptQueue
from engine.session.wire import is_expected, outgoing_message

log = logging.getLogger(__name__)
_CONGESTION_POLL_S = 0.02  # how often a session parked on a non-reading client looks again


class Session:
    """State and work of one client. Lifecycle: attach() -> receive()/offer_frame()* -> close()."""

    def __init__(self, session_id: str, context: SessionContext) -> None:
        """Who may resume it is the engine's business (engine/server.py), not the session's."""
        self.session_id = session_id
        config = context.config
        self._parts = build_parts(session_id, context, self._landed)
        self._frames = self._parts.frames
        self._queue = PromptQueue(config.prompt_queue)
        self._max_inflight = config.prompt_queue
        self._inflight: set[asyncio.Task[None]] = set()
        self._outbox = Outbox(config.reply_queue, f"session {session_id}", self._maybe_idle)
        self._busy = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []  # worker and sender: started on first attach
        self._leases = Leases(session_id)
        self._congested: Callable[[], bool] = lambda: False
        self.detached_at: float | None = None
        self.closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    def attach(self, send: SendFn, congested: Callable[[], bool] = lambda: False) -> Lease:
        """Connect (or reconnect) the transport that carries replies; the previous lease is revoked.
        `congested`: the transport's replies are piling up (its client is not reading)."""
        if self.closed:
            raise SessionClosed(f"session {self.session_id} is closed; open a new session")
        lease = self._leases.grant()
        self._outbox.send, self._congested = send, congested
        self.detached_at = None
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._work(), name=f"session-{self.session_id}"),
                asyncio.create_task(self._outbox.run(), name=f"session-{self.session_id}-send"),
            ]
        return lease

    def detach(self, lease: Lease) -> bool:
        """That connection went away; keep state so the client can resume. A stale lease (a newer
        connection resumed the session meanwhile) changes nothing; returns whether it was current."""
        if self.closed or not self._leases.release(lease):
            return False
        self._outbox.send = None
        self.detached_at = time.monotonic()
        return True

    def resuming(self) -> None:
        """A client is resuming (its hello was accepted): restart the reaper's clock, so the session
        is not freed while that client's handshake finishes."""
        if self.detached_at is not None:
            self.detached_at = time.monotonic()

    async def close(self) -> None:
        """Stop every task this session started and forget its state (replies already posted, such
        as the stats of a goodbye, get a moment to reach the transport first)."""
        if self._outbox.send is not None and self._tasks:
            await self._outbox.drain(1.0)
        self.closed = True
        self._leases.revoke()
        self._outbox.send = None
        tasks = [*self._tasks, *self._inflight]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks, self._inflight = [], set()
        if self._parts.capture is not None:
            await self._parts.capture.close()
        self._parts.keyframes.close()
        self._frames.clear()
        self._queue.clear()
        self._parts.tracks.clear()

    # -- read-only views (tests, metrics) ------------------------------------------------------

    @property
    def stats(self) -> SessionStats:
        return session_stats(self._parts, self._queue, self._outbox)

    @property
    def keyframe(self) -> Keyframe | None:  # the keyframe prompts are answered from
        return self._parts.keyframes.keyframe

    @property
    def tracked(self) -> tuple[int, ...]:  # prompt_ids of the objects being tracked
        return tuple(self._parts.tracks)

    async def idle(self) -> None:
        """Until nothing is left to do: every prompt answered, speculation and tracking caught up
        with the newest frame, every reply handed to the transport. For tests and benchmarks."""
        await self._idle.wait()

    # -- inbound -----------------------------------------------------------------------------

    async def receive(self, env: Envelope) -> None:
        """Route one parsed message. Errors go back to this client only."""
        received = time.time()
        try:
            if env.type == MessageType.FRAME:  # decoded lazily, when a prompt or refresh needs it
                self.offer_frame(PendingFrame.from_envelope(env, self._parts.config, received))
                return
            if env.type == MessageType.HELLO:
                raise ProtocolError(ErrorCode.INVALID_FIELD, "session already open; send hello only once")
            if env.type not in SESSION_REQUESTS:
                raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"clients may not send {env.type!r} messages")
            match decode_envelope(env, self._parts.config.limits):
                case PromptMessage() as msg:
                    self.submit(msg, received)
                case Cancel(prompt_id=prompt_id):
                    self.cancel_tracking(prompt_id)
                case Ping(t=t):
                    self._post(Pong(t, time.time()))
                    self._post(StatsMessage(self.stats))
                case CaptureRequest() as msg:  # may take seconds (a mesh on stop): a task of its own
                    self._spawn(self._capture(msg), f"capture-{msg.prompt_id}")
                case Bye():
                    self._post(StatsMessage(self.stats))
        except ProtocolError as exc:
            self.report(exc, None)

    def offer_frame(self, pending: PendingFrame) -> None:
        """Keep the newest frames; the keyframe source sees each (camera motion is free to check)."""
        self._frames.offer(pending)
        self._parts.keyframes.maybe_refresh(pending)
        if self._parts.tracks:
            self._poke()

    def submit(self, message: PromptMessage | Prompt, received: float | None = None) -> None:
        """Queue a prompt (answer mode, tracking, everything); a bare v1 Prompt is answered, not tracked."""
        message = PromptMessage(message) if isinstance(message, Prompt) else message
        arrived = received if received is not None else time.time()
        dropped = self._queue.push(PromptJob(message, arrived, self._frames.get(message.prompt.frame_id)))
        if dropped is not None and not self._congested():  # a client not reading would not see it
            late = Overloaded("prompt dropped: newer prompts arrived faster than answered")
            self.report(late, dropped.prompt_id)
        self._poke()

    def cancel_tracking(self, prompt_id: int | None = None) -> None:
        """Stop tracking one object (or all); no result of kind track follows for it, and its
        capture, if any, is dropped (a capture fuses the tracked masks)."""
        capture = self._parts.capture
        for pid in cancel_tracking(self._parts, prompt_id):
            if capture is not None:
                self._spawn(capture.forget(pid), f"forget-capture-{pid}")

    # -- outbound ----------------------------------------------------------------------------

    def report(self, exc: Exception, ref_id: int | None = None) -> None:
        """Send a coded error for `exc` to this client (transports use it for bytes they reject)."""
        self._deliver([Failure(exc, ref_id)])

    def _deliver(self, outgoing: list[Outgoing]) -> None:
        for item in outgoing:
            self._post(outgoing_message(item, self._parts.counters, self.session_id))

    def _post(self, message: Message) -> None:
        self._outbox.post(message)
        if self._outbox.unsent:
            self._idle.clear()  # set again once the sender has handed it over

    # -- work --------------------------------------------------------------------------------

    async def _work(self) -> None:
        """Start prompt tasks while slots are free; else run due background work; else sleep."""
        parts = self._parts
        while True:
            self._wake.clear()
            congested = self._congested()
            if congested and self._queue:
                await self._park_while_congested()
                continue
            if self._queue and len(self._inflight) < self._max_inflight:
                job = self._queue.pop()
                self._spawn(self._answer(job), f"prompt-{job.prompt_id}", job)
                await job.admitted  # prepared in order; only keyframe waits overlap
                continue
            idle = not (self._queue or congested)
            work = next((w for w in BACKGROUND if w.due(parts)), None) if idle else None
            if work is not None:
                self._busy = True
                try:
                    self._deliver(await self._guarded(work.run(parts), None))
                finally:
                    self._busy = False
                continue
            self._maybe_idle()
            await self._wake.wait()

    async def _park_while_congested(self) -> None:
        """The client is not reading: an answer now would be dropped and would take the cores from
        sessions that read. Keep the newest prompt (drop and count the rest) until the client drains."""
        self._parts.counters.prompts_dropped += self._queue.keep_newest()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), _CONGESTION_POLL_S)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str, job: PromptJob | None = None) -> None:
        """Every task the session starts is kept (and cancelled on close)."""
        task = asyncio.create_task(work, name=f"session-{self.session_id}-{name}")
        self._inflight.add(task)
        task.add_done_callback(lambda done: self._finished(done, job))

    async def _capture(self, request: CaptureRequest) -> None:
        self._deliver(await self._guarded(CAPTURE.handle(request, self._parts), request.prompt_id))

    async def _answer(self, job: PromptJob) -> None:
        handler = HANDLERS[prompt_kind(job.message)]
        self._deliver(await self._guarded(handler.handle(job, self._parts), job.prompt_id))
        self._parts.keyframes.withdraw()

    def _finished(self, task: asyncio.Task[None], job: PromptJob | None) -> None:
        if job is not None:
            job.admit()
        self._inflight.discard(task)
        self._poke()

    async def _guarded(self, work: Coroutine[Any, Any, list[Outgoing]], ref_id: int | None) -> list[Outgoing]:
        """Run one work item; its failure becomes a coded error for this client and the session goes on."""
        try:
            return await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the session must outlive any single bad item
            if not is_expected(exc):
                log.exception("session %s: work item (ref %s) failed", self.session_id, ref_id)
            return [Failure(exc, ref_id)]

    def _landed(self) -> None:
        """A keyframe encode finished: waiting background work (a deferred speculation) may run."""
        resume_deferred_speculation(self._parts)
        self._poke()

    def _poke(self) -> None:
        self._idle.clear()
        self._wake.set()

    def _maybe_idle(self) -> None:
        busy = self._queue or self._inflight or self._busy or self._outbox.unsent
        if not busy and not any(w.due(self._parts) for w in BACKGROUND):
            self._idle.set()

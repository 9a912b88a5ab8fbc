"""The Engine: one model, one worker pool, one keyframe encoder, many isolated sessions.

Transports (engine/transport/*) authenticate clients through `open_session`, feed the session
they get, and call `detach` when their connection ends. A detached session lingers so a client
that lost its connection can resume it; the reaper frees it after `session_linger_s`. Only the
identity that opened a session (engine/auth.py) may resume it, and failed attempts (wrong
token, someone else's session id) are rate-limited per address.

Wire codes are chosen here, at the edge: AuthError becomes `unauthorized`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from engine.admission import ConnectionGate, FailedAuthLimiter
from engine.auth import AuthConfig, Authenticator, AuthError, Identity
from engine.backends import build_backend
from engine.capture.store import CaptureStore, default_store_dir
from engine.config import EngineConfig
from engine.logging_setup import LogThrottle
from engine.metrics import EngineMetrics
from engine.pipeline import warm_up
from engine.protocol import ErrorCode, Hello, ProtocolError
from engine.scheduler import KeyframeEncoder
from engine.session import Session, SessionContext
from engine.text_answer import TextRanker

if TYPE_CHECKING:
    from engine.remote.sessions import SessionDirectory
from models.interfaces import SegmentationModel

log = logging.getLogger(__name__)


class Engine:
    """Lifecycle: `async with Engine(config) as engine:` (or start() / stop())."""

    def __init__(self, config: EngineConfig, model: SegmentationModel | None = None) -> None:
        self.config = config
        self._model = model
        self._release_backend: Callable[[], None] | None = None
        self._directory: SessionDirectory | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._encoder_executor: ThreadPoolExecutor | None = None
        self._encoder: KeyframeEncoder | None = None
        self._context: SessionContext | None = None
        self._sessions: dict[str, Session] = {}
        self._captures: CaptureStore | None = None
        self._captures_lock = asyncio.Lock()
        self._owners: dict[str, str] = {}  # session id -> identity that opened it
        self._reaper: asyncio.Task[None] | None = None
        self._auth = Authenticator(AuthConfig(config.token_secret, config.tokens))
        a = config.admission
        self._failed_auth = FailedAuthLimiter(a.auth_failures_burst, a.auth_failures_per_s, a.max_addresses)
        self.gate = ConnectionGate(a)
        self.metrics = EngineMetrics(lambda: self._sessions.values(), lambda: self._encoder)
        self.log_throttle = LogThrottle()

    async def start(self) -> None:
        # The model and CLIP, in this process or behind Ray Serve (engine/backends.py).
        backend = await asyncio.to_thread(build_backend, self.config, self._model)
        self._model, self._release_backend = backend.model, backend.close
        self._directory = backend.sessions  # ray: sessions resumable across front-end restarts
        text = TextRanker(backend.text, self.config.text_ranking) if backend.text is not None else None
        self._executor = ThreadPoolExecutor(self.config.workers, thread_name_prefix="xrseg-worker")
        # Keyframe encodes get a thread of their own so a long encode never holds up a prompt's decode.
        self._encoder_executor = ThreadPoolExecutor(1, thread_name_prefix="xrseg-encoder")
        self._encoder = KeyframeEncoder(self._model, self._encoder_executor, self.config.keyframes)
        self._encoder.start()
        self._context = SessionContext(
            self._model, self._executor, self.config, self._encoder, text=text, capture_store=self.capture_store
        )
        if self.config.warm_up:
            assert self._context.pipeline is not None
            await asyncio.get_running_loop().run_in_executor(
                self._encoder_executor, warm_up, self._context.pipeline
            )
        self._reaper = asyncio.create_task(self._reap_forever(), name="session-reaper")
        log.info(
            "engine started: model=%s workers=%d keyframes=%s",
            self._model.name,
            self.config.workers,
            self.config.keyframes.policy,
        )

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for session in list(self._sessions.values()):
            await self.close_session(session, forget=False)  # resumable on the next front-end (ray)
        if self._encoder is not None:
            await self._encoder.stop()
            self._encoder = None
        for executor in (self._executor, self._encoder_executor):
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
        self._executor = self._encoder_executor = None
        if self._release_backend is not None:
            self._release_backend()
            self._release_backend = None

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def model(self) -> SegmentationModel:
        if self._model is None:
            raise RuntimeError("engine not started")
        return self._model

    @property
    def encoder(self) -> KeyframeEncoder:
        """The engine-wide keyframe encoder (its `stats` show batching)."""
        if self._encoder is None:
            raise RuntimeError("engine not started")
        return self._encoder

    @property
    def sessions(self) -> dict[str, Session]:
        """Live sessions by id (read-only view for metrics and tests)."""
        return dict(self._sessions)

    def authenticate(self, token: str, peer: str = "") -> Identity:
        """The identity a token proves, or ProtocolError(UNAUTHORIZED); failures are rate-limited per peer address."""
        wait = self._failed_auth.blocked_for(peer)
        if wait > 0:
            self.metrics.auth_failures.labels("rate_limited").inc()
            raise ProtocolError(
                ErrorCode.UNAUTHORIZED, f"too many failed attempts from your address; retry in {wait:.0f} s"
            )
        try:
            return self._auth.verify(token)
        except AuthError as exc:
            self._auth_failed(peer, exc.reason)
            raise ProtocolError(ErrorCode.UNAUTHORIZED, exc.message) from None

    def refusal_delay(self, peer: str) -> float:
        """Seconds to hold a refused hello from `peer` before answering: 0 until the address has
        used up its failed-auth burst, then up to 1 s (a tarpit: each guess costs the guesser a
        second, and the engine only a sleeping connection within the per-address pending cap)."""
        return min(self._failed_auth.blocked_for(peer), 1.0)

    async def capture_store(self) -> CaptureStore:
        """The engine's capture store (engine/capture/store.py), opened on first use so that an
        engine that never captures writes nothing."""
        async with self._captures_lock:
            if self._captures is None:
                folder = self.config.capture_dir or default_store_dir()
                self._captures = await asyncio.to_thread(CaptureStore, folder)
        return self._captures

    def open_session(self, hello: Hello, peer: str = "") -> Session:
        """Authenticate a Hello and return a new session, or the one it resumes (same identity only).

        peer: the client's address, for the failed-auth rate limit.
        """
        if self._context is None:
            raise RuntimeError("engine not started")
        identity = self.authenticate(hello.token, peer)
        if hello.session_id is not None:
            session = self._sessions.get(hello.session_id)
            if session is None and self._directory is not None:
                session = self._adopt(hello.session_id, identity)
            if session is None or session.closed or self._owners.get(hello.session_id) != identity.name:
                self._auth_failed(peer, "resume_denied")  # same answer either way: ids cannot be probed
                raise ProtocolError(
                    ErrorCode.UNAUTHORIZED, "no session with that id to resume for this identity; open a new one"
                )
            session.resuming()  # the reaper must not free it while this client's handshake finishes
            log.info("session %s resumed", session.session_id)
            return session
        session = Session(secrets.token_urlsafe(16), self._context)
        self._sessions[session.session_id] = session
        self._owners[session.session_id] = identity.name
        if self._directory is not None:
            self._directory.record(session.session_id, identity.name)
        log.info("session %s opened by %r", session.session_id, hello.client[:64])
        return session

    def _adopt(self, session_id: str, identity: Identity) -> Session | None:
        """A session another front-end (or this one before a restart) opened for this identity,
        taken over empty: its frames and keyframes died with that process. None if unknown.
        Blocks on the cluster's table for at most 2 s (only on this rare path)."""
        assert self._context is not None
        if self._directory is None or self._directory.owner(session_id) != identity.name:
            return None
        session = Session(session_id, self._context)
        self._sessions[session_id] = session
        self._owners[session_id] = identity.name
        log.info("session %s taken over from an earlier front-end (its frames are gone)", session_id)
        return session

    def _auth_failed(self, peer: str, reason: str) -> None:
        self._failed_auth.failed(peer)
        self.metrics.auth_failures.labels(reason).inc()
        if self.log_throttle.allow("auth_failed"):
            log.warning("failed authentication (%s) from %s [%d similar lines suppressed]", reason, peer or "?",
                        self.log_throttle.take_suppressed("auth_failed"))

    async def close_session(self, session: Session, forget: bool = True) -> None:
        """Close and free a session; forget=False keeps it resumable on another front-end (ray)."""
        if forget and self._directory is not None:
            self._directory.forget(session.session_id)
        if self._sessions.pop(session.session_id, None) is not None:
            self._owners.pop(session.session_id, None)
            self.metrics.retire(session.stats)  # no await between pop and retire: totals never dip
            await session.close()
        else:
            await session.close()
        log.info("session %s closed", session.session_id)

    async def reap_idle(self) -> int:
        """Free sessions detached longer than session_linger_s; returns how many."""
        now = time.monotonic()
        expired = [
            s
            for s in self._sessions.values()
            if s.detached_at is not None and now - s.detached_at > self.config.session_linger_s
        ]
        for session in expired:
            await self.close_session(session)
        return len(expired)

    async def _reap_forever(self) -> None:
        interval = max(0.05, min(5.0, self.config.session_linger_s / 4))
        while True:
            await asyncio.sleep(interval)
            await self.reap_idle()

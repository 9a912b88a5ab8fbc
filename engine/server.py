"""The Engine: one model, one worker pool, one keyframe encoder, many isolated sessions.

Transports (engine/transport/*) authenticate clients through `open_session`, feed the session
they get, and call `detach` when their connection ends. A detached session lingers so a client
that lost its connection can resume it with its token; the reaper frees it after
`session_linger_s`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

from engine.config import EngineConfig
from engine.pipeline import warm_up
from engine.protocol import ErrorCode, Hello, ProtocolError
from engine.scheduler import KeyframeEncoder
from engine.session import Session, SessionContext
from engine.text_answer import TextRanker, load_clip_encoder
from models.interfaces import SegmentationModel
from models.registry import ModelSpec, build_model

log = logging.getLogger(__name__)


class Engine:
    """Lifecycle: `async with Engine(config) as engine:` (or start() / stop())."""

    def __init__(self, config: EngineConfig, model: SegmentationModel | None = None) -> None:
        self.config = config
        self._model = model
        self._executor: ThreadPoolExecutor | None = None
        self._encoder_executor: ThreadPoolExecutor | None = None
        self._encoder: KeyframeEncoder | None = None
        self._context: SessionContext | None = None
        self._sessions: dict[str, Session] = {}
        self._reaper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._model is None:
            spec = ModelSpec(self.config.model, self.config.checkpoint, self.config.device)
            self._model = await asyncio.to_thread(build_model, spec)
        text = None
        if self.config.clip_checkpoint is not None:  # voice text prompts (engine/text_answer.py)
            c = self.config
            clip = await asyncio.to_thread(load_clip_encoder, c.clip_checkpoint, c.clip_arch, c.device)
            text = TextRanker(clip, self.config.text_ranking)
        self._executor = ThreadPoolExecutor(self.config.workers, thread_name_prefix="xrseg-worker")
        # Keyframe encodes get a thread of their own so a long encode never holds up a prompt's decode.
        self._encoder_executor = ThreadPoolExecutor(1, thread_name_prefix="xrseg-encoder")
        self._encoder = KeyframeEncoder(self._model, self._encoder_executor, self.config.keyframes)
        self._encoder.start()
        self._context = SessionContext(self._model, self._executor, self.config, self._encoder, text=text)
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
            await session.close()
        self._sessions.clear()
        if self._encoder is not None:
            await self._encoder.stop()
            self._encoder = None
        for executor in (self._executor, self._encoder_executor):
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
        self._executor = self._encoder_executor = None

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

    def open_session(self, hello: Hello) -> Session:
        """Authenticate a Hello and return a new session, or the one it resumes."""
        if self._context is None:
            raise RuntimeError("engine not started")
        if self.config.tokens and not any(hmac.compare_digest(hello.token, t) for t in self.config.tokens):
            raise ProtocolError(
                ErrorCode.UNAUTHORIZED, "wrong or missing session token; ask the engine operator for one"
            )
        if hello.session_id is not None:
            session = self._sessions.get(hello.session_id)
            if session is None or not hmac.compare_digest(session.token, hello.token):
                raise ProtocolError(
                    ErrorCode.UNAUTHORIZED,
                    f"no session {hello.session_id!r} to resume for this token; open a new one",
                )
            session.resuming()  # the reaper must not free it while this client's handshake finishes
            log.info("session %s resumed", session.session_id)
            return session
        session = Session(secrets.token_urlsafe(9), hello.token, self._context)
        self._sessions[session.session_id] = session
        log.info("session %s opened by %r", session.session_id, hello.client)
        return session

    async def close_session(self, session: Session) -> None:
        self._sessions.pop(session.session_id, None)
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

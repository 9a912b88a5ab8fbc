"""A real Engine with sessions fed in-process: what a transport would do, and what it would send back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from engine.core import RGBDFrame
from engine.protocol import ErrorMessage, Hello, Message, ResultKind, ResultMessage, StatsMessage
from engine.server import Engine
from engine.session import PendingFrame, Session


class Inbox:
    """Collects what a session sends; waits on a condition, never on a clock."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._changed = asyncio.Condition()

    async def send(self, msg: Message) -> None:
        async with self._changed:
            self.messages.append(msg)
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 30.0) -> Message:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: any(predicate(m) for m in self.messages)), timeout
            )
            return next(m for m in self.messages if predicate(m))

    async def result(
        self,
        prompt_id: int,
        kind: ResultKind | None = None,
        frame_id: int | None = None,
        timeout: float = 30.0,
    ) -> ResultMessage:
        def match(m: Message) -> bool:
            return (
                isinstance(m, ResultMessage)
                and m.result.prompt_id == prompt_id
                and (kind is None or m.kind is kind)
                and (frame_id is None or m.result.frame_id == frame_id)
            )

        msg = await self.wait_for(
            lambda m: match(m) or (isinstance(m, ErrorMessage) and m.ref_id == prompt_id), timeout
        )
        if isinstance(msg, ErrorMessage):
            raise AssertionError(f"engine error for prompt {prompt_id}: {msg.code} {msg.message}")
        assert isinstance(msg, ResultMessage)
        return msg

    def results(self, kind: ResultKind | None = None) -> list[ResultMessage]:
        return [m for m in self.messages if isinstance(m, ResultMessage) and (kind is None or m.kind is kind)]

    def errors(self) -> list[ErrorMessage]:
        return [m for m in self.messages if isinstance(m, ErrorMessage)]

    def stats(self) -> list[StatsMessage]:
        return [m for m in self.messages if isinstance(m, StatsMessage)]


def open_session(engine: Engine, name: str = "test") -> tuple[Session, Inbox]:
    inbox = Inbox()
    session = engine.open_session(Hello(token="local", client=name))
    session.attach(inbox.send)
    return session, inbox


def offer(session: Session, frame: RGBDFrame) -> None:
    session.offer_frame(PendingFrame.from_frame(frame, frame.capture_ts))


async def settle(engine: Engine, session: Session) -> None:
    """Until the session and the engine's encoder have nothing left to do: what the time between
    two frames of a live stream allows (a keyframe that lands wakes the session once more)."""
    await session.idle()
    await engine.encoder.wait_idle()
    await session.idle()

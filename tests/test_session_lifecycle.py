"""Session lifecycle by leases: stale detaches, resume during reaping, closed sessions, owned tasks."""

from __future__ import annotations

import asyncio
import time

import pytest

from clients.ws_client import XrsegClient
from engine.config import EngineConfig
from engine.core import PointPrompt, Prompt
from engine.errors import SessionClosed
from engine.protocol import Hello, ImageCodec
from engine.server import Engine
from engine.transport.websocket import WebSocketTransport
from tests.conftest import TOKEN, LiveEngine, block_frame
from tests.session_inbox import Inbox, offer, open_session


async def test_a_stale_connection_closing_does_not_silence_the_resumed_one(live_engine: LiveEngine) -> None:
    """Connection A loses its network (no goodbye), B resumes the session, then A's socket closes:
    B must go on getting answers. Before leases, A's close detached the session from B."""
    frame, block = block_frame(3)
    first = await XrsegClient.connect(live_engine.url, TOKEN)
    await first.send_frame(frame, ImageCodec.PNG)
    async with XrsegClient.connect(live_engine.url, TOKEN, session_id=first.session_id) as second:
        await first.close(bye=False)  # the stale connection goes away after the resume
        session = live_engine.engine.sessions[second.session_id]
        for _ in range(100):  # until the server has seen A's close
            await asyncio.sleep(0.01)
        result = await second.prompt(Prompt(1, 3, points=(PointPrompt(60, 60),)), timeout=20)
        assert result.frame_id == 3 and (result.masks[result.best].mask.decode() & block).sum() > 0
        assert session.detached_at is None


async def test_detach_with_a_revoked_lease_changes_nothing() -> None:
    async with Engine(EngineConfig(port=0, warm_up=False)) as engine:
        session, inbox = open_session(engine)
        stale = session.attach(inbox.send)
        newer = Inbox()
        current = session.attach(newer.send)
        assert session.detach(stale) is False and session.detached_at is None
        frame, _ = block_frame(1)
        offer(session, frame)
        session.submit(Prompt(1, 1, points=(PointPrompt(60, 60),)))
        await newer.result(1)
        assert session.detach(current) is True and session.detached_at is not None


async def test_a_resume_restarts_the_reapers_clock() -> None:
    """The reaper runs while a resuming client's handshake is under way: the session it resumes
    must survive until the client attaches. Before, a session whose linger had run out was freed
    between the accepted hello and the attach, and the client got a dead session."""
    async with Engine(EngineConfig(port=0, warm_up=False, session_linger_s=5.0)) as engine:
        session, inbox = open_session(engine)
        lease = session.attach(inbox.send)
        session.detach(lease)
        session.detached_at = time.monotonic() - 6.0  # its linger ran out a second ago
        resumed = engine.open_session(Hello(token="local", client="test", session_id=session.session_id))
        assert resumed is session
        assert await engine.reap_idle() == 0 and not session.closed  # the handshake is under way
        again = Inbox()
        resumed.attach(again.send)
        frame, _ = block_frame(2)
        offer(session, frame)
        session.submit(Prompt(1, 2, points=(PointPrompt(60, 60),)))
        await again.result(1)


async def test_attaching_to_a_closed_session_is_an_error() -> None:
    async with Engine(EngineConfig(port=0, warm_up=False)) as engine:
        session, _ = open_session(engine)
        await engine.close_session(session)
        with pytest.raises(SessionClosed):
            session.attach(Inbox().send)


async def test_close_cancels_every_task_the_session_started() -> None:
    async with Engine(EngineConfig(port=0, warm_up=False)) as engine:
        session, inbox = open_session(engine)
        frame, _ = block_frame(1)
        offer(session, frame)
        for i in range(5):
            session.submit(Prompt(i, 1, points=(PointPrompt(60, 60),)))
        await asyncio.sleep(0)
        prefix = f"session-{session.session_id}"
        assert any(t.get_name().startswith(prefix) for t in asyncio.all_tasks())
        await engine.close_session(session)
        left = [t for t in asyncio.all_tasks() if t.get_name().startswith(prefix) and not t.done()]
        assert left == []


async def test_a_client_that_never_reads_loses_replies_not_memory() -> None:
    """The transport's send blocks forever (a client that stopped reading): replies beyond the
    outbox are dropped and counted; prompts keep being answered; nothing else grows."""
    config = EngineConfig(port=0, warm_up=False, reply_queue=4)
    async with Engine(config) as engine:
        session = engine.open_session(Hello(token="local", client="stuck"))
        never = asyncio.Event()

        async def blocked_send(message: object) -> None:
            await never.wait()

        session.attach(blocked_send)
        frame, _ = block_frame(1)
        offer(session, frame)
        for i in range(40):
            session.submit(Prompt(i, 1, points=(PointPrompt(60, 60),)))
            await asyncio.sleep(0.02)
        for _ in range(300):
            if session.stats.prompts_answered + session.stats.prompts_dropped >= 40:
                break
            await asyncio.sleep(0.05)
        stats = session.stats
        assert stats.prompts_answered + stats.prompts_dropped == 40
        assert stats.replies_dropped >= stats.prompts_answered - config.reply_queue - 1
        named = [t for t in asyncio.all_tasks() if t.get_name().startswith(f"session-{session.session_id}")]
        assert len(named) <= 2 + config.prompt_queue  # worker, sender, prompt tasks: bounded


async def test_websocket_transport_refuses_attach_to_a_session_closed_during_the_handshake() -> None:
    async with Engine(EngineConfig(port=0, tokens=(TOKEN,), warm_up=False)) as engine:
        transport = WebSocketTransport(engine, "127.0.0.1", 0)
        await transport.start()
        try:
            client = await XrsegClient.connect(transport.url, TOKEN)
            await client.close(bye=True)
            for _ in range(100):
                if client.session_id not in engine.sessions:
                    break
                await asyncio.sleep(0.01)
            assert client.session_id not in engine.sessions
        finally:
            await transport.stop()


@pytest.mark.parametrize("congested", [False, True])
async def test_a_client_that_does_not_read_gets_no_work_until_it_drains_then_its_newest_prompt(
    congested: bool,
) -> None:
    """While the transport's replies pile up (its client is not reading), the session computes
    nothing for it: older prompts are dropped (counted), the newest waits. Once the client has
    drained its replies, the newest is answered. A reading client gets every answer."""
    async with Engine(EngineConfig(port=0, warm_up=False)) as engine:
        session = engine.open_session(Hello(token="local", client="test"))
        inbox = Inbox()
        piling_up = [congested]
        session.attach(inbox.send, lambda: piling_up[0])
        frame, _ = block_frame(1)
        offer(session, frame)
        for i in range(1, 6):
            session.submit(Prompt(i, 1, points=(PointPrompt(60, 60),)))
        if congested:
            await asyncio.sleep(0.3)
            assert inbox.results() == []  # nothing computed while the client does not read
            assert session.stats.prompts_dropped == 4
            piling_up[0] = False  # the client reads again
        await asyncio.wait_for(session.idle(), 30)
        answered = sorted(m.result.prompt_id for m in inbox.results())
        stats = session.stats
    assert answered == ([5] if congested else [1, 2, 3, 4, 5])
    assert stats.prompts_dropped == (4 if congested else 0)

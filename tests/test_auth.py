"""Signed expiring tokens, identity-owned sessions, failed-auth rate limiting (real Engine, real WebSocket)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner
from websockets.asyncio.client import connect

from clients.ws_client import EngineError, XrsegClient
from engine.admission import AdmissionConfig
from engine.auth import AuthConfig, Authenticator, AuthError, mint_token
from engine.config import EngineConfig
from engine.core import PointPrompt, Prompt
from engine.protocol import ErrorCode, ErrorMessage, ImageCodec, decode_message
from engine.server import Engine
from engine.transport.websocket import WebSocketTransport
from tests.conftest import TOKEN, LiveEngine, block_frame

SECRET = b"0123456789abcdef0123456789abcdef"


def test_mint_and_verify() -> None:
    auth = Authenticator(AuthConfig(secret=SECRET))
    token = mint_token(SECRET, "alice", 60, now=1000.0)
    identity = auth.verify(token, now=1030.0)
    assert identity.name == "alice" and identity.signed and identity.expires == 1060.0
    with pytest.raises(AuthError) as info:
        auth.verify(token, now=1100.0)
    assert info.value.reason == "expired"
    with pytest.raises(AuthError) as info:
        auth.verify(mint_token(b"another secret of 32 bytes......", "alice", 60, now=1000.0), now=1001.0)
    assert info.value.reason == "bad_signature"
    forged = token.split(".")
    forged[1] = forged[1][:-2] + ("AA" if forged[1][-2:] != "AA" else "BB")
    with pytest.raises(AuthError):
        auth.verify(".".join(forged), now=1001.0)


@pytest.mark.parametrize("token", ["t\u00f6ken", "\u4e2d\u6587", "xrs1.\u00e9.\u00e9", "x" * 5000, ""])
def test_non_ascii_and_odd_tokens_are_refused_not_crashed(token: str) -> None:
    """hmac.compare_digest raised TypeError on non-ASCII str; bytes are compared now."""
    auth = Authenticator(AuthConfig(secret=SECRET, plain_tokens=("plain",)))
    with pytest.raises(AuthError):
        auth.verify(token)
    assert (
        Authenticator(AuthConfig(plain_tokens=("t\u00f6ken",))).verify("t\u00f6ken").name.startswith("token-")
    )


@pytest.fixture
async def signed_engine() -> AsyncIterator[LiveEngine]:
    config = EngineConfig(
        port=0, tokens=(TOKEN,), token_secret=SECRET, session_linger_s=60.0,
        admission=AdmissionConfig(auth_failures_burst=5, auth_failures_per_s=0.2),
    )  # fmt: skip
    async with Engine(config) as engine:
        transport = WebSocketTransport(engine, "127.0.0.1", 0)
        await transport.start()
        try:
            yield LiveEngine(engine, transport)
        finally:
            await transport.stop()


async def test_only_the_identity_that_opened_a_session_resumes_it(signed_engine: LiveEngine) -> None:
    url = signed_engine.url
    alice, mallory = mint_token(SECRET, "alice", 600), mint_token(SECRET, "mallory", 600)
    frame, _ = block_frame()
    owner = await XrsegClient.connect(url, alice, "alice")
    await owner.send_frame(frame, ImageCodec.PNG)
    await owner.prompt(Prompt(1, frame.frame_id, points=(PointPrompt(60, 60),)))
    sid = owner.session_id
    # the takeover: another valid identity (and the shared plain token) knowing the id is refused
    for intruder in (mallory, TOKEN):
        with pytest.raises(EngineError) as info:
            await XrsegClient.connect(url, intruder, "intruder", session_id=sid)
        assert info.value.code == ErrorCode.UNAUTHORIZED
    result = await owner.prompt(
        Prompt(2, frame.frame_id, points=(PointPrompt(60, 60),))
    )  # the owner is unaffected
    assert result.prompt_id == 2
    await owner.close(bye=False)
    async with XrsegClient.connect(
        url, mint_token(SECRET, "alice", 600), "alice again", session_id=sid
    ) as back:
        assert back.session_id == sid  # a fresh token of the same identity resumes
    assert (
        signed_engine.engine.metrics.registry.get_sample_value(
            "xrseg_auth_failures_total", {"reason": "resume_denied"}
        )
        == 2
    )


async def test_expired_missing_and_non_ascii_tokens_are_unauthorized(signed_engine: LiveEngine) -> None:
    url = signed_engine.url
    expired = mint_token(SECRET, "alice", 1, now=0.0)
    hellos = [
        json.dumps({"v": 1, "type": "hello", "token": expired}),
        json.dumps({"v": 1, "type": "hello"}),
        json.dumps({"v": 1, "type": "hello", "token": "t\u00f6ken"}),
    ]
    for hello in hellos:
        async with connect(url) as ws:
            await ws.send(hello)
            reply = decode_message(await ws.recv())
            assert isinstance(reply, ErrorMessage) and reply.code == ErrorCode.UNAUTHORIZED, reply


async def test_failed_auth_is_rate_limited_per_address(signed_engine: LiveEngine) -> None:
    url, engine = signed_engine.url, signed_engine.engine
    messages, waited = [], []
    for _ in range(8):
        t0 = time.monotonic()
        with pytest.raises(EngineError) as info:
            await XrsegClient.connect(url, "wrong", "guesser")
        messages.append(info.value.message)
        waited.append(time.monotonic() - t0)
    assert all(m.startswith("wrong session token") for m in messages[:5])
    assert all(m.startswith("too many failed attempts") for m in messages[5:])
    assert min(waited[5:]) >= 0.9  # a blocked guesser is held (tarpit) before it hears the refusal
    with pytest.raises(EngineError) as info:  # even the right token waits until the bucket refills
        await XrsegClient.connect(url, TOKEN, "late")
    assert "too many failed attempts" in info.value.message
    sample = engine.metrics.registry.get_sample_value
    assert sample("xrseg_auth_failures_total", {"reason": "unknown_token"}) == 5
    assert sample("xrseg_auth_failures_total", {"reason": "rate_limited"}) == 4


def test_token_command_mints_a_verifiable_token(tmp_path: Path) -> None:
    from xrseg.cli import app

    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    result = CliRunner().invoke(
        app, ["token", "--secret-file", str(secret), "--identity", "bob", "--ttl", "60"]
    )
    assert result.exit_code == 0, result.output
    assert Authenticator(AuthConfig(secret=SECRET)).verify(result.output.strip()).name == "bob"
    short = tmp_path / "short"
    short.write_bytes(b"abc")
    result = CliRunner().invoke(app, ["token", "--secret-file", str(short), "--identity", "bob"])
    assert result.exit_code != 0 and "at least 16" in result.output

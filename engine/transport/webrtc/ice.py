"""ICE settings: which servers and which local addresses a peer connection may use.

aiortc falls back to a public STUN server when given no ICE servers, and aioice gathers host
candidates on every interface except loopback. Both are wrong for a loopback test bench or a
single-host deployment, so the engine always passes its ICE servers explicitly (none by default)
and can restrict host candidates to a list of addresses (e.g. 127.0.0.1).

aioice has no per-connection setting for that, so `host_candidates` routes its address lookup
through a ContextVar during candidate gathering (inside setLocalDescription): only the task that
asked sees the restriction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer


@dataclass(frozen=True)
class IceServer:
    """One STUN or TURN server: urls like "stun:host:3478" or "turn:host:3478?transport=udp"."""

    urls: str
    username: str | None = None
    credential: str | None = None


def rtc_configuration(servers: Sequence[IceServer]) -> RTCConfiguration:
    """An RTCConfiguration with exactly these servers (never aiortc's public default)."""
    return RTCConfiguration(iceServers=[RTCIceServer(s.urls, s.username, s.credential) for s in servers])


_ALLOWED: ContextVar[tuple[str, ...] | None] = ContextVar("xrseg_engine_ice_hosts", default=None)
_MARK = "_xrseg_engine_dispatch"


def _install_dispatch() -> None:
    """Route aioice's address lookup through _ALLOWED (idempotent; no change while unset)."""
    current = aioice.ice.get_host_addresses
    if getattr(current, _MARK, False):
        return

    def dispatch(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        allowed = _ALLOWED.get()
        if allowed is None:
            return current(use_ipv4, use_ipv6)
        return [a for a in allowed if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    setattr(dispatch, _MARK, True)
    aioice.ice.get_host_addresses = dispatch


@contextlib.contextmanager
def host_candidates(addresses: Sequence[str] | None) -> Iterator[None]:
    """Within this context (this asyncio task only), gather host candidates on `addresses`.

    None leaves aioice's choice (every interface but loopback). A ContextVar carries the choice,
    so peers gathering concurrently in other tasks are unaffected.
    """
    if addresses is None:
        yield
        return
    _install_dispatch()
    token = _ALLOWED.set(tuple(addresses))
    try:
        yield
    finally:
        _ALLOWED.reset(token)

"""WebRTC transport settings, in one frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass

from engine.protocol.chunking import DEFAULT_MAX_CHUNK
from engine.transport.web_page import WebPageConfig
from engine.transport.webrtc.ice import IceServer


@dataclass(frozen=True)
class WebRTCConfig:
    """How the engine's WebRTC front door behaves.

    Attributes:
        host, port: where the HTTP signalling server listens (offer/answer, health, metrics).
        ice_servers: STUN/TURN servers handed to every peer connection; none by default, so a
            single-host or LAN deployment never contacts a public server.
        host_addresses: restrict ICE host candidates to these local addresses (("127.0.0.1",)
            for loopback tests and benches); None lets aioice use every interface.
        pair_wait_s: how long a colour frame waits for its metadata (or the reverse) before the
            half that arrived is dropped and counted.
        pair_window: most frames whose metadata may wait for their colour at once (each holds
            its depth payload, ~50 KB with rdz).
        video_window: most colour frames that may wait for their metadata at once (each holds a
            decoded YUV frame, ~460 KB at 640x480). Metadata with depth is the slower half on a
            busy data channel, so this bounds how far it may lag.
        idle_timeout_s: a connected peer that sends nothing (no frame, message or ping) for this
            long is treated as abandoned: its connection is closed and its session detached, and
            the engine frees the session after its session_linger_s. Clients ping when quiet.
        connect_timeout_s: a peer whose "xrseg" channel is not open this long after its offer
            is closed (ICE, DTLS or SCTP never completed).
        max_chunk: bytes per data-channel message (engine.protocol.chunking).
        max_offer_bytes: largest offer body accepted by the signalling endpoint.
        page: the web page, its clips and allowed origins (engine/transport/web_page.py);
            None serves no page and no CORS rules.
    """

    host: str = "127.0.0.1"
    port: int = 8766
    ice_servers: tuple[IceServer, ...] = ()
    host_addresses: tuple[str, ...] | None = None
    pair_wait_s: float = 1.0
    pair_window: int = 32
    video_window: int = 8
    idle_timeout_s: float = 10.0
    connect_timeout_s: float = 20.0
    max_chunk: int = DEFAULT_MAX_CHUNK
    max_offer_bytes: int = 64 * 1024
    page: WebPageConfig | None = WebPageConfig()

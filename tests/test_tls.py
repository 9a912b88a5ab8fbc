"""TLS: with a certificate configured, the WebSocket is wss:// and the HTTP listener https://.

The certificate is self-signed, made here with the `cryptography` package.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake

from engine.app import ServeConfig, TlsConfig, XrsegServer
from engine.config import EngineConfig
from engine.protocol import Hello, Welcome, decode_message, encode_message
from engine.transport.webrtc import WebRTCConfig

TOKEN = "tls-token"


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_websocket_and_http_speak_tls_with_a_configured_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    config = ServeConfig(
        EngineConfig(port=0, tokens=(TOKEN,), warm_up=False),
        webrtc=WebRTCConfig(port=0),
        tls=TlsConfig(cert, key),
    )
    trust = ssl.create_default_context(cafile=str(cert))
    async with XrsegServer(config) as server:
        assert server.websocket is not None and server.webrtc is not None
        assert server.websocket.url.startswith("wss://") and server.webrtc.url.startswith("https://")
        async with connect(server.websocket.url, ssl=trust) as ws:
            await ws.send(encode_message(Hello(TOKEN, "tls")))
            assert isinstance(decode_message(await ws.recv()), Welcome)
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with http.get(f"{server.webrtc.url}/health", ssl=trust, headers=headers) as response:
                assert (await response.json())["status"] == "ok"
            with pytest.raises(aiohttp.ClientConnectorCertificateError):  # an untrusted client refuses it
                await http.get(f"{server.webrtc.url}/health", ssl=ssl.create_default_context())
        with pytest.raises((InvalidHandshake, OSError)):  # plain ws:// to a TLS listener fails the handshake
            async with connect(server.websocket.url.replace("wss://", "ws://"), open_timeout=5):
                pass


def test_a_bad_certificate_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("not a cert")
    with pytest.raises(ValueError, match="cannot load TLS certificate"):
        TlsConfig(tmp_path / "c.pem", tmp_path / "c.pem").server_context()

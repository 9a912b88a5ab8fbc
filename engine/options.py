"""The flags of every command that starts an engine, defined once.

`xrseg serve`, its alias `xrseg webrtc serve` and `xrseg demo` take the same model, device, CLIP
and ICE flags because they take the same dataclasses: each field below is one flag (its type,
default and help on one line), and xrseg/options.py turns a command parameter annotated with one
of these classes into its flags. Adding a flag to all of them is one field here (and, when the
engine needs it, the line of `engine_config` / `webrtc_config` that passes it on).

Why dataclasses and not typer signatures: the commands used to repeat ~20 parameters each and
drifted apart (the alias lacked --clip-checkpoint, --device and TLS); a typed value is also what
the code below the command line takes, so a test can build one without a shell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated

import typer

from engine.app import ServeConfig, TlsConfig
from engine.config import EngineConfig
from engine.remote.config import RayBackendConfig
from engine.transport.web_clips import Clip
from engine.transport.web_page import WebPageConfig
from engine.transport.webrtc import IceServer, WebRTCConfig

ClipOpener = Callable[[Path], Clip]
"""How a --clip folder becomes a clip the page can stream; given by the assembly (xrseg/clips.py),
because reading recorded sequences is the clients' job, not the engine's."""


class OptionError(ValueError):
    """A flag whose value cannot be used; `flag` names it for the one-line message."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(message)
        self.flag = flag


@dataclass(frozen=True)
class ModelOptions:
    """What segments, and where: shared by every command that starts an engine."""

    model: Annotated[str, typer.Option(help="Segmentation backend (xrseg models list).")] = "geometric"
    checkpoint: Annotated[Path | None, typer.Option(help="Weights for backends that need them.")] = None
    device: Annotated[str, typer.Option(help="Where the model runs: cpu, cuda or cuda:N.")] = "cpu"
    workers: Annotated[int, typer.Option(help="Threads for decode, cleaning and lift, shared by sessions.")] = 2
    clip_checkpoint: Annotated[
        Path | None, typer.Option(help="CLIP weights for text prompts: open_clip folder, or weights file + --clip-arch.")
    ] = None
    clip_arch: Annotated[str | None, typer.Option(help="open_clip architecture of a --clip-checkpoint file.")] = None
    backend: Annotated[str, typer.Option(help="Where the models run: local (this process) or ray (Ray Serve).")] = "local"
    ray_address: Annotated[
        str | None, typer.Option(help="ray: cluster (host:port, auto, ray://...); none: a private local one.")
    ] = None
    ray_app: Annotated[str, typer.Option(help="ray: Serve application; front-ends with the same one share replicas.")] = "xrseg"
    encoder_replicas: Annotated[int, typer.Option(help="ray: image encoder replicas.")] = 1
    decoder_replicas: Annotated[int, typer.Option(help="ray: prompt decoder replicas.")] = 1
    encoder_gpus: Annotated[float, typer.Option(help="ray: GPUs (or a fraction) per encoder replica.")] = 0.0
    decoder_gpus: Annotated[float, typer.Option(help="ray: GPUs (or a fraction) per decoder replica.")] = 0.0

    def engine_config(self, **settings: object) -> EngineConfig:
        """An EngineConfig with these model settings and `settings` (host, port, tokens, ...)."""
        if self.backend not in ("local", "ray"):
            raise OptionError("--backend", f"must be local or ray, got {self.backend!r}")
        return EngineConfig(
            model=self.model, checkpoint=self.checkpoint, device=self.device, workers=self.workers,
            clip_checkpoint=self.clip_checkpoint, clip_arch=self.clip_arch, backend=self.backend,
            ray=self.ray_config(), **settings,  # type: ignore[arg-type]
        )  # fmt: skip

    def ray_config(self) -> RayBackendConfig:
        """The ray backend's settings from these flags (batching and CPUs at their defaults)."""
        base = RayBackendConfig()
        try:
            return RayBackendConfig(
                address=self.ray_address, app_name=self.ray_app,
                encoder=replace(base.encoder, replicas=self.encoder_replicas, num_gpus=self.encoder_gpus),
                decoder=replace(base.decoder, replicas=self.decoder_replicas, num_gpus=self.decoder_gpus),
            )  # fmt: skip
        except ValueError as exc:
            raise OptionError("--encoder-replicas/--decoder-replicas", str(exc)) from None


@dataclass(frozen=True)
class IceOptions:
    """How WebRTC peers find each other: shared by every command that serves WebRTC."""

    ice_server: Annotated[
        list[str] | None, typer.Option(help="STUN/TURN url, e.g. stun:host:3478 (repeatable).")
    ] = None
    ice_username: Annotated[str | None, typer.Option(help="TURN user name.")] = None
    ice_credential: Annotated[str | None, typer.Option(help="TURN credential.")] = field(default=None, repr=False)
    loopback: Annotated[bool, typer.Option(help="Gather ICE candidates on 127.0.0.1 only.")] = False
    idle_timeout_s: Annotated[float, typer.Option(help="Close a WebRTC peer silent this long.")] = 10.0

    def webrtc_config(self, host: str, port: int, page: WebPageConfig | None = None) -> WebRTCConfig:
        """The WebRTC settings of a listener on host:port with these ICE flags; page None: no web page."""
        servers = tuple(IceServer(url, self.ice_username, self.ice_credential) for url in self.ice_server or ())
        addresses = ("127.0.0.1",) if self.loopback else None
        return WebRTCConfig(host, port, servers, addresses, idle_timeout_s=self.idle_timeout_s, page=page)


@dataclass(frozen=True)
class ServeOptions:
    """`xrseg serve` (and `xrseg webrtc serve`): listeners, auth, TLS, the page, model and ICE."""

    host: Annotated[str, typer.Option(help="Address of the WebSocket and HTTP listeners.")] = "127.0.0.1"
    port: Annotated[int, typer.Option(help="WebSocket port; 0 picks a free one.")] = 8765
    token: Annotated[
        list[str] | None, typer.Option(help="Accepted plain session token (repeatable; one identity each).")
    ] = field(default=None, repr=False)  # secrets stay out of logs and tracebacks
    token_secret_file: Annotated[
        Path | None, typer.Option(help="HMAC secret of signed, expiring tokens (mint them with `xrseg token`).")
    ] = None
    webrtc_port: Annotated[
        int, typer.Option(help="HTTP: WebRTC offers, the web page, /health, /metrics (bearer token); 0 for none.")
    ] = 8766
    ws: Annotated[bool, typer.Option(help="Serve the WebSocket transport.")] = True
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: serve wss:// and https://.")] = None
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None
    admin_port: Annotated[int | None, typer.Option(help="Separate /health + /metrics bind without a token.")] = None
    admin_host: Annotated[str, typer.Option(help="Address of the admin bind (keep it private).")] = "127.0.0.1"
    clip: Annotated[list[Path] | None, typer.Option(help="RGB-D folder the web page may stream (repeatable).")] = None
    cors_origin: Annotated[
        list[str] | None, typer.Option(help="Origin of a page elsewhere allowed to call the engine (repeatable).")
    ] = None
    model: ModelOptions = field(default_factory=ModelOptions)
    ice: IceOptions = field(default_factory=IceOptions)

    def serve_config(self, open_clip: ClipOpener | None = None) -> ServeConfig:
        """The ServeConfig these flags describe; OptionError names the flag that cannot be used.

        Files are read here (token secret, clip folders, certificate), so a bad path is refused
        before any model loads.
        """
        from engine.auth import load_secret

        secret = None
        if self.token_secret_file is not None:
            try:
                secret = load_secret(self.token_secret_file)
            except ValueError as exc:
                raise OptionError("--token-secret-file", str(exc)) from None
        if not self.token and secret is None:
            raise OptionError(
                "--token", "give --token-secret-file (signed tokens) or at least one --token; clients send it in their hello"
            )
        tls = None
        if (self.tls_cert is None) != (self.tls_key is None):
            raise OptionError("--tls-cert", "give both --tls-cert and --tls-key")
        if self.tls_cert is not None and self.tls_key is not None:
            tls = TlsConfig(self.tls_cert, self.tls_key)
            try:
                tls.server_context()
            except ValueError as exc:
                raise OptionError("--tls-cert", str(exc)) from None
        engine = self.model.engine_config(host=self.host, port=self.port, tokens=tuple(self.token or ()), token_secret=secret)
        rtc = None
        if self.webrtc_port > 0:
            rtc = self.ice.webrtc_config(self.host, self.webrtc_port, WebPageConfig(
                cors_origins=tuple(self.cors_origin or ()), clips=self._clips(open_clip)))  # fmt: skip
        elif self.clip:
            raise OptionError("--clip", "the web page's clips need the HTTP listener: give --webrtc-port > 0")
        return ServeConfig(engine, websocket=self.ws, webrtc=rtc, tls=tls, admin_host=self.admin_host,
                           admin_port=self.admin_port)  # fmt: skip

    def _clips(self, open_clip: ClipOpener | None) -> tuple[Clip, ...]:
        if not self.clip:
            return ()
        if open_clip is None:
            raise OptionError("--clip", "this command cannot read clip folders; run `xrseg serve --clip FOLDER`")
        clips = []
        for folder in self.clip:
            try:
                clips.append(open_clip(folder))
            except ValueError as exc:
                raise OptionError("--clip", str(exc)) from None
        return tuple(clips)

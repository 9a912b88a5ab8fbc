"""Connect a front-end to a Ray cluster and deploy (or attach to) the model deployments.

`connect_ray_backend(config)` is what `EngineConfig(backend="ray")` runs at engine start (in a
thread: it blocks until the replicas are healthy). The first front-end of an `app_name` deploys
three Serve applications (`NAME-encoder`, `NAME-decoder`, and `NAME-text` with a CLIP
checkpoint), with no HTTP proxy: only deployment handles reach them. Later front-ends with the
same app_name find them running and attach, after checking they serve the same model.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import serve

import engine
from engine.config import EngineConfig
from engine.remote.config import RayBackendConfig
from engine.remote.deployments import (
    ImageEncoderDeployment,
    PromptDecoderDeployment,
    TextEncoderDeployment,
)
from engine.remote.direct import DecoderReplicas, DirectDecoder
from engine.remote.payloads import ModelInfo
from engine.remote.proxies import RemoteCaller, RemoteImageEncoder, RemotePromptDecoder, RemoteTextEncoder
from engine.remote.serve_env import replica_env
from models.interfaces import ModelError, SegmentationModel

log = logging.getLogger(__name__)

ENCODER, DECODER, TEXT = "encoder", "decoder", "text"


@dataclass(frozen=True)
class RayBackend:
    """The remote model and CLIP of one front-end, and what it must release at stop."""

    model: SegmentationModel
    text: RemoteTextEncoder | None

    def close(self) -> None:
        """Nothing to free: embeddings go with the keyframes that hold their refs, and the
        deployments stay up for other front-ends (`shutdown_deployments` removes them)."""


def app_names(config: RayBackendConfig) -> dict[str, str]:
    return {part: f"{config.app_name}-{part}" for part in (ENCODER, DECODER, TEXT)}


def _init_ray(config: RayBackendConfig) -> None:
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {
        "namespace": config.namespace,
        "runtime_env": _runtime_env(config),  # the front-end's own tasks (embedding_ready)
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    if config.address is None:
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=config.address, **kwargs)
    except ConnectionError as exc:
        raise ModelError(
            f"cannot reach the Ray cluster at {config.address!r} ({exc}); start one with `ray start --head` "
            f"and pass its address (host:port) as --ray-address{_token_hint()}"
        ) from None


def _token_hint() -> str:
    """Why a running cluster may refuse us: `ray start` turns on token authentication by itself when
    it finds a token (~/.ray/auth_token), but a driver given an address does not, so it is refused
    with the same error as an unreachable cluster."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return ""
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if not (token_file.exists() or os.environ.get("RAY_AUTH_TOKEN")):
        return ""
    return (
        f". If the cluster is running: a Ray auth token is set here ({token_file}), so the cluster may "
        "require token authentication; run xrseg with RAY_AUTH_MODE=token and the cluster's token"
    )


def _runtime_env(config: RayBackendConfig) -> dict[str, Any]:
    """Replicas import the same code as the front-end: its folder goes on their PYTHONPATH."""
    code = config.code_path or str(Path(engine.__file__).resolve().parent.parent)
    return {"env_vars": {"PYTHONPATH": code, **replica_env()}}


def _actor_options(config: RayBackendConfig, options: dict[str, Any]) -> dict[str, Any]:
    actor = {**options["ray_actor_options"], "runtime_env": _runtime_env(config)}  # type: ignore[dict-item]
    return {**options, "ray_actor_options": actor}


def _running(name: str) -> bool:
    status = serve.status().applications.get(name)
    return status is not None and str(status.status).endswith("RUNNING")


def _deploy(name: str, app: Any) -> Any:
    log.info("deploying Serve application %s", name)
    return serve.run(app, name=name, route_prefix=None)


def connect_ray_backend(config: EngineConfig) -> RayBackend:
    """Connect, deploy or attach, and build the remote model (blocking: run it in a thread)."""
    rc = config.ray
    _init_ray(rc)
    serve.start(proxy_location="Disabled")
    names = app_names(rc)
    checkpoint = str(config.checkpoint) if config.checkpoint else None
    enc, dec = rc.encoder, rc.decoder
    if _running(names[ENCODER]):
        encoder = serve.get_deployment_handle(ENCODER, names[ENCODER])
    else:
        app = ImageEncoderDeployment.options(**_actor_options(rc, enc.serve_options(ENCODER))).bind(
            config.model, checkpoint, config.device, enc.max_batch_size, enc.batch_wait_timeout_s
        )
        encoder = _deploy(names[ENCODER], app)
    # By reference: an encode's answer stays in the object store, owned here (with Serve's gRPC
    # transport, answers otherwise come back by value).
    encoder = encoder.options(_by_reference=True)
    info: ModelInfo = encoder.info.remote().result(timeout_s=rc.deploy_timeout_s)
    if info.name != config.model and not info.name.startswith(config.model):
        raise ModelError(
            f"the Serve application {names[ENCODER]} runs model {info.name!r}, not {config.model!r}; "
            "give this front-end another --ray-app name, or the same --model"
        )
    if _running(names[DECODER]):
        decoder = serve.get_deployment_handle(DECODER, names[DECODER])
    else:
        app = PromptDecoderDeployment.options(**_actor_options(rc, dec.serve_options(DECODER))).bind(
            config.model,
            checkpoint,
            config.device,
            dec.max_batch_size,
            dec.batch_wait_timeout_s,
            rc.decoder_cache,
        )
        decoder = _deploy(names[DECODER], app)
    text = None
    if config.clip_checkpoint is not None:
        text = _text_encoder(config, names[TEXT])
    direct = None
    if rc.direct_decode and dec.min_replicas is None:  # autoscaling needs Serve to see every request
        direct = DirectDecoder(DecoderReplicas(names[DECODER], DECODER), rc.retries, rc.request_timeout_s)
    model = SegmentationModel(
        info.name,
        RemoteImageEncoder(info.name, encoder, RemoteCaller(ENCODER, rc.retries, rc.request_timeout_s)),
        RemotePromptDecoder(
            info.name, decoder, RemoteCaller(DECODER, rc.retries, rc.request_timeout_s), info, direct
        ),
        needs_depth=info.needs_depth,
    )
    return RayBackend(model, text)


def _text_encoder(config: EngineConfig, name: str) -> RemoteTextEncoder:
    rc = config.ray
    clip = f"clip:{config.clip_arch}" if config.clip_arch else "clip"
    if _running(name):
        handle = serve.get_deployment_handle(TEXT, name)
    else:
        t = rc.text
        app = TextEncoderDeployment.options(**_actor_options(rc, t.serve_options(TEXT))).bind(
            clip, str(config.clip_checkpoint), config.device, t.max_batch_size, t.batch_wait_timeout_s
        )
        handle = _deploy(name, app)
    encoder_name = handle.name.remote().result(timeout_s=rc.deploy_timeout_s)
    return RemoteTextEncoder(encoder_name, handle, RemoteCaller(TEXT, rc.retries, rc.request_timeout_s))


def shutdown_deployments(config: RayBackendConfig) -> None:
    """Delete this app_name's Serve applications (an operator's or a test's clean-up)."""
    for name in app_names(config).values():
        if serve.status().applications.get(name) is not None:
            serve.delete(name)

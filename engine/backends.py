"""Where the models run: `local` (in this process, the embedded default) or `ray` (Ray Serve
deployments, engine/remote/). The engine asks this module for its model and CLIP and cannot tell
the two apart: both hand back the interfaces of models/interfaces.py.

Why a file of its own: Engine.start should not grow a branch per backend, and Ray must stay an
optional import (the local backend never loads it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.config import EngineConfig
from engine.text_answer import load_clip_encoder
from models.interfaces import ModelError, SegmentationModel, TextImageEncoder
from models.registry import ModelSpec, build_model

if TYPE_CHECKING:
    from engine.remote.sessions import SessionDirectory

BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class Backend:
    """The models an engine runs with, and how to let go of them at stop."""

    model: SegmentationModel
    text: TextImageEncoder | None
    close: Callable[[], None]
    sessions: SessionDirectory | None = None  # sessions' owners kept beyond this process (ray only)


def _nothing() -> None:
    return None


def build_backend(config: EngineConfig, model: SegmentationModel | None = None) -> Backend:
    """The model (unless one is given) and the CLIP encoder of `config.backend` (blocking: the
    local one loads weights, the remote one waits for its replicas)."""
    if config.backend == "local":
        if model is None:
            model = build_model(ModelSpec(config.model, config.checkpoint, config.device))
        text = None
        if config.clip_checkpoint is not None:
            text = load_clip_encoder(config.clip_checkpoint, config.clip_arch, config.device)
        return Backend(model, text, _nothing)
    if config.backend == "ray":
        if model is not None:
            raise ModelError("the ray backend builds its model on the replicas; do not pass a model object")
        try:
            from engine.remote.cluster import connect_ray_backend
        except ImportError as exc:
            raise ModelError(f"--backend ray needs Ray Serve: pip install 'xrseg[ray]' ({exc})") from None
        from engine.remote.sessions import SessionDirectory

        remote = connect_ray_backend(config)
        directory = SessionDirectory(config.ray.app_name, config.ray.namespace)
        return Backend(remote.model, remote.text, remote.close, directory)
    raise ModelError(f"unknown backend {config.backend!r}; choose one of: {', '.join(BACKENDS)}")

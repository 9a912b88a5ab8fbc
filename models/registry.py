"""One registry of segmentation backends, looked up by name.

Builders import their backend lazily, so the engine starts without torch when it runs the
geometric default, and a missing optional library is reported only for the backend that needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from models.interfaces import ModelError, SegmentationModel


@dataclass(frozen=True)
class ModelSpec:
    """How to build one backend: a checkpoint path when it needs weights, and a device."""

    name: str
    checkpoint: Path | None = None
    device: str = "cpu"


def _build_geometric(spec: ModelSpec) -> SegmentationModel:
    from models.geometric import build_geometric

    return build_geometric()


MODEL_BUILDERS: MappingProxyType[str, Callable[[ModelSpec], SegmentationModel]] = MappingProxyType(
    {
        "geometric": _build_geometric,
    }
)

DEFAULT_MODEL = "geometric"


def list_models() -> list[str]:
    return sorted(MODEL_BUILDERS)


def build_model(spec: ModelSpec) -> SegmentationModel:
    """Build the backend named by spec.name; raise ModelError naming the choices otherwise."""
    try:
        builder = MODEL_BUILDERS[spec.name]
    except KeyError:
        raise ModelError(f"unknown model {spec.name!r}; choose one of: {', '.join(list_models())}") from None
    return builder(spec)

"""One registry of segmentation backends, looked up by name.

Builders import their backend lazily, so the engine starts without torch when it runs the
geometric default, and a missing optional library is reported only for the backend that needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from models.interfaces import ModelError, SegmentationModel, TextEncoder


@dataclass(frozen=True)
class ModelSpec:
    """How to build one backend: a checkpoint path when it needs weights, and a device."""

    name: str
    checkpoint: Path | None = None
    device: str = "cpu"


def _build_geometric(spec: ModelSpec) -> SegmentationModel:
    from models.geometric import build_geometric

    return build_geometric()


def _build_geometric_fast(spec: ModelSpec) -> SegmentationModel:
    """The geometric model without its support-plane path (the LCCP label maps only).

    Why: the default's support-plane path finds whole objects on real tables (bench.real_accuracy:
    median IoU 0.62 against 0.42) at about twice the encode time; where the frame budget matters
    more than whole objects (fast-moving cameras on a small CPU), this is the cheaper choice."""
    from dataclasses import replace

    from models.geometric import GeometricConfig, build_geometric

    return replace(build_geometric(GeometricConfig(hybrid=False)), name="geometric-fast")


def _build_geometric_rgb(spec: ModelSpec) -> SegmentationModel:
    """The geometric model for colour-only sources (a webcam, the page's camera).

    Why a second entry: `geometric` declares it needs depth, so frames of an RGB-D stream that
    arrive without depth (WebRTC sends depth with prompted frames only) are never encoded colour
    only, which would give worse masks; a source with no depth at all would then never be
    answered. This entry runs the same encoder in its colour-only mode on every frame."""
    from dataclasses import replace

    from models.geometric import build_geometric

    return replace(build_geometric(), name="geometric-rgb", needs_depth=False)


def _build_sam_vit(name: str) -> Callable[[ModelSpec], SegmentationModel]:
    def build(spec: ModelSpec) -> SegmentationModel:
        from models.sam.backend import build_sam_backend

        return build_sam_backend(name, spec.checkpoint, spec.device)

    return build


def _build_mobile_sam(spec: ModelSpec) -> SegmentationModel:
    from models.mobile_sam.build import build_mobile_sam_backend

    return build_mobile_sam_backend(spec.checkpoint, spec.device)


def _build_sam2(name: str) -> Callable[[ModelSpec], SegmentationModel]:
    def build(spec: ModelSpec) -> SegmentationModel:
        from models.sam2.backend import build_sam2_backend

        return build_sam2_backend(name, spec.checkpoint, spec.device)

    return build


MODEL_BUILDERS: MappingProxyType[str, Callable[[ModelSpec], SegmentationModel]] = MappingProxyType(
    {
        "geometric": _build_geometric,
        "geometric-rgb": _build_geometric_rgb,
        "geometric-fast": _build_geometric_fast,
        "sam_vit_b": _build_sam_vit("sam_vit_b"),
        "sam_vit_l": _build_sam_vit("sam_vit_l"),
        "sam_vit_h": _build_sam_vit("sam_vit_h"),
        "mobile_sam": _build_mobile_sam,
        "sam2.1_hiera_tiny": _build_sam2("sam2.1_hiera_tiny"),
        "sam2.1_hiera_small": _build_sam2("sam2.1_hiera_small"),
        "sam2.1_hiera_base_plus": _build_sam2("sam2.1_hiera_base_plus"),
        "sam2.1_hiera_large": _build_sam2("sam2.1_hiera_large"),
        "edgetam": _build_sam2("edgetam"),
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


def build_text_encoder(spec: ModelSpec) -> TextEncoder:
    """CLIP text encoder from a local checkpoint: spec.name is "clip" (folder in open_clip's hub
    layout) or "clip:ARCH" (a weights file of open_clip architecture ARCH, e.g. clip:ViT-B-32)."""
    if spec.name != "clip" and not spec.name.startswith("clip:"):
        raise ModelError(f"unknown text encoder {spec.name!r}; use clip or clip:ARCH")
    from models.clip.text import load_clip

    arch = spec.name.partition(":")[2] or None
    return load_clip(spec.checkpoint, arch, spec.device)

"""The embedded default segmenter: RGB-D geometry, no learned weights.

SAM-shaped: GeometricEncoder.encode() does all per-frame work (depth edges, convex/concave normal
creases, colour edges -> label maps at three granularities, "part", "object", "region");
GeometricDecoder.predict() answers each point/box/mask prompt by looking labels up. Without depth
it falls back to colour-only regions.
"""

from __future__ import annotations

from models.geometric.config import GRANULARITIES, GeometricConfig
from models.geometric.decoder import GeometricDecoder
from models.geometric.embedding import BACKEND, LabelMaps
from models.geometric.encoder import GeometricEncoder
from models.interfaces import SegmentationModel

__all__ = [
    "BACKEND",
    "GRANULARITIES",
    "GeometricConfig",
    "GeometricDecoder",
    "GeometricEncoder",
    "LabelMaps",
    "build_geometric",
]


def build_geometric(config: GeometricConfig | None = None) -> SegmentationModel:
    """The geometric SegmentationModel (encoder + decoder sharing one config)."""
    cfg = config or GeometricConfig()
    return SegmentationModel(BACKEND, GeometricEncoder(cfg), GeometricDecoder(cfg), needs_depth=True)

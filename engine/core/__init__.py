"""Typed core shared by the engine, the clients and the wire protocol.

Everything that crosses a boundary (transport -> session -> models -> lift -> transport) is one
of these frozen dataclasses. Arrays keep their documented shapes and dtypes; nothing here knows
about networks or particular models.
"""

from engine.core.frame import CameraIntrinsics, Pose, RGBDFrame
from engine.core.prompts import BoxPrompt, GazeSample, MaskPrompt, PointPrompt, Prompt, gaze_point
from engine.core.results import (
    AnchorWorld,
    MaskCandidate,
    MaskRanking,
    RLEMask,
    Segment3D,
    SegmentationResult,
    StageTimestamps,
)

__all__ = [
    "AnchorWorld",
    "BoxPrompt",
    "CameraIntrinsics",
    "GazeSample",
    "MaskCandidate",
    "MaskPrompt",
    "MaskRanking",
    "PointPrompt",
    "Pose",
    "Prompt",
    "RGBDFrame",
    "RLEMask",
    "Segment3D",
    "SegmentationResult",
    "StageTimestamps",
    "gaze_point",
]

"""Prompt fusion: turn what the user does (gaze, clicks, words) into decoder prompts.

`gaze`: raw eye-tracker samples -> fixations -> dwell selection (streaming I-VT).
"""

from engine.fusion.gaze import (
    Fixation,
    FixationConfig,
    FixationDetector,
    FixationEvent,
    FixationEventKind,
    GazeGeometry,
    GazeStats,
    detect_fixations,
)

__all__ = [
    "Fixation",
    "FixationConfig",
    "FixationDetector",
    "FixationEvent",
    "FixationEventKind",
    "GazeGeometry",
    "GazeStats",
    "detect_fixations",
]

"""Where the demo's user looks, per sequence."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from clients.gaze_script import GazeScript, PixelAnchor
from engine.core import RGBDFrame

# Furniture of the Redwood "livingroom1" scene, picked on frames where each is well in view.
LIVINGROOM1_ANCHORS = (
    PixelAnchor("chair seat", 0, 500, 255, first=0, last=49),
    PixelAnchor("cabinet", 70, 540, 300, first=50, last=104),
    PixelAnchor("chair back", 140, 330, 240, first=105, last=159),
    PixelAnchor("cabinet", 210, 600, 420, first=160, last=210),
)


def gaze_script_for(path: Path | None, frames: Sequence[RGBDFrame]) -> GazeScript:
    """The scripted gaze path for a known sequence, else look at the centre of frame 0, then mid-way."""
    n = len(frames)
    if path is not None and path.name.startswith("livingroom1") and n >= 211:
        return GazeScript.from_anchors(frames, LIVINGROOM1_ANCHORS)
    w, h = frames[0].intrinsics.width, frames[0].intrinsics.height
    half = max(1, n // 2)
    anchors = [PixelAnchor("centre", 0, w / 2, h / 2, 0, half - 1)]
    if n > half:
        anchors.append(PixelAnchor("centre later", half, w / 2, h / 2, half, n - 1))
    return GazeScript.from_anchors(frames, anchors)

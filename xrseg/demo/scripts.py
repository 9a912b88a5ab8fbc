"""Where the demo's user looks, per sequence."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from clients.gaze_script import GazeScript, PixelAnchor
from engine.core import RGBDFrame

# Furniture of the Redwood "livingroom1" scene, picked on frames where each is well in view.
LIVINGROOM1_ANCHORS = (
    PixelAnchor("chair seat", 0, 500, 255, first=0, last=49),
    PixelAnchor("cabinet", 70, 540, 300, first=50, last=104),
    PixelAnchor("chair back", 140, 330, 240, first=105, last=159),
    PixelAnchor("chair front", 210, 330, 290, first=160, last=210),
)


def gaze_script_for(path: Path | None, frames: Sequence[RGBDFrame]) -> GazeScript:
    """The scripted gaze path for a known sequence, else look at the centre of frame 0, then mid-way."""
    n = len(frames)
    if path is not None and path.name.startswith("livingroom1"):
        anchors = [a for a in LIVINGROOM1_ANCHORS if a.frame_index < n and a.first < n]
        if anchors:
            return GazeScript.from_anchors(frames, anchors)
    w, h = frames[0].intrinsics.width, frames[0].intrinsics.height
    half = max(1, n // 2)
    anchors = [PixelAnchor("centre", 0, w / 2, h / 2, 0, half - 1)]
    if n > half:
        anchors.append(PixelAnchor("centre later", half, w / 2, h / 2, half, n - 1))
    return GazeScript.from_anchors(frames, anchors)


def synthetic_sequence(n_frames: int, seed: int = 7) -> tuple[list[RGBDFrame], GazeScript]:
    """A ray-cast room with Kinect-like depth noise, an orbiting camera, and a gaze that visits
    each object in turn: what the demo streams when no recorded sequence is available.

    Each gaze target is the most interior visible pixel of its object (a torus's bounding-box
    centre is its hole), lifted to the world on the first frame of its turn.
    """
    from clients.sources.synthetic import DepthDegradation, make_scene, orbit_poses, render_sequence

    scene = make_scene(seed)
    rendered = render_sequence(scene, orbit_poses(scene, n_frames), degradation=DepthDegradation(), seed=seed)
    frames = [r.frame for r in rendered]
    span = max(1, n_frames // max(1, len(scene.object_ids)))
    anchors = []
    for i, object_id in enumerate(scene.object_ids):
        first = i * span
        if first >= n_frames:
            break
        visible = rendered[first].visible_mask(object_id) & (frames[first].depth_m > 0)
        if visible.sum() < 50:
            continue
        inside = cv2.distanceTransform(visible.astype(np.uint8), cv2.DIST_L2, 5)
        y, x = np.unravel_index(int(np.argmax(inside)), inside.shape)
        name = f"{scene.objects[object_id].kind} {object_id}"
        anchors.append(PixelAnchor(name, first, float(x), float(y), first, min(n_frames, first + span) - 1))
    return frames, GazeScript.from_anchors(frames, anchors)

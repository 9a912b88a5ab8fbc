"""Synthetic RGB-D scenes with exact per-pixel ground truth, rendered by ray casting.

Why: the real sequences in shared/data have no ground-truth masks. A scene made of known meshes
(boxes, spheres, cylinders, cones, tori on a floor in front of walls), ray cast with Open3D's
`RaycastingScene`, gives exact depth and the id of the object under every pixel, so mask IoU and
3D centroid error can be measured, not eyeballed. Optional sensor-like degradation (depth noise
growing with z², holes, dropouts at grazing angles, a zero border, flying pixels at depth edges,
millimetre quantisation) makes the frames look like a Kinect/PrimeSense capture.

This module is a client-side RGB-D source (like a camera): it depends on `engine.core` for the
frame types and on nothing else of the engine.

The scenes (meshes, cameras) are in synthetic_scene.py, the ray casting and degradation in
synthetic_render.py; this module is the one import path for both.

World frame: z up, floor at z = 0. Cameras follow the OpenCV convention (x right, y down,
z forward); poses are camera-to-world. Everything is deterministic given a seed.
"""

from clients.sources.synthetic_render import (
    DepthDegradation,
    SceneRenderer,
    SyntheticFrame,
    render_frame,
    render_sequence,
)
from clients.sources.synthetic_scene import (
    BACKGROUND_ID,
    OBJECT_KINDS,
    STRUCTURE_KINDS,
    TEXTURES,
    SceneError,
    SceneObject,
    SyntheticScene,
    default_camera_pose,
    default_intrinsics,
    look_at_pose,
    make_scene,
    orbit_poses,
)

__all__ = [
    "BACKGROUND_ID",
    "OBJECT_KINDS",
    "STRUCTURE_KINDS",
    "TEXTURES",
    "DepthDegradation",
    "SceneError",
    "SceneObject",
    "SceneRenderer",
    "SyntheticFrame",
    "SyntheticScene",
    "default_camera_pose",
    "default_intrinsics",
    "look_at_pose",
    "make_scene",
    "orbit_poses",
    "render_frame",
    "render_sequence",
]

"""Small synthetic capture sequences for the capture tests: a camera circling one object."""

from __future__ import annotations

import numpy as np

from clients.sources.synthetic import (
    DepthDegradation,
    SceneRenderer,
    SyntheticFrame,
    SyntheticScene,
    default_intrinsics,
    look_at_pose,
    make_scene,
)

K_SMALL = default_intrinsics(160, 120, 131.25, 131.25)


def orbit_around(
    scene: SyntheticScene, object_id: int, n: int, radius: float = 0.7, height: float = 0.45, turns: float = 1.0
) -> list[np.ndarray]:
    """n camera positions on a circle around the object's centre, `height` above it."""
    c = scene.objects[object_id].center
    angles = 2 * np.pi * turns * np.arange(n) / n
    return [c + np.array([radius * np.cos(a), radius * np.sin(a), height]) for a in angles]


def capture_sequence(
    seed: int = 1,
    n: int = 24,
    intrinsics=K_SMALL,
    degradation: DepthDegradation | None = None,
    kinds=("box", "cylinder"),
    count: int | None = None,
) -> tuple[SyntheticScene, int, list[SyntheticFrame]]:
    """(scene, object id, frames) of a camera circling the first object of one of `kinds` on the
    floor in n steps; only the first `count` frames are rendered (all by default)."""
    scene = make_scene(seed, n_objects=3, with_table=False)
    object_id = next(o for o in scene.object_ids if scene.objects[o].kind in kinds and scene.objects[o].support_id == 0)
    renderer = SceneRenderer(scene)
    target = scene.objects[object_id].center
    frames = [
        renderer.render(intrinsics, look_at_pose(eye, target), degradation or DepthDegradation(), seed=seed + i, frame_id=i)
        for i, eye in enumerate(orbit_around(scene, object_id, n)[:count])
    ]
    return scene, object_id, frames

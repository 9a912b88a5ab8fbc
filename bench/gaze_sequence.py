"""A moving-camera RGB-D sequence with a scripted gaze and the exact object under the gaze on every frame.

Why: to score a streaming policy's answers, each answer must be compared with the ground truth of
the frame its prompt was given on, not with a later or earlier view. The synthetic renderer
(clients/sources/synthetic.py) gives exact per-pixel object ids; the gaze here is a fixed surface
point of one object at a time (chosen on the first frame, most interior visible pixel), projected
into every frame like an eye that stays on the object while the head moves. The object the ray of
that point hits on a frame is the ground truth of that frame's prompt (an occluder, when it moves
in front of the point, is what the user sees there).

Scenes use held-out seeds (1000 and up, bench/synthetic_accuracy.py): never used to tune the
geometric model. Rendering costs ~0.5 s a frame, so sequences are cached as .npz under
$XRSEG_CACHE (default ~/.cache/xrseg) / bench_streaming.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from clients.sources.synthetic import (
    DepthDegradation,
    SceneRenderer,
    default_intrinsics,
    make_scene,
    orbit_poses,
)
from engine.core import GazeSample, Pose, RGBDFrame

VERSION = 1  # bump when what is rendered changes (the cache key)


@dataclass(frozen=True)
class SequenceSpec:
    """What to render.

    Attributes:
        seed: scene seed (held-out: >= 1000).
        frames: number of frames (at 15 fps, 120 frames = 8 s).
        arc_deg: how far the camera orbits the object cluster over the sequence (a head turning and
            walking around a table: 60 deg over 8 s is 7.5 deg/s, ~0.26 m/s at 2 m).
        dwell_frames: frames the gaze stays on one object before moving to the next.
        jitter_px: eye-tracker noise, standard deviation in pixels (0.3 deg at fx 525 is ~2.7 px).
    """

    seed: int
    frames: int = 120
    arc_deg: float = 60.0
    dwell_frames: int = 30
    jitter_px: float = 2.5


@dataclass(frozen=True, eq=False)
class GazeSequence:
    """Frames, the true gaze point per frame ((N, 2), NaN where it is off-frame) and the ground
    truth object id under it (-2 where off-frame), and the object-id images."""

    spec: SequenceSpec
    frames: list[RGBDFrame]
    gaze_xy: np.ndarray
    target_ids: np.ndarray
    object_ids: np.ndarray  # (N, H, W) int16

    def truth(self, index: int) -> np.ndarray | None:
        """(H, W) bool mask of the object under the gaze on frame `index`, or None off-frame."""
        oid = int(self.target_ids[index])
        return None if oid < -1 else self.object_ids[index] == oid

    def samples(self, index: int, t_end: float, per_frame: int, hz: float) -> tuple[GazeSample, ...]:
        """`per_frame` eye-tracker samples ending at t_end, jittered around the true point (seeded)."""
        x, y = self.gaze_xy[index]
        if not np.isfinite(x):
            return ()
        rng = np.random.default_rng((self.spec.seed, index))
        noise = rng.normal(0.0, self.spec.jitter_px, (per_frame, 2))
        h, w = self.object_ids.shape[1:]
        out = []
        for k in range(per_frame):
            sx = float(np.clip(x + noise[k, 0], 0, w - 1))
            sy = float(np.clip(y + noise[k, 1], 0, h - 1))
            out.append(GazeSample(t_end - (per_frame - 1 - k) / hz, sx, sy, 1.0))
        return tuple(out)


def _cache_dir() -> Path:
    root = Path(os.environ.get("XRSEG_CACHE", Path.home() / ".cache" / "xrseg"))
    return root / "bench_streaming"


def _project(point: np.ndarray, pose: Pose, k: np.ndarray) -> tuple[float, float, float]:
    cam = pose.inverse().matrix @ np.append(point, 1.0)
    z = float(cam[2])
    if z <= 1e-6:
        return float("nan"), float("nan"), z
    uv = k @ (cam[:3] / z)
    return float(uv[0]), float(uv[1]), z


def render(spec: SequenceSpec) -> GazeSequence:
    """Render (or load from the cache) the sequence of `spec`."""
    path = (
        _cache_dir()
        / f"v{VERSION}-seed{spec.seed}-n{spec.frames}-arc{spec.arc_deg:g}-dwell{spec.dwell_frames}.npz"
    )
    intrinsics = default_intrinsics()
    scene = make_scene(spec.seed, n_objects=4 + spec.seed % 4)
    poses = orbit_poses(scene, spec.frames, arc_deg=spec.arc_deg, start_deg=-spec.arc_deg / 2)
    if path.exists():
        data = np.load(path)
        rgb, depth, ids, depth0 = data["rgb"], data["depth"], data["ids"], data["depth0"]
    else:
        renderer = SceneRenderer(scene)
        views = [
            renderer.render(intrinsics, p, DepthDegradation(), seed=i, frame_id=i)
            for i, p in enumerate(poses)
        ]
        rgb = np.stack([v.frame.rgb for v in views])
        depth = np.stack([v.frame.depth for v in views])
        ids = np.stack([v.object_ids for v in views]).astype(np.int16)
        depth0 = views[0].clean_depth_m
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez_compressed(tmp, rgb=rgb, depth=depth, ids=ids, depth0=depth0)
        tmp.replace(path)
    frames = [RGBDFrame(i, rgb[i], depth[i], intrinsics, 1000.0, poses[i], 0.0) for i in range(spec.frames)]
    # Gaze anchors: for each object visible on the first frame that shows one of >= 1500 px (frame 0
    # unless the camera starts looking past the objects), largest first, its most interior pixel in 3D.
    k = intrinsics.matrix
    candidates = [o.object_id for o in scene.objects if not o.is_structure]
    for f0 in range(spec.frames):
        areas = {oid: int((ids[f0] == oid).sum()) for oid in candidates}
        targets = [oid for oid in sorted(candidates, key=lambda o: -areas[o]) if areas[oid] >= 1500]
        if targets:
            break
    else:
        raise RuntimeError(f"scene {spec.seed}: no object of >= 1500 px on any frame; pick another seed")
    anchors = []
    for oid in targets:
        inside = cv2.distanceTransform((ids[f0] == oid).astype(np.uint8), cv2.DIST_L2, 5)
        y, x = np.unravel_index(int(np.argmax(inside)), inside.shape)
        if f0 == 0:
            z = float(depth0[y, x])  # exact depth
        else:  # the sensor's depth there, or the object's median where the sensor has a hole
            z = (
                depth[f0][y, x] / 1000.0
                or float(np.median(depth[f0][(ids[f0] == oid) & (depth[f0] > 0)])) / 1000.0
            )
        xyz_cam = np.linalg.inv(k) @ np.array([x, y, 1.0]) * z
        anchors.append((poses[f0].matrix @ np.append(xyz_cam, 1.0))[:3])
    h, w = ids.shape[1:]
    gaze = np.full((spec.frames, 2), np.nan)
    truth = np.full(spec.frames, -2, np.int32)
    for i in range(spec.frames):
        j = (i // spec.dwell_frames) % len(anchors)
        u, v, _ = _project(anchors[j], poses[i], k)
        if np.isfinite(u) and 0 <= u < w and 0 <= v < h:
            gaze[i] = (u, v)
            truth[i] = int(ids[i][int(v), int(u)])
    return GazeSequence(spec, frames, gaze, truth, ids)

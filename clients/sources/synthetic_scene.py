"""Synthetic scenes: known meshes (objects on a floor, walls, an optional table) and the cameras
that look at them. What each pixel shows is computed by synthetic_render.py; clients import both
through clients/sources/synthetic.py."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import open3d as o3d

from engine.core import CameraIntrinsics, Pose

BACKGROUND_ID = -1
"""object_ids value for pixels whose ray hits nothing."""

OBJECT_KINDS = ("box", "sphere", "cylinder", "cone", "torus")
STRUCTURE_KINDS = ("floor", "wall")
TEXTURES = ("plain", "stripes", "checker", "waves")


class SceneError(ValueError):
    """A scene or camera cannot be built as asked."""


@dataclass(frozen=True, eq=False)
class SceneObject:
    """One rigid mesh of the scene with its appearance.

    Attributes:
        object_id: the value this object has in `SyntheticFrame.object_ids` (>= 0).
        kind: "floor", "wall" (structure) or one of OBJECT_KINDS.
        vertices: (V, 3) float32 world coordinates, metres.
        triangles: (T, 3) int32 vertex indices, counter-clockwise seen from outside.
        albedo: (3,) float32 RGB in 0..1.
        texture: one of TEXTURES; modulates albedo procedurally in world coordinates.
        texture_scale: period of the texture in metres.
        texture_axis: (3,) float32 unit vector orienting stripes/waves.
        support_id: object_id of what this object rests on (the floor, a table, another box).
    """

    object_id: int
    kind: str
    vertices: np.ndarray
    triangles: np.ndarray
    albedo: np.ndarray
    texture: str = "plain"
    texture_scale: float = 0.1
    texture_axis: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0], np.float32))
    support_id: int | None = None

    @property
    def is_structure(self) -> bool:
        """Floor and walls: they get ids but are not 'objects' a user would pick."""
        return self.kind in STRUCTURE_KINDS

    @property
    def center(self) -> np.ndarray:
        """(3,) float64 centre of the vertex bounding box, metres."""
        v = self.vertices.astype(np.float64)
        return (v.min(0) + v.max(0)) / 2.0


@dataclass(frozen=True, eq=False)
class SyntheticScene:
    """A set of meshes plus where a camera should look.

    Attributes:
        seed: the seed that generated it (make_scene(seed) rebuilds the same scene).
        objects: every mesh, structure included; objects[i].object_id == i.
        target: (3,) float64 world point the default cameras look at (the object cluster).
        light_dir: (3,) float64 unit vector towards the light (directional light).
    """

    seed: int
    objects: tuple[SceneObject, ...]
    target: np.ndarray
    light_dir: np.ndarray

    @property
    def object_ids(self) -> tuple[int, ...]:
        """Ids of the pickable objects (not floor, not walls)."""
        return tuple(o.object_id for o in self.objects if not o.is_structure)


def default_intrinsics(
    width: int = 640, height: int = 480, fx: float = 525.0, fy: float = 525.0
) -> CameraIntrinsics:
    """Kinect-like pinhole with the principal point at the image centre."""
    return CameraIntrinsics(width, height, fx, fy, (width - 1) / 2.0, (height - 1) / 2.0)


def look_at_pose(eye: np.ndarray, target: np.ndarray, up: np.ndarray | None = None) -> Pose:
    """Camera-to-world pose of a camera at `eye` looking at `target` (OpenCV axes, world z up)."""
    eye = np.asarray(eye, np.float64)
    target = np.asarray(target, np.float64)
    up = np.array([0.0, 0.0, 1.0]) if up is None else np.asarray(up, np.float64)
    forward = target - eye
    if np.linalg.norm(forward) < 1e-9:
        raise SceneError("look_at_pose needs eye != target")
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-6:
        raise SceneError("look_at_pose: viewing direction is parallel to 'up'; pass another up vector")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, down, forward, eye
    return Pose(m)


# --------------------------------------------------------------------------- scene building


def _mesh_arrays(mesh: o3d.geometry.TriangleMesh) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.triangles, np.int32)


def _yaw(vertices: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    r = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], np.float32)
    return vertices @ r.T


def _primitive(kind: str, size: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """Mesh of one primitive resting on z = 0, centred on the z axis; returns (V, T, footprint radius)."""
    if kind == "box":
        w, d, h = size * rng.uniform(0.6, 1.4, 3)
        v, t = _mesh_arrays(o3d.geometry.TriangleMesh.create_box(w, d, h))
        v -= np.array([w / 2, d / 2, 0.0], np.float32)
        v = _yaw(v, rng.uniform(0, np.pi))
        return v, t, float(np.hypot(w, d) / 2)
    if kind == "sphere":
        r = size / 2
        v, t = _mesh_arrays(o3d.geometry.TriangleMesh.create_sphere(r, resolution=40))
        v[:, 2] += r
        return v, t, float(r)
    if kind == "cylinder":
        r, h = size / 2 * rng.uniform(0.5, 0.9), size * rng.uniform(0.8, 1.8)
        v, t = _mesh_arrays(o3d.geometry.TriangleMesh.create_cylinder(r, h, resolution=48))
        v[:, 2] += h / 2
        return v, t, float(r)
    if kind == "cone":
        r, h = size / 2 * rng.uniform(0.7, 1.0), size * rng.uniform(0.9, 1.6)
        v, t = _mesh_arrays(o3d.geometry.TriangleMesh.create_cone(r, h, resolution=48))
        return v, t, float(r)
    if kind == "torus":
        tube = size * rng.uniform(0.12, 0.2)
        ring = size / 2 - tube
        v, t = _mesh_arrays(o3d.geometry.TriangleMesh.create_torus(ring, tube, 48, 24))
        v[:, 2] += tube
        return v, t, float(ring + tube)
    raise SceneError(f"unknown primitive {kind!r}; choose one of {OBJECT_KINDS}")


def _plane(corner: np.ndarray, e1: np.ndarray, e2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A rectangle corner + a*e1 + b*e2 (a, b in [0, 1]) as two triangles, facing e1 x e2."""
    v = np.array([corner, corner + e1, corner + e1 + e2, corner + e2], np.float32)
    t = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    return v, t


def _distinct_colour(rng: np.random.Generator, used_hues: list[float]) -> np.ndarray:
    """A saturated colour whose hue differs from the ones used so far (when possible)."""
    for _ in range(20):
        hue = rng.uniform(0, 180)
        if all(min(abs(hue - h), 180 - abs(hue - h)) > 18 for h in used_hues):
            break
    used_hues.append(hue)
    hsv = np.array([[[hue, rng.uniform(90, 230), rng.uniform(120, 235)]]], np.uint8)
    return (cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0] / 255.0).astype(np.float32)


def make_scene(seed: int, n_objects: int = 6, with_table: bool | None = None) -> SyntheticScene:
    """Build a random room corner with n_objects primitives, deterministic in `seed`.

    Layout: a floor (z = 0), a back wall and one or two side walls 1.2-2.5 m from the cluster,
    objects resting on the floor (some touching each other, one possibly stacked on a box), and
    optionally a table (a box) with objects on it. Colours are distinct per object but some are
    close to the floor's or a neighbour's, and most objects carry a procedural texture.

    Args:
        seed: random seed; the same seed gives the same scene.
        n_objects: pickable objects, 1..12 (a table counts as one).
        with_table: force a table on or off; None lets the seed decide (about one scene in three).
    """
    if not 1 <= n_objects <= 12:
        raise SceneError(f"n_objects must be in 1..12, got {n_objects}")
    rng = np.random.default_rng(seed)
    objects: list[SceneObject] = []
    used_hues: list[float] = []

    def add(kind, v, t, albedo, texture="plain", scale=0.1, support=None) -> int:
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        oid = len(objects)
        objects.append(
            SceneObject(
                oid,
                kind,
                v.astype(np.float32),
                t,
                albedo,
                texture,
                float(scale),
                axis.astype(np.float32),
                support,
            )
        )
        return oid

    # Structure: floor and walls, big enough to fill every default view.
    floor_albedo = (
        cv2.cvtColor(np.array([[[rng.uniform(5, 25), 110, 170]]], np.uint8), cv2.COLOR_HSV2RGB)[0, 0] / 255.0
    )
    v, t = _plane(np.array([-6.0, -6.0, 0.0]), np.array([12.0, 0, 0]), np.array([0, 12.0, 0]))
    floor_id = add("floor", v, t, floor_albedo.astype(np.float32), "stripes", rng.uniform(0.08, 0.2))
    back_y = rng.uniform(1.3, 2.4)
    v, t = _plane(np.array([-6.0, back_y, 0.0]), np.array([0, 0, 3.0]), np.array([12.0, 0, 0]))
    wall_albedo = np.full(3, rng.uniform(0.7, 0.9), np.float32) * np.array([1.0, 0.97, 0.92], np.float32)
    add("wall", v, t, wall_albedo, "plain")
    left_x = -rng.uniform(1.4, 2.6)
    v, t = _plane(np.array([left_x, -6.0, 0.0]), np.array([0, 12.0, 0]), np.array([0, 0, 3.0]))
    add("wall", v, t, (wall_albedo * np.array([0.95, 1.0, 1.05])).clip(0, 1).astype(np.float32), "plain")
    if rng.random() < 0.5:
        right_x = rng.uniform(1.6, 2.8)
        v, t = _plane(np.array([right_x, -6.0, 0.0]), np.array([0, 0, 3.0]), np.array([0, 12.0, 0]))
        add("wall", v, t, (wall_albedo * 0.9).astype(np.float32), "plain")

    # Footprints on the floor (x, y, radius) for rejection sampling.
    footprints: list[tuple[float, float, float]] = []
    area_x, area_y = (-0.9, 0.9), (-0.6, min(0.9, back_y - 0.5))

    def free(x: float, y: float, r: float, slack: float = 0.02) -> bool:
        return all(np.hypot(x - fx, y - fy) >= r + fr + slack for fx, fy, fr in footprints)

    def texture() -> tuple[str, float]:
        return str(rng.choice(TEXTURES, p=[0.3, 0.3, 0.2, 0.2])), float(rng.uniform(0.03, 0.12))

    n_left = n_objects
    table = with_table if with_table is not None else bool(rng.random() < 0.35)
    if table and n_objects >= 3:
        tw, td, th = rng.uniform(0.7, 1.1), rng.uniform(0.45, 0.7), rng.uniform(0.5, 0.75)
        tx, ty = rng.uniform(-0.4, 0.4), rng.uniform(0.1, max(0.15, area_y[1] - 0.3))
        v, t = _mesh_arrays(o3d.geometry.TriangleMesh.create_box(tw, td, th))
        v = v - np.array([tw / 2, td / 2, 0.0], np.float32) + np.array([tx, ty, 0.0], np.float32)
        tex, scale = texture()
        table_id = add("box", v, t, _distinct_colour(rng, used_hues), tex, scale, floor_id)
        footprints.append((tx, ty, float(np.hypot(tw, td) / 2)))
        n_left -= 1
        # one or two small objects on the table top
        for _ in range(min(2, n_left - 1)):
            kind = str(rng.choice(OBJECT_KINDS))
            v, t, r = _primitive(kind, rng.uniform(0.1, 0.22), rng)
            ox = tx + rng.uniform(-tw / 2 + r, tw / 2 - r) if tw / 2 > r else tx
            oy = ty + rng.uniform(-td / 2 + r, td / 2 - r) if td / 2 > r else ty
            v = v + np.array([ox, oy, th], np.float32)
            tex, scale = texture()
            add(kind, v, t, _distinct_colour(rng, used_hues), tex, scale, table_id)
            n_left -= 1

    last: tuple[float, float, float, int, str, float] | None = None  # x, y, r, id, kind, height
    attempts = 0
    while n_left > 0 and attempts < 500:
        attempts += 1
        kind = str(rng.choice(OBJECT_KINDS, p=[0.35, 0.2, 0.2, 0.1, 0.15]))
        size = rng.uniform(0.14, 0.42)
        v, t, r = _primitive(kind, size, rng)
        support = floor_id
        base_z = 0.0
        if last is not None and rng.random() < 0.35:
            # touch the previous object: place at exactly r + r_last along a random direction
            ang = rng.uniform(0, 2 * np.pi)
            x, y = last[0] + (r + last[2]) * np.cos(ang), last[1] + (r + last[2]) * np.sin(ang)
            ok = area_x[0] - 0.2 <= x <= area_x[1] + 0.2 and area_y[0] <= y <= area_y[1] + 0.2
            ok = ok and all(np.hypot(x - fx, y - fy) >= r + fr - 1e-3 for fx, fy, fr in footprints)
        elif last is not None and last[4] == "box" and rng.random() < 0.25 and kind in ("box", "cylinder"):
            # stack on the previous box (smaller object, resting on its top face)
            v, t, r = _primitive(kind, min(size, 0.7 * last[2]), rng)
            x, y = last[0], last[1]
            base_z, support, ok = last[5], last[3], True
        else:
            x, y = rng.uniform(*area_x), rng.uniform(*area_y)
            ok = free(x, y, r)
        if not ok:
            continue
        v = v + np.array([x, y, base_z], np.float32)
        tex, scale = texture() if rng.random() < 0.75 else ("plain", 0.1)
        oid = add(kind, v, t, _distinct_colour(rng, used_hues), tex, scale, support)
        if base_z == 0.0:
            footprints.append((x, y, r))
        last = (x, y, r, oid, kind, float(v[:, 2].max()))
        n_left -= 1
    if n_left > 0:
        raise SceneError(f"could not place {n_objects} objects without overlap (seed {seed}); ask for fewer")

    pickable = [o for o in objects if not o.is_structure]
    centres = np.array([o.center for o in pickable])
    target = np.array([centres[:, 0].mean(), centres[:, 1].mean(), 0.2])
    light = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.9, -0.3), 1.0])
    return SyntheticScene(seed, tuple(objects), target, light / np.linalg.norm(light))


def default_camera_pose(scene: SyntheticScene, rng: np.random.Generator | int) -> Pose:
    """A Kinect-at-head-height view of the object cluster: 1.6-2.6 m away, 1.0-1.6 m high,
    up to 35 degrees off the front."""
    rng = np.random.default_rng(rng)
    dist = rng.uniform(1.6, 2.6)
    azim = np.deg2rad(rng.uniform(-35, 35))
    height = rng.uniform(1.0, 1.6)
    eye = scene.target + np.array([dist * np.sin(azim), -dist * np.cos(azim), 0.0])
    eye[2] = height
    return look_at_pose(eye, scene.target)


def orbit_poses(
    scene: SyntheticScene,
    n: int,
    radius: float = 2.0,
    height: float = 1.3,
    arc_deg: float = 60.0,
    start_deg: float = -30.0,
) -> tuple[Pose, ...]:
    """n camera poses on a horizontal arc around the scene target (for tracking sequences).

    The arc starts at start_deg (0 = in front of the cluster, looking at the back wall) and spans
    arc_deg; every camera looks at scene.target.
    """
    if n < 1:
        raise SceneError(f"orbit_poses needs n >= 1, got {n}")
    angles = np.deg2rad(start_deg + arc_deg * (np.arange(n) / max(n - 1, 1)))
    poses = []
    for a in angles:
        eye = scene.target + np.array([radius * np.sin(a), -radius * np.cos(a), 0.0])
        eye[2] = height
        poses.append(look_at_pose(eye, scene.target))
    return tuple(poses)

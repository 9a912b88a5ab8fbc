"""Ray casting synthetic scenes into RGB-D frames with exact per-pixel ground truth, and the
sensor-like depth degradation (noise growing with z², holes, grazing dropouts, flying pixels).
The scenes come from synthetic_scene.py; clients import both through clients/sources/synthetic.py."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import open3d as o3d

from clients.sources.synthetic_scene import (
    BACKGROUND_ID,
    SceneError,
    SyntheticScene,
    default_camera_pose,
    default_intrinsics,
)
from engine.core import CameraIntrinsics, Pose, RGBDFrame


@dataclass(frozen=True)
class DepthDegradation:
    """Sensor-like corruption of a clean ray-cast depth map (defaults: Kinect v1-like).

    Attributes:
        noise_z2: Gaussian depth noise sigma = noise_z2 * z² metres (Khoshelham & Elberink 2012
            measured about 1.4e-3 * z² for the Kinect v1).
        noise_correlation_px: the noise is spatially correlated over about this many pixels
            (structured-light sensors match 9x9 blocks, so neighbouring pixels share errors);
            0 for independent noise per pixel.
        hole_fraction: fraction of the image covered by blob-shaped holes (no return).
        dropout: fraction of isolated single-pixel dropouts.
        grazing_deg: returns are lost where the ray meets the surface more obliquely than this.
        border_px: width of the zero border all around (the depth/colour registration margin).
        flying_fraction: fraction of depth-edge pixels replaced by a mix of the two depths.
        quantise_mm: store depth as uint16 millimetres (depth_scale 1000) instead of float32 metres.
        rgb_noise: Gaussian noise sigma on the 0..255 colour values.
    """

    noise_z2: float = 1.4e-3
    noise_correlation_px: float = 1.5
    hole_fraction: float = 0.03
    dropout: float = 0.005
    grazing_deg: float = 82.0
    border_px: int = 8
    flying_fraction: float = 0.5
    quantise_mm: bool = True
    rgb_noise: float = 3.0

    @classmethod
    def clean(cls) -> DepthDegradation:
        """No corruption at all: exact depth as float32 metres, noiseless colour."""
        return cls(0.0, 0.0, 0.0, 0.0, 90.0, 0, 0.0, False, 0.0)


@dataclass(frozen=True, eq=False)
class SyntheticFrame:
    """One rendered view with its ground truth.

    Attributes:
        frame: the RGB-D frame a camera would send (degraded if asked).
        object_ids: (H, W) int32 id of the object seen at each pixel (structure included),
            BACKGROUND_ID where the ray hits nothing. Exact, from the ray caster.
        clean_depth_m: (H, W) float32 exact depth in metres along the optical axis, 0 where
            nothing is hit.
    """

    frame: RGBDFrame
    object_ids: np.ndarray
    clean_depth_m: np.ndarray

    def visible_mask(self, object_id: int) -> np.ndarray:
        """(H, W) bool: pixels where object_id is the first surface hit."""
        return self.object_ids == object_id


class SceneRenderer:
    """Ray casts one scene from any number of cameras (builds the BVH once).

    Usage: `SceneRenderer(scene).render(intrinsics, pose, DepthDegradation(), seed=0)`.
    """

    def __init__(self, scene: SyntheticScene) -> None:
        self.scene = scene
        self._raycaster = o3d.t.geometry.RaycastingScene()
        self._geometry_to_object = []
        vert_normals, tri_offsets, tris, offset_v = [], [], [], 0
        n_tri = 0
        for obj in scene.objects:
            gid = self._raycaster.add_triangles(
                o3d.core.Tensor(obj.vertices, o3d.core.float32),
                o3d.core.Tensor(obj.triangles, o3d.core.uint32),
            )
            if gid != len(self._geometry_to_object):
                raise SceneError("Open3D returned non-sequential geometry ids; this renderer relies on them")
            self._geometry_to_object.append(obj.object_id)
            mesh = o3d.geometry.TriangleMesh(
                o3d.utility.Vector3dVector(obj.vertices.astype(np.float64)),
                o3d.utility.Vector3iVector(obj.triangles),
            )
            mesh.compute_vertex_normals()
            vert_normals.append(np.asarray(mesh.vertex_normals, np.float32))
            tris.append(obj.triangles + offset_v)
            tri_offsets.append(n_tri)
            offset_v += len(obj.vertices)
            n_tri += len(obj.triangles)
        self._geometry_to_object = np.asarray(self._geometry_to_object, np.int32)
        self._vertex_normals = np.concatenate(vert_normals)
        self._triangles = np.concatenate(tris)
        self._tri_offsets = np.asarray(tri_offsets, np.int64)
        self._albedo = np.stack([o.albedo for o in scene.objects]).astype(np.float32)

    def render(
        self,
        intrinsics: CameraIntrinsics,
        pose: Pose,
        degradation: DepthDegradation | None = None,
        seed: int = 0,
        frame_id: int = 0,
        capture_ts: float = 0.0,
    ) -> SyntheticFrame:
        """Render one view. degradation None means clean (DepthDegradation.clean()).

        Returns a SyntheticFrame whose RGBDFrame carries depth as uint16 mm (depth_scale 1000)
        when degradation.quantise_mm, else float32 metres (depth_scale 1).
        """
        deg = degradation or DepthDegradation.clean()
        rng = np.random.default_rng(seed)
        h, w = intrinsics.height, intrinsics.width
        u = (np.arange(w, dtype=np.float64) - intrinsics.cx) / intrinsics.fx
        v = (np.arange(h, dtype=np.float64) - intrinsics.cy) / intrinsics.fy
        dirs_cam = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((h, w))), axis=-1)
        dirs = dirs_cam @ pose.rotation.T  # unnormalised: the hit distance t is the optical-axis depth
        rays = np.concatenate([np.broadcast_to(pose.translation, (h, w, 3)), dirs], axis=-1).astype(
            np.float32
        )
        hits = self._raycaster.cast_rays(o3d.core.Tensor(rays))
        t_hit = hits["t_hit"].numpy()
        gid = hits["geometry_ids"].numpy().astype(np.int64)
        hit = np.isfinite(t_hit)
        gid_safe = np.where(hit, gid, 0)
        object_ids = np.where(hit, self._geometry_to_object[gid_safe], BACKGROUND_ID).astype(np.int32)
        depth = np.where(hit, t_hit, 0.0).astype(np.float32)

        # Smooth shading normals: interpolate vertex normals with the barycentric coordinates.
        prim = np.where(hit, hits["primitive_ids"].numpy().astype(np.int64), 0) + self._tri_offsets[gid_safe]
        bary = hits["primitive_uvs"].numpy()
        tri = self._triangles[prim]
        vn = self._vertex_normals
        normals = (
            vn[tri[..., 0]] * (1 - bary[..., :1] - bary[..., 1:])
            + vn[tri[..., 1]] * bary[..., :1]
            + vn[tri[..., 2]] * bary[..., 1:]
        )
        normals /= np.linalg.norm(normals, axis=-1, keepdims=True) + 1e-12
        ray_unit = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)
        facing = np.sum(normals * ray_unit, axis=-1)
        normals[facing > 0] *= -1  # planes are single triangles: face them towards the camera
        cos_incidence = np.abs(facing)

        points = pose.translation + dirs * depth[..., None]
        rgb = self._shade(object_ids, hit, points, normals, rng, deg.rgb_noise)
        noisy = _degrade_depth(depth, cos_incidence, deg, rng)
        if deg.quantise_mm:
            depth_out, scale = np.round(noisy * 1000.0).clip(0, 65535).astype(np.uint16), 1000.0
        else:
            depth_out, scale = noisy.astype(np.float32), 1.0
        frame = RGBDFrame(frame_id, rgb, depth_out, intrinsics, scale, pose, capture_ts)
        return SyntheticFrame(frame, object_ids, depth)

    def _shade(
        self,
        object_ids: np.ndarray,
        hit: np.ndarray,
        points: np.ndarray,
        normals: np.ndarray,
        rng: np.random.Generator,
        rgb_noise: float,
    ) -> np.ndarray:
        """(H, W, 3) uint8: Lambert shading of textured albedo under one directional light."""
        ids = np.where(hit, object_ids, 0)
        albedo = self._albedo[ids]
        pattern = np.ones(ids.shape, np.float32)
        for obj in self.scene.objects:
            sel = ids == obj.object_id
            if obj.texture == "plain" or not np.any(sel):
                continue
            p = points[sel]
            s = obj.texture_scale
            if obj.texture == "stripes":
                val = 0.82 + 0.18 * (np.sin(2 * np.pi * (p @ obj.texture_axis) / s) > 0)
            elif obj.texture == "checker":
                val = 0.8 + 0.2 * (np.floor(p / s).astype(np.int64).sum(axis=1) % 2)
            else:  # waves: two smooth sinusoids, like a printed pattern
                a2 = np.roll(obj.texture_axis, 1)
                val = (
                    0.85
                    + 0.08 * np.sin(2 * np.pi * (p @ obj.texture_axis) / s)
                    + 0.07 * np.sin(2 * np.pi * (p @ a2) / (1.7 * s))
                )
            pattern[sel] = val
        lambert = np.clip(np.sum(normals * self.scene.light_dir, axis=-1), 0.0, 1.0)
        light = 0.45 + 0.55 * lambert
        rgb = albedo * (pattern * light)[..., None] * 255.0
        rgb[~hit] = 0.0
        if rgb_noise > 0:
            rgb = rgb + rng.normal(0.0, rgb_noise, rgb.shape)
        return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def _degrade_depth(
    depth: np.ndarray, cos_incidence: np.ndarray, deg: DepthDegradation, rng: np.random.Generator
) -> np.ndarray:
    """(H, W) float32 metres -> degraded copy (0 = no measurement). See DepthDegradation."""
    h, w = depth.shape
    out = depth.astype(np.float32).copy()
    valid = out > 0
    if deg.flying_fraction > 0:
        # Flying pixels: on the far side of a depth jump, mix the two depths (mixed returns).
        near = np.zeros_like(out)
        padded = np.pad(out, 1)
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            nb = padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
            jump = valid & (nb > 0) & (out - nb > 0.05 * out)
            near = np.where(jump & ((near == 0) | (nb < near)), nb, near)
        edge = near > 0
        pick = edge & (rng.random((h, w)) < deg.flying_fraction)
        alpha = rng.uniform(0.15, 0.85, (h, w)).astype(np.float32)
        out = np.where(pick, alpha * out + (1 - alpha) * near, out)
    if deg.noise_z2 > 0:
        noise = rng.normal(0.0, 1.0, (h, w)).astype(np.float32)
        if deg.noise_correlation_px > 0:
            k = int(2 * np.ceil(2 * deg.noise_correlation_px) + 1)
            noise = cv2.GaussianBlur(noise, (k, k), deg.noise_correlation_px)
            noise /= max(float(noise.std()), 1e-6)
        out = out + noise * (deg.noise_z2 * out * out)
    lost = ~valid | (cos_incidence < np.cos(np.deg2rad(deg.grazing_deg)))
    if deg.hole_fraction > 0:
        field_ = cv2.resize(
            rng.random((h // 16, w // 16)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
        )
        fine = cv2.resize(
            rng.random((h // 4, w // 4)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
        )
        blob = 0.7 * field_ + 0.3 * fine
        lost |= blob > np.quantile(blob, 1.0 - deg.hole_fraction)
    if deg.dropout > 0:
        lost |= rng.random((h, w)) < deg.dropout
    if deg.border_px > 0:
        b = deg.border_px
        lost[:b], lost[-b:], lost[:, :b], lost[:, -b:] = True, True, True, True
    out[lost] = 0.0
    return np.maximum(out, 0.0)


def render_frame(
    scene: SyntheticScene,
    intrinsics: CameraIntrinsics | None = None,
    pose: Pose | None = None,
    degradation: DepthDegradation | None = None,
    seed: int = 0,
) -> SyntheticFrame:
    """One view of `scene` (default camera from `seed` when pose is None)."""
    intrinsics = intrinsics or default_intrinsics()
    pose = pose or default_camera_pose(scene, seed)
    return SceneRenderer(scene).render(intrinsics, pose, degradation, seed)


def render_sequence(
    scene: SyntheticScene,
    poses: tuple[Pose, ...],
    intrinsics: CameraIntrinsics | None = None,
    degradation: DepthDegradation | None = None,
    seed: int = 0,
    fps: float = 30.0,
) -> tuple[SyntheticFrame, ...]:
    """Render a moving-camera sequence; frame i has frame_id i, capture_ts i / fps and noise seed + i."""
    intrinsics = intrinsics or default_intrinsics()
    renderer = SceneRenderer(scene)
    return tuple(
        renderer.render(intrinsics, p, degradation, seed + i, frame_id=i, capture_ts=i / fps)
        for i, p in enumerate(poses)
    )

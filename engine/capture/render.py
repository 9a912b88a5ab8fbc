"""Preview images of a captured mesh, from three sides, rendered headless by ray casting.

Why ray casting: Open3D's OffscreenRenderer needs EGL or an X server, which servers and CI often
lack (here it fails with "Failed to load vulkan library!"); Open3D's
RaycastingScene runs anywhere, and its per-pixel triangle ids and barycentric coordinates give
exact vertex-colour interpolation and a z-buffer for free. A 480x480 view of a 150k-triangle
mesh takes ~50 ms on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import open3d as o3d

from engine.capture.mesh import CaptureMesh


@dataclass(frozen=True, eq=False)
class PreviewImage:
    """name: "view0".."view2"; rgb: (S, S, 3) uint8; eye: (3,) float64 camera position."""

    name: str
    rgb: np.ndarray
    eye: np.ndarray

    def png(self) -> bytes:
        ok, buf = cv2.imencode(".png", cv2.cvtColor(self.rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeError("OpenCV could not encode a PNG preview")
        return buf.tobytes()


def view_eyes(center: np.ndarray, radius: float, up: np.ndarray, n: int = 3, elevation_deg: float = 30.0) -> np.ndarray:
    """(n, 3) camera positions around `center`, evenly in azimuth about `up`, elevated by elevation_deg."""
    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    a = np.cross(up, [1.0, 0.0, 0.0])
    if np.linalg.norm(a) < 1e-3:
        a = np.cross(up, [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(up, a)
    el = np.deg2rad(elevation_deg)
    dist = 2.6 * radius
    eyes = []
    for az in np.deg2rad(np.arange(n) * 360.0 / n):
        d = np.cos(el) * (np.cos(az) * a + np.sin(az) * b) + np.sin(el) * up
        eyes.append(center + dist * d)
    return np.asarray(eyes)


def render_previews(mesh: CaptureMesh, up: np.ndarray | None = None, size: int = 480, n: int = 3) -> list[PreviewImage]:
    """n shaded views of the mesh (vertex colours, Lambert light from the camera, white background).

    Args:
        mesh: the mesh (world coordinates).
        up: world up vector (e.g. the capture cameras' mean up axis); None: +z.
        size: image side in pixels.
    """
    if mesh.is_empty:
        raise ValueError("cannot render an empty mesh")
    up = np.array([0.0, 0.0, 1.0]) if up is None else np.asarray(up, np.float64)
    v = mesh.vertices.astype(np.float64)
    lo, hi = v.min(0), v.max(0)
    center = (lo + hi) / 2
    radius = max(float(np.linalg.norm(hi - lo)) / 2, 1e-3)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(mesh.vertices.astype(np.float32)), o3d.core.Tensor(mesh.triangles.astype(np.uint32))
    )
    colors = mesh.colors.astype(np.float32)
    tris = mesh.triangles.astype(np.int64)
    out = []
    for i, eye in enumerate(view_eyes(center, radius, up, n)):
        rays = o3d.t.geometry.RaycastingScene.create_rays_pinhole(
            fov_deg=45.0,
            center=o3d.core.Tensor(center.astype(np.float32)),
            eye=o3d.core.Tensor(eye.astype(np.float32)),
            up=o3d.core.Tensor((up / np.linalg.norm(up)).astype(np.float32)),
            width_px=size,
            height_px=size,
        )
        hits = scene.cast_rays(rays)
        hit = np.isfinite(hits["t_hit"].numpy())
        prim = np.where(hit, hits["primitive_ids"].numpy(), 0).astype(np.int64)
        uv = hits["primitive_uvs"].numpy()
        t = tris[prim]
        rgb = (
            colors[t[..., 0]] * (1 - uv[..., :1] - uv[..., 1:]) + colors[t[..., 1]] * uv[..., :1] + colors[t[..., 2]] * uv[..., 1:]
        )
        normals = hits["primitive_normals"].numpy()
        dirs = rays.numpy()[..., 3:]
        dirs = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)
        shade = 0.35 + 0.65 * np.abs(np.sum(normals * dirs, axis=-1))
        img = np.where(hit[..., None], rgb * shade[..., None], 255.0)[::-1]  # rays' rows run bottom-up
        out.append(PreviewImage(f"view{i}", np.clip(np.round(img), 0, 255).astype(np.uint8), eye))
    return out

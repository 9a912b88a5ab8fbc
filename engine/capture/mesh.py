"""From marching cubes to a mesh a user keeps: the object's component, holes, size, file formats.

Why these steps: the TSDF of a tracked object still holds specks where a mask leaked onto the
support or a neighbour for a frame or two; they are separate components, smaller than the object,
so the largest connected component is the object. Hole filling and decimation are optional
(Open3D's), off by default: both change the measured surface. Files are produced in memory (the
capture store writes them atomically) with vertex colours in every format; GLB through trimesh.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import open3d as o3d
import trimesh

from engine.capture.config import CaptureConfig, EmptyCaptureError

MESH_FORMATS = ("ply", "obj", "glb")


@dataclass(frozen=True, eq=False)
class CaptureMesh:
    """A coloured triangle mesh in world coordinates.

    vertices: (V, 3) float32 metres; triangles: (T, 3) int32; colors: (V, 3) uint8 RGB.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    colors: np.ndarray

    @property
    def is_empty(self) -> bool:
        return len(self.triangles) == 0

    def to_open3d(self) -> o3d.geometry.TriangleMesh:
        mesh = o3d.geometry.TriangleMesh(
            o3d.utility.Vector3dVector(self.vertices.astype(np.float64)),
            o3d.utility.Vector3iVector(self.triangles.astype(np.int32)),
        )
        mesh.vertex_colors = o3d.utility.Vector3dVector(self.colors.astype(np.float64) / 255.0)
        return mesh

    @classmethod
    def from_open3d(cls, mesh: o3d.geometry.TriangleMesh) -> CaptureMesh:
        colors = np.asarray(mesh.vertex_colors)
        if len(colors) != len(mesh.vertices):
            colors = np.full((len(mesh.vertices), 3), 0.7)
        return cls(
            np.asarray(mesh.vertices, np.float32),
            np.asarray(mesh.triangles, np.int32),
            np.clip(np.round(colors * 255.0), 0, 255).astype(np.uint8),
        )

    def to_trimesh(self) -> trimesh.Trimesh:
        rgba = np.concatenate([self.colors, np.full((len(self.colors), 1), 255, np.uint8)], axis=1)
        return trimesh.Trimesh(self.vertices, self.triangles, vertex_colors=rgba, process=False)

    def encode(self, fmt: str) -> bytes:
        """The mesh as a file: "ply" (binary), "obj" (vertex colours as `v x y z r g b`), "glb"."""
        if fmt not in MESH_FORMATS:
            raise ValueError(f"unknown mesh format {fmt!r}; choose one of {MESH_FORMATS}")
        data = self.to_trimesh().export(file_type=fmt)
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)

    @classmethod
    def decode(cls, data: bytes, fmt: str) -> CaptureMesh:
        """Read a file written by encode (for tests and tools)."""
        loaded = trimesh.load(io.BytesIO(data), file_type=fmt, process=False, force="mesh")
        colors = np.asarray(loaded.visual.vertex_colors)[:, :3] if loaded.visual.kind == "vertex" else None
        if colors is None:
            colors = np.full((len(loaded.vertices), 3), 178, np.uint8)
        return cls(np.asarray(loaded.vertices, np.float32), np.asarray(loaded.faces, np.int32), colors.astype(np.uint8))


def postprocess(mesh: o3d.geometry.TriangleMesh, config: CaptureConfig) -> CaptureMesh:
    """Largest component, optional hole filling and simplification (see CaptureConfig).

    Raises:
        EmptyCaptureError: marching cubes found no surface (too few observations per voxel).
    """
    if len(mesh.triangles) == 0:
        raise EmptyCaptureError(
            "the capture has no surface yet: every voxel was seen fewer than "
            f"{config.weight_threshold:g} times; capture more frames of the object"
        )
    mesh.remove_duplicated_vertices()
    mesh.remove_degenerate_triangles()
    if config.keep_largest_component:
        mesh = largest_component(mesh)
    if config.fill_holes > 0:
        filled = o3d.t.geometry.TriangleMesh.from_legacy(mesh).fill_holes(config.fill_holes)
        mesh = filled.to_legacy()
    if config.target_triangles and len(mesh.triangles) > config.target_triangles:
        mesh = mesh.simplify_quadric_decimation(config.target_triangles)
    mesh.remove_unreferenced_vertices()
    return CaptureMesh.from_open3d(mesh)


def largest_component(mesh: o3d.geometry.TriangleMesh) -> o3d.geometry.TriangleMesh:
    """The connected component with most triangles (a new mesh; unreferenced vertices removed)."""
    labels, sizes, _ = mesh.cluster_connected_triangles()
    labels = np.asarray(labels)
    if len(sizes) <= 1:
        return mesh
    keep = int(np.argmax(np.asarray(sizes)))
    out = o3d.geometry.TriangleMesh(mesh)
    out.remove_triangles_by_mask(labels != keep)
    out.remove_unreferenced_vertices()
    return out

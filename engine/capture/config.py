"""Settings of a capture and the errors capture code raises (domain errors; wire codes are chosen
at the edge, engine/session/wire.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.errors import EngineError


class CaptureError(EngineError):
    """A capture cannot do what was asked; the message says what to do instead."""


class NoPoseError(CaptureError):
    """A frame reached a capture without a camera pose and no fallback pose source is on."""


class CaptureStateError(CaptureError):
    """A lifecycle call out of order (add before start, stop twice, a second capture of one object)."""


class EmptyCaptureError(CaptureError):
    """Nothing was integrated (no frame with mask + depth + pose), so there is no mesh."""


@dataclass(frozen=True)
class CaptureConfig:
    """Knobs of one capture. Defaults suit tabletop objects (5-60 cm) seen from 0.3-2 m.

    Attributes:
        voxel_size: TSDF voxel edge in metres. 5 mm keeps 1 cm detail and costs ~1 ms per 10k
            masked pixels on a CPU; halve it for small objects (the memory grows ~4x).
        trunc_voxels: truncation distance in voxels (4 -> 2 cm at 5 mm): a few times the
            depth noise at the capture distance, small enough that the thin sides of an object
            do not cancel each other.
        block_resolution: voxels per block edge of the VoxelBlockGrid (8 -> 4 cm blocks).
        block_count: initial hash map capacity of the grid (it grows when needed).
        depth_max: depth beyond this (metres) is not integrated.
        mask_erode_px: the mask is eroded by this many pixels before filtering the depth: mask
            borders carry bleed onto the support and flying pixels; other views fill the rim.
        depth_edge_ratio: masked pixels whose depth differs from a 4-neighbour by more than this
            fraction of their depth are dropped (flying pixels at the object's silhouette).
        min_valid_pixels: a frame with fewer masked pixels of valid depth is skipped (a sliver of
            the object at the image border, or a mask lost by the tracker).
        device: "auto" (CUDA:0 when Open3D was built with CUDA and sees a GPU, else CPU:0),
            or an Open3D device string such as "CPU:0" / "CUDA:0".
        progress_every: a progress message (preview + coverage) every this many integrated frames.
        preview_voxel: voxel edge of the preview point cloud (metres).
        preview_max_points: cap on points per progress message (even stride beyond it).
        coverage_bins: 12 (icosahedron vertices) or 20 (dodecahedron vertices) view directions.
        weight_threshold: marching cubes ignores voxels observed fewer times than this.
        keep_largest_component: keep only the largest connected part of the mesh (the object;
            drops specks of support or neighbour that leaked through the masks).
        fill_holes: close boundary loops up to this size (metres, Open3D fill_holes); 0 = off.
        target_triangles: simplify (quadric decimation) to at most this many triangles; 0 = off.
        dataset_max_frames: integrated frames whose image, mask and pose are kept for the
            dataset export (the first ones are kept; later frames are integrated, not stored).
        preview_image_px: size of the square mesh preview images.
    """

    voxel_size: float = 0.005
    trunc_voxels: float = 4.0
    block_resolution: int = 8
    block_count: int = 4000
    depth_max: float = 3.0
    mask_erode_px: int = 2
    depth_edge_ratio: float = 0.03
    min_valid_pixels: int = 50
    device: str = "auto"
    progress_every: int = 10
    preview_voxel: float = 0.01
    preview_max_points: int = 4096
    coverage_bins: int = 20
    weight_threshold: float = 2.0
    keep_largest_component: bool = True
    fill_holes: float = 0.0
    target_triangles: int = 0
    dataset_max_frames: int = 300
    preview_image_px: int = 480

    def __post_init__(self) -> None:
        for name in ("voxel_size", "trunc_voxels", "depth_max", "preview_voxel"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"CaptureConfig.{name} must be a positive number, got {value}")
        for name in ("block_resolution", "block_count", "progress_every", "preview_max_points", "preview_image_px"):
            if getattr(self, name) < 1:
                raise ValueError(f"CaptureConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.coverage_bins not in (12, 20):
            raise ValueError(f"CaptureConfig.coverage_bins must be 12 or 20, got {self.coverage_bins}")
        if self.mask_erode_px < 0 or self.target_triangles < 0 or self.fill_holes < 0 or self.dataset_max_frames < 0:
            raise ValueError("CaptureConfig: mask_erode_px, target_triangles, fill_holes, dataset_max_frames must be >= 0")

    @property
    def sdf_trunc(self) -> float:
        """Truncation distance in metres."""
        return self.voxel_size * self.trunc_voxels

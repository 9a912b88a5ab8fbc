"""Scripted gaze: where a user would look, for recorded or synthetic sequences.

A target is a point in the world (a chair, a cabinet). Each frame projects the current target
through that frame's pose and intrinsics, adds eye-tracker-like jitter, and yields a gaze
sample, so the gaze stays on the object while the camera moves, as a real user's would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.core import GazeSample, Pose, RGBDFrame


@dataclass(frozen=True, eq=False)
class GazeTarget:
    """Look at world_point (3,) metres from frame index first to last (inclusive)."""

    name: str
    world_point: np.ndarray
    first: int
    last: int


@dataclass(frozen=True, eq=False)
class PixelAnchor:
    """A target given as a pixel on one frame of the sequence; lifted to 3D with that frame's depth."""

    name: str
    frame_index: int
    x: float
    y: float
    first: int
    last: int


class GazeScript:
    """Targets over time plus jitter; deterministic for a seed."""

    def __init__(self, targets: Sequence[GazeTarget], jitter_px: float = 2.0, seed: int = 0) -> None:
        self.targets = tuple(targets)
        self.jitter_px = jitter_px
        self._rng = np.random.default_rng(seed)

    @classmethod
    def from_anchors(cls, frames: Sequence[RGBDFrame], anchors: Sequence[PixelAnchor], **kwargs: float) -> GazeScript:
        """Lift each anchor pixel with its frame's depth (median of a 5x5 window) and pose."""
        targets = []
        for a in anchors:
            frame = frames[a.frame_index]
            depth = frame.depth_m
            if depth is None:
                raise ValueError(f"anchor {a.name!r}: frame {a.frame_index} has no depth")
            x, y = int(round(a.x)), int(round(a.y))
            window = depth[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3]
            valid = window[window > 0]
            if valid.size == 0:
                raise ValueError(f"anchor {a.name!r}: no valid depth around ({x}, {y}) in frame {a.frame_index}")
            z = float(np.median(valid))
            k = frame.intrinsics
            cam = np.array([(a.x - k.cx) * z / k.fx, (a.y - k.cy) * z / k.fy, z])
            pose = frame.pose or Pose.identity()
            targets.append(GazeTarget(a.name, pose.transform(cam[None])[0], a.first, a.last))
        return cls(targets, **kwargs)

    def target_at(self, index: int) -> GazeTarget | None:
        for t in self.targets:
            if t.first <= index <= t.last:
                return t
        return None

    def gaze(self, index: int, frame: RGBDFrame, t: float) -> GazeSample | None:
        """The gaze sample for frame number `index`, or None when the target is out of view."""
        target = self.target_at(index)
        if target is None:
            return None
        pose = frame.pose or Pose.identity()
        cam = pose.inverse().transform(target.world_point[None])[0]
        if cam[2] <= 0.05:
            return None
        k = frame.intrinsics
        jitter = self._rng.normal(0.0, self.jitter_px, 2) if self.jitter_px > 0 else np.zeros(2)
        x = k.fx * cam[0] / cam[2] + k.cx + jitter[0]
        y = k.fy * cam[1] / cam[2] + k.cy + jitter[1]
        if not (0 <= x < k.width and 0 <= y < k.height):
            return None
        return GazeSample(t=t, x=float(x), y=float(y), confidence=0.95)

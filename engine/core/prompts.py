"""What a user asks for: points, boxes, rough masks, text and gaze, on one frame."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class PromptError(ValueError):
    """A prompt cannot be answered as given (outside the image, empty, wrong shape)."""


@dataclass(frozen=True)
class PointPrompt:
    """A click in pixel coordinates of the prompt's frame; label 1 = object, 0 = background."""

    x: float
    y: float
    label: int = 1


@dataclass(frozen=True)
class BoxPrompt:
    """Axis-aligned box in pixel coordinates, (x0, y0) top-left, (x1, y1) bottom-right."""

    x0: float
    y0: float
    x1: float
    y1: float


@dataclass(frozen=True, eq=False)
class MaskPrompt:
    """A rough mask of the object: (H, W) bool in the prompt frame's pixels."""

    mask: np.ndarray


@dataclass(frozen=True)
class GazeSample:
    """One eye-tracker sample projected into the frame: pixel coordinates and 0..1 confidence."""

    t: float
    x: float
    y: float
    confidence: float = 1.0


@dataclass(frozen=True, eq=False)
class Prompt:
    """Everything the user said about one object on one frame.

    Points, box and mask combine as in SAM. Gaze samples act as a positive point at their
    confidence-weighted mean until fixation detection refines them; text ranks candidate masks
    when a text encoder is loaded.
    """

    prompt_id: int
    frame_id: int
    points: tuple[PointPrompt, ...] = ()
    box: BoxPrompt | None = None
    mask: MaskPrompt | None = None
    text: str | None = None
    gaze: tuple[GazeSample, ...] = ()
    multimask: bool = True
    want_3d: bool = True

    def is_empty(self) -> bool:
        return not (self.points or self.box or self.mask is not None or self.text or self.gaze)

    def validate(self, height: int, width: int) -> None:
        """Raise PromptError unless every spatial prompt lies inside a (height, width) image."""
        if self.is_empty():
            raise PromptError("prompt has no point, box, mask, text or gaze")
        for p in self.points:
            _check_inside(p.x, p.y, height, width, "point")
            if p.label not in (0, 1):
                raise PromptError(f"point label must be 0 (background) or 1 (object), got {p.label}")
        if self.box is not None:
            b = self.box
            _check_inside(b.x0, b.y0, height, width, "box corner")
            _check_inside(b.x1, b.y1, height, width, "box corner")
            if b.x1 <= b.x0 or b.y1 <= b.y0:
                raise PromptError(f"box must have x1 > x0 and y1 > y0, got {b}")
        if self.mask is not None and self.mask.mask.shape != (height, width):
            raise PromptError(f"mask prompt is {self.mask.mask.shape[::-1]}, frame is {width}x{height}")
        for g in self.gaze:
            _check_inside(g.x, g.y, height, width, "gaze sample")

    def anchor_points(self) -> tuple[np.ndarray, np.ndarray]:
        """Point prompts with gaze folded in: ((N, 2) float32 xy, (N,) int32 labels)."""
        coords = [(p.x, p.y) for p in self.points]
        labels = [p.label for p in self.points]
        if self.gaze:
            coords.append(gaze_point(self.gaze))
            labels.append(1)
        return np.asarray(coords, np.float32).reshape(-1, 2), np.asarray(labels, np.int32)


def gaze_point(samples: Sequence[GazeSample]) -> tuple[float, float]:
    """Where a burst of gaze samples looks: their confidence-weighted mean (x, y).

    One definition for the decoder's gaze point (`Prompt.anchor_points`) and the dwell's "where the
    eye is now" (engine/dwell.py), so the renewal checks the point the decoder was given. A sample
    of confidence 0 still weighs a little, so a burst of such samples still has a point."""
    w = np.array([max(g.confidence, 1e-3) for g in samples])
    xy = np.array([(g.x, g.y) for g in samples])
    x, y = (xy * w[:, None]).sum(0) / w.sum()
    return float(x), float(y)


def _check_inside(x: float, y: float, height: int, width: int, what: str) -> None:
    if not (np.isfinite(x) and np.isfinite(y)):
        raise PromptError(f"{what} has non-finite coordinates ({x}, {y})")
    if not (0 <= x < width and 0 <= y < height):
        raise PromptError(f"{what} ({x:.1f}, {y:.1f}) is outside the {width}x{height} frame")

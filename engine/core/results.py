"""What the engine answers: masks with scores, a 3D segment, and when each stage ran."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from engine.core.frame import Pose


@dataclass(frozen=True, eq=False)
class RLEMask:
    """Binary mask as uncompressed COCO run-length encoding.

    counts: (K,) uint32 run lengths over the mask flattened in column-major (Fortran) order,
    starting with a run of zeros (possibly empty). Same convention as pycocotools'
    uncompressed RLE, so `{"size": [h, w], "counts": counts.tolist()}` loads there directly.
    """

    height: int
    width: int
    counts: np.ndarray

    @classmethod
    def encode(cls, mask: np.ndarray) -> RLEMask:
        """Encode an (H, W) bool mask."""
        h, w = mask.shape
        flat = np.asarray(mask, dtype=bool).ravel(order="F")
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        bounds = np.concatenate(([0], change, [flat.size]))
        counts = np.diff(bounds)
        if flat.size and flat[0]:
            counts = np.concatenate(([0], counts))
        return cls(h, w, counts.astype(np.uint32))

    def decode(self) -> np.ndarray:
        """(H, W) bool mask."""
        values = np.zeros(len(self.counts), dtype=bool)
        values[1::2] = True
        flat = np.repeat(values, self.counts.astype(np.int64))
        if flat.size != self.height * self.width:
            raise ValueError(f"RLE covers {flat.size} pixels, expected {self.height}x{self.width}")
        return flat.reshape((self.height, self.width), order="F")

    @property
    def area(self) -> int:
        return int(self.counts[1::2].sum())


@dataclass(frozen=True)
class MaskRanking:
    """Why a text prompt ranked a mask where it did (engine/fusion/text.py has the formula).

    score = text_weight * text + gaze_weight * gaze + iou_weight * iou; the highest score is the
    result's `best`. text: softmax over the candidates of CLIP similarity / temperature;
    similarity: the raw cosine similarity of the masked crop to the phrase; gaze: 1 when the
    mask covers the gaze (or click) point, falling off with the visual angle to it, None when the
    prompt had no point to be near; iou: the decoder's predicted IoU (clipped to 0..1).
    """

    score: float
    text: float
    similarity: float
    gaze: float | None
    iou: float


@dataclass(frozen=True, eq=False)
class MaskCandidate:
    """One mask answer. score is the model's own quality estimate (SAM: predicted IoU).

    ranking: present when a text prompt ranked the candidates, None otherwise.
    """

    mask: RLEMask
    score: float
    granularity: str = ""  # e.g. "part", "object", "region" for the geometric model
    ranking: MaskRanking | None = None


@dataclass(frozen=True, eq=False)
class AnchorWorld:
    """Where a selected object is in the world, fused over the frames it was selected in.

    Why: a segment's `centroid` is that of the surface visible in its own frame and slides with
    the viewpoint; this one converges while the same object stays selected (engine/anchor.py).
    centroid: (3,) metres, world frame: the mean of the centres of every `voxels` world voxel
    (1 cm by default) the object's segments covered over `frames` fused frames.
    """

    centroid: np.ndarray
    frames: int
    voxels: int


@dataclass(frozen=True, eq=False)
class Segment3D:
    """The selected mask lifted into world coordinates (camera frame when no pose is known).

    Attributes:
        status: "ok", or "no_depth" when the mask had too few valid depth samples.
        centroid: (3,) metres.
        box_center, box_extent: (3,) oriented bounding box centre and full side lengths.
        box_rotation: (3, 3) box axes as columns.
        points: (N, 3) float32 cleaned, voxel-down-sampled points.
        num_points: valid depth samples that went in, before cleaning.
        frame: "world" or "camera".
        anchor: the object's world anchor fused over the frames this selection (a held gaze
            answer, a tracked object) kept it (engine/anchor.py); None when not fused (a
            one-off answer, a segment in camera coordinates).
    """

    status: str
    centroid: np.ndarray
    box_center: np.ndarray
    box_extent: np.ndarray
    box_rotation: np.ndarray
    points: np.ndarray
    num_points: int
    frame: str = "world"
    anchor: AnchorWorld | None = None

    @classmethod
    def no_depth(cls, num_points: int = 0, frame: str = "world") -> Segment3D:
        zeros = np.zeros(3)
        return cls("no_depth", zeros, zeros, zeros, np.eye(3), np.zeros((0, 3), np.float32), num_points, frame)


@dataclass(frozen=True)
class StageTimestamps:
    """Wall-clock times (seconds since the epoch) at which each stage finished.

    capture is the client's clock; the rest are the engine's. On one machine (or with synchronised
    clocks) consecutive differences are per-stage latencies.
    """

    capture: float | None = None
    receive: float | None = None
    frame_decode: float | None = None
    encode: float | None = None
    decode: float | None = None
    lift: float | None = None
    send: float | None = None

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def durations_ms(self) -> dict[str, float]:
        """Per-stage latency in ms: time from the previous recorded stage to this one.

        A stage that finished before the one recorded ahead of it was not on this prompt's path
        (a keyframe encoded earlier and reused) and is left out rather than counted as negative.
        """
        out: dict[str, float] = {}
        prev: float | None = None
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (prev is not None and value < prev):
                continue
            if prev is not None:
                out[f.name] = (value - prev) * 1000.0
            prev = value
        return out


@dataclass(frozen=True, eq=False)
class SegmentationResult:
    """The engine's answer to one prompt.

    masks are ordered as the model returned them; best indexes the one the engine selected (and
    lifted). keyframe_id is the frame whose image embedding answered the prompt; frame_id is the
    frame the masks are expressed in. pose is the camera pose they were computed for, so a headset
    can reproject the world-anchored segment at display rate.
    """

    prompt_id: int
    frame_id: int
    keyframe_id: int
    masks: tuple[MaskCandidate, ...]
    best: int
    segment: Segment3D | None
    pose: Pose | None
    timestamps: StageTimestamps

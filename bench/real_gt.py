"""The real-data ground truth of bench.real_accuracy: frames of ../shared/data with instance masks.

Masks live in bench/data/real_gt/<sequence>/<frame>.png (uint8 label maps, 0 = not annotated)
with an index.json naming every label; the images stay in the shared data folder (the project
does not copy them). How the masks were made: bench/annotate_real_gt.py and
bench/data/real_gt/README.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from clients.sources.folder import open_sequence
from engine.core import RGBDFrame

REPO = Path(__file__).resolve().parents[1]
GT_DIR = REPO / "bench" / "data" / "real_gt"


class GroundTruthError(ValueError):
    """The ground truth or the frames it refers to cannot be read; the message says which file."""


def default_data_dir() -> Path:
    """The shared rgbd folder: ../shared/data/rgbd next to the checkout (or one level further up,
    for worktrees kept in a subfolder)."""
    for base in (REPO.parent, REPO.parent.parent):
        cand = base / "shared" / "data" / "rgbd"
        if cand.is_dir():
            return cand
    return REPO.parent / "shared" / "data" / "rgbd"


@dataclass(frozen=True, eq=False)
class AnnotatedObject:
    """One ground-truth object: its frame, name and (H, W) bool mask."""

    sequence: str
    frame_name: str
    label: int
    name: str
    mask: np.ndarray


@dataclass(frozen=True, eq=False)
class AnnotatedFrame:
    """A real RGB-D frame and its annotated objects."""

    sequence: str
    name: str
    frame: RGBDFrame
    objects: tuple[AnnotatedObject, ...]


def load_ground_truth(
    data_dir: Path | None = None, sequences: tuple[str, ...] | None = None, gt_dir: Path = GT_DIR
) -> Iterator[AnnotatedFrame]:
    """Every annotated frame (frames read lazily from the shared data folder).

    Raises GroundTruthError when the index, a label map or a frame is missing or inconsistent.
    """
    data = data_dir or default_data_dir()
    try:
        index = json.loads((gt_dir / "index.json").read_text())
    except (OSError, ValueError) as exc:
        raise GroundTruthError(f"cannot read {gt_dir / 'index.json'}: {exc}") from None
    for seq_name, entry in index["sequences"].items():
        if sequences is not None and seq_name not in sequences:
            continue
        if not (data / seq_name).is_dir():
            raise GroundTruthError(f"{data / seq_name} is missing; pass the shared rgbd folder (--data)")
        seq = open_sequence(data / seq_name)
        for fr in entry["frames"]:
            path = gt_dir / seq_name / f"{fr['frame']}.png"
            labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if labels is None:
                raise GroundTruthError(f"cannot read the label map {path}")
            frame = seq[int(fr["index"])]
            if labels.shape != frame.size:
                raise GroundTruthError(f"{path} is {labels.shape[::-1]} but the frame is {frame.size[::-1]}")
            if int(labels.max()) > len(fr["objects"]):
                raise GroundTruthError(
                    f"{path} has label {int(labels.max())} but the index names {len(fr['objects'])}"
                )
            objects = tuple(
                AnnotatedObject(seq_name, fr["frame"], k + 1, name, labels == k + 1)
                for k, name in enumerate(fr["objects"])
                if (labels == k + 1).any()
            )
            yield AnnotatedFrame(seq_name, fr["frame"], frame, objects)

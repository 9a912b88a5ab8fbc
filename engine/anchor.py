"""A world anchor per selected object: its lifted points fused over frames, reported with its results.

Why: a 3D segment's centroid is that of the surface visible in its own frame, so it slides with
the viewpoint although the object stands still (on the posed livingroom1_micro sequence the gazed
chair seat's per-frame centroid spreads 1.6 cm median / 2.9 cm max around its median while the
user looks at it the whole time: bench/selection_stability.py). A headset that places a label or
a menu on the selection wants one point that stays put. The centroid of every world voxel the
object's segments covered so far converges instead: each frame adds the surfaces it sees, and a
voxel counts once however often it is seen.

`WorldAnchor` is that fusion for one object: a set of `voxel_m` world voxels (bounded: past
`max_voxels` the ones seen longest ago go), fed each new segment's points. It fuses only world
points: a segment lifted in camera coordinates (a frame without a pose) leaves the anchor as it
is and gets none reported (its points cannot be placed among the others, and a camera-frame
result has no world for an anchor to be expressed in); the next posed frame carries on.

`Anchors` is a session's anchors, one per selection slot (the held gaze answer, each tracked
object), each belonging to one object: the caller says which object an answer is of (`identity`:
the held gaze object's id, a tracked object's prompt id), and a different identity in a slot
starts its anchor afresh. The identity is the selection's chain (an answer decoded afresh, then
the answers reused or renewed from it; a track from its prompt), not the granularity label of
each answer's mask: along a chain the renewal and the tracker keep the object by mask agreement,
and the label may change under it (on livingroom1_micro the held seat's label goes from "object"
to "part" around frame 21 while no step of its per-frame centroid exceeds 1.5 cm; a chain that
lost the object ends, and the next answer, decoded afresh, is a new identity).

`Anchors` lives on the session's parts and is written on the event loop only (the fusion is a few
thousand points of NumPy, well under a millisecond); worker threads never see it.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, replace

import numpy as np

from engine.core import AnchorWorld, Segment3D
from engine.pipeline import Answer
from engine.voxel_keys import voxel_centres, voxel_keys


@dataclass(frozen=True)
class AnchorConfig:
    """How an object's world anchor is fused.

    Attributes:
        voxel_m: world voxel side; a voxel counts once however many points or frames cover it
            (1 cm: below the 2 cm stability the anchor is for, above depth noise at arm's length).
        max_voxels: memory bound per object (an object seen at 1 cm with more surface than this,
            ~2 m^2, keeps the most recently seen voxels).
    """

    voxel_m: float = 0.01
    max_voxels: int = 20_000


class WorldAnchor:
    """One object's fused world voxels and the anchor they give (see the module docstring)."""

    def __init__(self, config: AnchorConfig) -> None:
        self.config = config
        self._keys = np.zeros(0, np.int64)  # packed voxel keys, sorted
        self._seen = np.zeros(0, np.int64)  # the fuse count at which each voxel was last seen
        self._frames = 0
        self._last: Segment3D | None = None

    @property
    def frames(self) -> int:
        return self._frames

    def fuse(self, segment: Segment3D) -> None:
        """Add a world-frame segment's points (the same segment object again adds nothing: a held
        answer moved into a new frame carries its old segment)."""
        if (
            segment is self._last
            or segment.frame != "world"
            or segment.status != "ok"
            or not len(segment.points)
        ):
            return
        self._last = segment
        self._frames += 1
        keys = np.unique(voxel_keys(segment.points, self.config.voxel_m))
        keys_all = np.concatenate((self._keys, keys))
        seen_all = np.concatenate((self._seen, np.full(len(keys), self._frames, np.int64)))
        order = np.lexsort((-seen_all, keys_all))  # by key, the newest sighting first
        keys_all, seen_all = keys_all[order], seen_all[order]
        first = np.ones(len(keys_all), bool)
        first[1:] = keys_all[1:] != keys_all[:-1]
        self._keys, self._seen = keys_all[first], seen_all[first]
        if len(self._keys) > self.config.max_voxels:
            keep = np.sort(np.argsort(-self._seen, kind="stable")[: self.config.max_voxels])
            self._keys, self._seen = self._keys[keep], self._seen[keep]

    def anchor(self) -> AnchorWorld | None:
        """The centroid of the fused voxels' centres, or None before any world points."""
        if not len(self._keys):
            return None
        centres = voxel_centres(self._keys, self.config.voxel_m)
        return AnchorWorld(centres.mean(axis=0), self._frames, len(self._keys))


class Anchors:
    """A session's world anchors, one per selection slot, each for one object. Event-loop only."""

    def __init__(self, config: AnchorConfig | None = None) -> None:
        self.config = config or AnchorConfig()
        self._slots: dict[Hashable, tuple[Hashable, WorldAnchor]] = {}

    def report(self, slot: Hashable, identity: Hashable, answer: Answer) -> Answer:
        """Fuse `answer`'s segment into the slot's anchor (started afresh when the slot held another
        object) and return the answer with the anchor on its segment. A segment in camera
        coordinates (no pose) or without one gets no anchor and leaves the slot's as it is."""
        segment = answer.result.segment
        if segment is None or segment.frame != "world":
            return answer
        held = self._slots.get(slot)
        if held is None or held[0] != identity:
            held = (identity, WorldAnchor(self.config))
            self._slots[slot] = held
        anchor = held[1]
        anchor.fuse(segment)
        value = anchor.anchor()
        if value is None:
            return answer
        result = replace(answer.result, segment=replace(segment, anchor=value))
        return replace(answer, result=result)

    def forget(self, slot: Hashable) -> None:
        """The slot's object is no longer selected (a cancelled track)."""
        self._slots.pop(slot, None)

    def clear(self) -> None:
        self._slots.clear()


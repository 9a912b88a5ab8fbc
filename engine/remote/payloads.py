"""What crosses the remote hop, besides the models' own inputs: small typed records.

Why their own file: both sides (the front-end's proxies, the replicas' deployments) import them,
and neither needs the other's Ray machinery to read them. Masks travel bit-packed (8x smaller
than numpy bool: 115 KB instead of 922 KB for three 640x480 masks), which keeps a decoder's answer
small enough to matter on loopback and on a network), and lz4-compressed: a mask is long runs, so
three 640x480 masks shrink from 115 KB packed to a few KB, under Ray's inline limit (100 KB): the
answer rides in the reply itself instead of a trip through the object store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lz4.block
import numpy as np

from models.interfaces import MaskPrediction


@dataclass(frozen=True, eq=False)
class RemoteEmbedding:
    """`ImageEmbedding.data` of the remote backend: where the real payload is.

    Attributes:
        refs: a one-element list holding the ObjectRef of the backend's own payload, owned by
            the front-end (the list keeps Ray from resolving the ref when it is passed to a
            decoder: the replica fetches it once, and only when it is not in its cache).
        key: the ref's hex id, the decoder replicas' cache key.
    """

    refs: list[Any]
    key: str

    def by_key(self) -> RemoteEmbedding:
        """The same embedding named by its key only. Why: an ObjectRef inside a request costs a
        borrowing round trip to its owner on every request (about 8 ms per prompt on our loopback
        measurement); a replica that has the embedding cached needs only the key, and one that does
        not answers `NotCached`, and gets the ref on the second try."""
        return RemoteEmbedding([], self.key)


@dataclass(frozen=True)
class NotCached:
    """A decoder replica's answer to a by-key request for an embedding it does not hold."""

    key: str


@dataclass(frozen=True)
class NotReady:
    """A decoder replica's answer to a direct call (engine/remote/direct.py) before its decoder is
    built (Serve names a replica's actor before it constructs the deployment object)."""

    replica: str


@dataclass(frozen=True)
class ModelInfo:
    """What the front-end needs to know of the model behind the deployments.

    Attributes:
        name: the backend's name (embeddings carry it; decoders refuse others').
        needs_depth: the encoder reads depth (the engine checks frames before sending them).
        everything_iou_thresh, everything_min_area_px: the decoder's "segment everything"
            settings, when it has them (engine/everything.py reads them off the decoder).
    """

    name: str
    needs_depth: bool
    everything_iou_thresh: float | None = None
    everything_min_area_px: int | None = None


@dataclass(frozen=True, eq=False)
class PackedPrediction:
    """A MaskPrediction with its masks bit-packed for the trip back."""

    bits: bytes
    shape: tuple[int, int, int]
    scores: np.ndarray
    granularity: tuple[str, ...]
    low_res_logits: np.ndarray | None

    @staticmethod
    def pack(prediction: MaskPrediction) -> PackedPrediction:
        masks = np.asarray(prediction.masks, bool)
        return PackedPrediction(
            lz4.block.compress(np.packbits(masks, axis=None).tobytes(), store_size=True),
            masks.shape,  # type: ignore[arg-type]
            np.asarray(prediction.scores, np.float32),
            tuple(prediction.granularity),
            prediction.low_res_logits,
        )

    def unpack(self) -> MaskPrediction:
        count = int(np.prod(self.shape))
        bits = np.frombuffer(lz4.block.decompress(self.bits), np.uint8)
        masks = np.unpackbits(bits, count=count).reshape(self.shape).astype(bool)
        return MaskPrediction(masks, self.scores, self.granularity, self.low_res_logits)

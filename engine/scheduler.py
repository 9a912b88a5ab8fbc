"""Keyframes: when a frame's image embedding is worth computing, and the one worker that computes them.

Why: the image encoder is the cost (MobileSAM's TinyViT takes seconds on a laptop CPU, SAM
ViT-H a quarter second on a GPU) and the decoder is the product (milliseconds). So the encoder
never runs on the path between a prompt and its mask while a usable embedding exists: prompts are
answered from the newest keyframe (mapped into its pixels, engine/mapping.py), and keyframes are
refreshed in the background when the view has changed enough to matter.

A frame becomes a keyframe (`keyframe_reason`) when
- a prompt arrives and the session has no usable embedding (PROMPT: the prompt waits for it);
- the camera moved more than `max_translation_m` or turned more than `max_rotation_deg` since
  the keyframe (CAMERA_MOVED, from the poses in the frame headers, no pixels decoded);
- without poses, the image changed: mean absolute difference of 32x24 grey thumbnails above
  `max_image_change` (SCENE_CHANGED, checked when a frame is decoded anyway);
- the embedding is older than `max_age_s` (AGED: lighting, moving objects).
The background triggers fire only while a session is engaged (a prompt, a gaze fixation or a
tracked object in the last `engaged_s`): an idle stream costs no encoder time.

`KeyframeEncoder` is engine-wide: one worker, one thread, shared by every session. Each session
has at most one waiting request; a newer frame replaces the waiting one (newest frame wins, the
replaced frame is counted as superseded) and everyone waiting gets the newer keyframe. Requests
of several sessions that are waiting together are encoded as one batch (`encode_images`: one
`encode_batch` call for backends that have it, a loop otherwise). Background refreshes are held to
`background_duty` of the encoder's time so that, where the encoder is slow (a CPU), the decoder
keeps the machine; an encode a prompt waits for is never held back.

Policy EVERY_FRAME turns all of this off: the session encodes each prompt's frame on the prompt
path, the way segment-anything's predictor is used in a loop (the baseline of bench.streaming).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from enum import StrEnum

import cv2
import numpy as np

from engine.core import Pose, RGBDFrame
from engine.errors import EngineError, NoDepth
from engine.protocol import ProtocolError
from models.interfaces import ImageEmbedding, ImageInput, ModelError, SegmentationModel, encode_images

log = logging.getLogger(__name__)

THUMB_SIZE = (32, 24)
"""(width, height) of the grey thumbnails compared for SCENE_CHANGED."""


class KeyframePolicy(StrEnum):
    SCHEDULED = "scheduled"  # this module: reuse, refresh in the background, batch
    EVERY_FRAME = "every_frame"  # baseline: encode each prompt's frame on the prompt path


class KeyframeReason(StrEnum):
    PROMPT = "prompt"
    CAMERA_MOVED = "camera_moved"
    SCENE_CHANGED = "scene_changed"
    AGED = "aged"


@dataclass(frozen=True)
class KeyframeConfig:
    """When to encode, and how the encoder worker batches.

    Attributes:
        policy: SCHEDULED (default) or EVERY_FRAME (the naive baseline).
        max_translation_m: camera travel since the keyframe that triggers a refresh. 10 cm at
            2 m moves a point ~25 px at 640x480: reprojection still maps prompts exactly, but
            disoccluded surfaces start to matter.
        max_rotation_deg: head rotation that triggers a refresh: 8 deg is ~75 px at 640x480
            (fx 525), about a seventh of the view leaves the keyframe.
        max_image_change: mean absolute difference of 0..255 grey 32x24 thumbnails (no-pose
            clients); 5 is about what an 8-10 deg turn does to an indoor view, while sensor noise and
            a 1 deg turn stay near 1. Above it the old embedding is not used for that frame at all.
        max_age_s: refresh an embedding older than this while engaged.
        engaged_s: how long after the last prompt / fixation / track step a session counts as
            engaged (background refreshes happen only then).
        background_duty: at most this fraction of the time goes to background refreshes (camera
            moved, image changed, aged): after one that took T seconds the next waits T (1 - d) / d.
            A prompt's encode never waits. On a GPU (encodes of tens of ms) this caps nothing a user
            would notice; on a CPU, where MobileSAM's encoder takes seconds, it keeps half the machine
            for the decoder, which is what answers prompts.
        max_batch: most frames encoded in one call.
        batch_window_s: after the first request wakes the worker, wait this long for requests
            of other sessions that arrive together (a few ms; the encode takes 10-1000x that).
    """

    policy: KeyframePolicy = KeyframePolicy.SCHEDULED
    max_translation_m: float = 0.10
    max_rotation_deg: float = 8.0
    max_image_change: float = 5.0
    max_age_s: float = 3.0
    engaged_s: float = 2.0
    background_duty: float = 0.5
    max_batch: int = 4
    batch_window_s: float = 0.004

    def __post_init__(self) -> None:
        for name in ("max_translation_m", "max_rotation_deg", "max_image_change", "max_age_s", "engaged_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"KeyframeConfig.{name} must be a positive number, got {value}")
        if not 0.0 < self.background_duty <= 1.0:
            raise ValueError(f"KeyframeConfig.background_duty must be in (0, 1], got {self.background_duty}")
        if self.max_batch < 1:
            raise ValueError(f"KeyframeConfig.max_batch must be >= 1, got {self.max_batch}")
        if not (math.isfinite(self.batch_window_s) and self.batch_window_s >= 0):
            raise ValueError(f"KeyframeConfig.batch_window_s must be >= 0, got {self.batch_window_s}")


@dataclass(frozen=True, eq=False)
class KeyframeRef:
    """What a candidate frame is compared with: the keyframe, or the frame being encoded.

    Attributes:
        pose: its camera-to-world pose, or None.
        thumbnail: its `thumbnail`, or None while it is not decoded.
        time: time.time() when its embedding was ready (or was asked for, while in flight).
    """

    pose: Pose | None
    thumbnail: np.ndarray | None
    time: float


@dataclass(frozen=True, eq=False)
class Keyframe:
    """A frame with its image embedding.

    Attributes:
        frame: the decoded frame (pixels, depth, pose) the embedding was computed from.
        embedding: the encoder's output.
        ready: time.time() when the embedding was ready.
        reason: why this frame was encoded.
        thumbnail: (24, 32) uint8 grey thumbnail, for SCENE_CHANGED.
    """

    frame: RGBDFrame
    embedding: ImageEmbedding
    ready: float
    reason: KeyframeReason
    thumbnail: np.ndarray

    @property
    def frame_id(self) -> int:
        return self.frame.frame_id

    @property
    def ref(self) -> KeyframeRef:
        return KeyframeRef(self.frame.pose, self.thumbnail, self.ready)


def thumbnail(frame: RGBDFrame) -> np.ndarray:
    """(24, 32) uint8 grey image of a frame (area-averaged)."""
    grey = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, THUMB_SIZE, interpolation=cv2.INTER_AREA)


def camera_motion(a: Pose, b: Pose) -> tuple[float, float]:
    """(translation in metres, rotation in degrees) between two camera poses."""
    rel = a.inverse().matrix @ b.matrix
    cos = (np.trace(rel[:3, :3]) - 1.0) / 2.0
    return float(np.linalg.norm(rel[:3, 3])), float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def keyframe_reason(
    config: KeyframeConfig,
    reference: KeyframeRef | None,
    pose: Pose | None,
    now: float,
    thumb: np.ndarray | None = None,
) -> KeyframeReason | None:
    """Why a frame with this pose (and thumbnail, when decoded) should become a keyframe, or None.

    Args:
        reference: the session's keyframe (or the frame being encoded for it); None means there
            is nothing to reuse (PROMPT).
        pose: the candidate frame's camera-to-world pose, or None.
        now: time.time().
        thumb: the candidate's `thumbnail`, or None when its pixels are not decoded.
    """
    if reference is None:
        return KeyframeReason.PROMPT
    if pose is not None and reference.pose is not None:
        moved, turned = camera_motion(reference.pose, pose)
        if moved > config.max_translation_m or turned > config.max_rotation_deg:
            return KeyframeReason.CAMERA_MOVED
    elif thumb is not None and reference.thumbnail is not None and thumb.shape == reference.thumbnail.shape:
        change = float(np.mean(np.abs(thumb.astype(np.int16) - reference.thumbnail.astype(np.int16))))
        if change > config.max_image_change:
            return KeyframeReason.SCENE_CHANGED
    if now - reference.time > config.max_age_s:
        return KeyframeReason.AGED
    return None


def require_depth(model: SegmentationModel, frame: RGBDFrame) -> None:
    """Raise NoDepth when the model needs depth and the frame has no valid sample."""
    if model.needs_depth and not frame.has_valid_depth():
        raise NoDepth(
            f"frame {frame.frame_id} has no valid depth (all zero or NaN) and model {model.name!r} needs "
            "depth; send registered depth, or serve a colour-only model "
            "(--model geometric-rgb, or a SAM-family model)",
            frame.frame_id,
        )


def make_keyframe(
    model: SegmentationModel, frames: list[RGBDFrame], reasons: list[KeyframeReason]
) -> list[Keyframe | Exception]:
    """Encode frames as one batch (on the encoder thread). Per-frame input errors are returned in place."""
    ok: list[int] = []
    out: list[Keyframe | Exception] = []
    for i, frame in enumerate(frames):
        try:
            require_depth(model, frame)
        except NoDepth as exc:
            out.append(exc)
        else:
            out.append(ModelError("not encoded"))
            ok.append(i)
    if ok:
        images = [ImageInput(frames[i].rgb, frames[i].depth_m, frames[i].intrinsics.matrix) for i in ok]
        embeddings = encode_images(model.encoder, images)
        ready = time.time()
        for i, emb in zip(ok, embeddings, strict=True):
            out[i] = Keyframe(frames[i], emb, ready, reasons[i], thumbnail(frames[i]))
    return out


@dataclass(frozen=True)
class EncoderStats:
    """What the keyframe encoder did (engine-wide).

    Attributes:
        batches: encode calls; frames: frames encoded; max_batch: largest batch so far;
        batch_sizes: {size: count}; superseded: waiting requests replaced by a newer frame
        of the same session; failed: frames that could not be encoded; busy_s: encoder time.
    """

    batches: int = 0
    frames: int = 0
    max_batch: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)
    superseded: int = 0
    failed: int = 0
    busy_s: float = 0.0


class _Request:
    __slots__ = ("owner", "load", "frame_id", "reason", "future")

    def __init__(
        self,
        owner: str,
        load: Callable[[], RGBDFrame],
        frame_id: int,
        reason: KeyframeReason,
        future: asyncio.Future[Keyframe],
    ) -> None:
        self.owner = owner
        self.load = load
        self.frame_id = frame_id
        self.reason = reason
        self.future = future


class KeyframeEncoder:
    """The engine's one encoder worker. Lifecycle: start() -> request()* -> stop().

    `request(owner, load, frame_id, reason)` returns a future that resolves with the Keyframe of
    that frame or of a newer frame of the same owner (newest frame wins), or raises the
    ProtocolError / ModelError that stopped it. `load` decodes the frame and runs on the encoder
    thread, so pixels are decoded off the event loop and only for frames that get encoded.
    """

    def __init__(
        self, model: SegmentationModel, executor: Executor, config: KeyframeConfig = KeyframeConfig()
    ) -> None:
        self._model = model
        self._executor = executor
        self._config = config
        self._waiting: OrderedDict[str, _Request] = OrderedDict()
        self._running: list[_Request] = []  # the batch being encoded now
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._batches = 0
        self._frames = 0
        self._sizes: dict[int, int] = {}
        self._superseded = 0
        self._failed = 0
        self._busy_s = 0.0
        self._idle = asyncio.Event()
        self._idle.set()
        self._background_at = 0.0  # perf_counter time before which no background encode starts

    @property
    def stats(self) -> EncoderStats:
        return EncoderStats(
            self._batches,
            self._frames,
            max(self._sizes, default=0),
            dict(self._sizes),
            self._superseded,
            self._failed,
            round(self._busy_s, 4),
        )

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="keyframe-encoder")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for req in self._waiting.values():
            if not req.future.done():
                req.future.cancel()
        self._waiting.clear()

    def request(
        self, owner: str, load: Callable[[], RGBDFrame], frame_id: int, reason: KeyframeReason
    ) -> asyncio.Future[Keyframe]:
        """Ask for a keyframe of this frame; a newer frame replaces the owner's waiting request
        (same future: whoever waits gets the newer keyframe). A frame already being encoded for
        this owner is not encoded twice: its running encode's future is returned."""
        running = next((r for r in self._running if r.owner == owner and r.frame_id == frame_id), None)
        if running is not None and not running.future.done():
            return running.future
        waiting = self._waiting.get(owner)
        if waiting is not None and not waiting.future.done():
            if frame_id > waiting.frame_id:
                self._superseded += 1
                waiting.load, waiting.frame_id = load, frame_id
            if reason is KeyframeReason.PROMPT:
                waiting.reason = reason
                self._wake.set()  # a prompt waits now: no background pause applies any more
            return waiting.future
        future: asyncio.Future[Keyframe] = asyncio.get_running_loop().create_future()
        self._waiting[owner] = _Request(owner, load, frame_id, reason, future)
        self._idle.clear()
        self._wake.set()
        return future

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the encoder (not yet started)."""
        return len(self._waiting)

    def encoding(self, owner: str, frame_id: int) -> asyncio.Future[Keyframe] | None:
        """The future of an encode of this frame for this owner, waiting or running, if any."""
        for req in (*self._running, self._waiting.get(owner)):
            if req is not None and req.owner == owner and req.frame_id == frame_id and not req.future.done():
                return req.future
        return None

    def pending(self, owner: str) -> asyncio.Future[Keyframe] | None:
        """The owner's waiting (not yet started) request, if any."""
        req = self._waiting.get(owner)
        return req.future if req is not None and not req.future.done() else None

    def cancel(self, owner: str, only_prompt: bool = False) -> None:
        """Forget an owner's waiting (not started) request: its session closed, or (only_prompt) the
        prompts that asked for it were answered or dropped, so it need not jump the background pause."""
        req = self._waiting.get(owner)
        if req is None or (only_prompt and req.reason is not KeyframeReason.PROMPT):
            return
        del self._waiting[owner]
        if not req.future.done():
            req.future.cancel()

    async def wait_idle(self) -> None:
        """Until nothing is waiting or being encoded (tests and benchmarks)."""
        await self._idle.wait()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                if self._config.batch_window_s > 0:
                    await asyncio.sleep(self._config.batch_window_s)  # let requests that arrive together join
            pause = self._background_at - time.perf_counter()
            if pause > 0 and not any(r.reason is KeyframeReason.PROMPT for r in self._waiting.values()):
                self._wake.clear()  # only background refreshes wait: let the hot path have the machine
                try:
                    await asyncio.wait_for(self._wake.wait(), pause)
                except TimeoutError:
                    pass
                continue
            batch = self._take_batch(background=pause <= 0)
            if not batch:
                continue
            started = time.perf_counter()
            self._running = batch
            try:
                results = await loop.run_in_executor(self._executor, self._encode, batch)
            except (ModelError, ProtocolError, EngineError) as exc:
                results = [exc] * len(batch)
            except (
                Exception
            ) as exc:  # the encoder worker must outlive one bad batch; every waiter hears of it
                log.exception("keyframe encoder: batch of %d failed", len(batch))
                results = [ModelError(f"image encoder failed: {exc!r}")] * len(batch)
            took = time.perf_counter() - started
            self._busy_s += took
            if not any(r.reason is KeyframeReason.PROMPT for r in batch):
                duty = self._config.background_duty
                self._background_at = time.perf_counter() + took * (1.0 - duty) / duty
            encoded = sum(isinstance(r, Keyframe) for r in results)
            if encoded:
                self._batches += 1
                self._frames += encoded
                self._sizes[encoded] = self._sizes.get(encoded, 0) + 1
            for req, result in zip(batch, results, strict=True):
                if req.future.done():
                    continue
                if isinstance(result, Keyframe):
                    req.future.set_result(result)
                else:
                    self._failed += 1
                    req.future.set_exception(result)
            self._running = []

    def _take_batch(self, background: bool) -> list[_Request]:
        """Waiting requests to encode now: those prompts wait for first, then (when background
        encodes may run) the others, oldest first, up to max_batch."""
        for req in [r for r in self._waiting.values() if r.future.done()]:
            del self._waiting[req.owner]
        ordered = sorted(self._waiting.values(), key=lambda r: r.reason is not KeyframeReason.PROMPT)
        if not background:
            ordered = [r for r in ordered if r.reason is KeyframeReason.PROMPT]
        batch = ordered[: self._config.max_batch]
        for req in batch:
            del self._waiting[req.owner]
        return batch

    def _encode(self, batch: list[_Request]) -> list[Keyframe | Exception]:
        """Encoder thread: decode each frame, then encode the decodable ones as one batch."""
        frames: list[RGBDFrame] = []
        slots: list[int] = []
        out: list[Keyframe | Exception] = [ModelError("not encoded")] * len(batch)
        for i, req in enumerate(batch):
            try:
                frames.append(req.load())
                slots.append(i)
            except (ProtocolError, EngineError) as exc:
                out[i] = exc
        encoded = make_keyframe(self._model, frames, [batch[i].reason for i in slots])
        for i, result in zip(slots, encoded, strict=True):
            out[i] = result
        return out

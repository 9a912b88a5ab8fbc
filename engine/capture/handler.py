"""The session-facing capture handler: start / per-tracked-frame / stop / cancel / status.

How the session uses it (engine/session/, the lead's facade; one handler per session):

    handler = CaptureHandler(executor, store, CaptureConfig())
    # a `capture` message arrived (engine/protocol/capture.py CaptureRequest); a CaptureError
    # raised here is mapped to its wire code by engine/session/wire.py:
    messages = await handler.request(req, tracked=req.prompt_id in tracked_prompt_ids)
    # after every tracking step of prompt_id on `frame` (the tracked mask, (H, W) bool):
    messages = await handler.on_tracked_frame(prompt_id, frame, mask)
    # tracking of prompt_id ended (cancel): await handler.forget(prompt_id); session close: await handler.close()

Every call returns what to send (CaptureProgressMessage, CaptureSaved, or a CaptureError to report);
the handler never touches a transport. `on_tracked_frame` returns [] at once for objects not
being captured, and never raises for a bad frame (a frame without pose gives one `no_pose`
error per capture and is skipped).

Threading: this object lives on the event loop and only the loop writes its fields. Integration,
mesh extraction, rendering and the store's fsyncs run on `executor`; each job receives the
capture's ObjectCapture / OdometryPoses (owned by that job while it runs: one job per capture at
a time, an asyncio.Lock) and returns frozen values that the loop applies. A tracked frame that
arrives while the capture's previous frame is still integrating is skipped (newest frame wins)
and counted in `frames_skipped`.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace

import numpy as np

from engine.capture.config import CaptureConfig, CaptureError, CaptureStateError, NoPoseError
from engine.capture.dataset import DatasetFrame, dataset_files
from engine.capture.mesh import MESH_FORMATS
from engine.capture.odometry import OdometryPoses
from engine.capture.store import CaptureStore, StoredCapture
from engine.capture.volume import CaptureProgress, ObjectCapture
from engine.core import Pose, RGBDFrame
from engine.protocol.capture import (
    CaptureAction,
    CaptureProgressMessage,
    CaptureRequest,
    CaptureSaved,
    PoseSource,
)

CaptureReply = CaptureProgressMessage | CaptureSaved | CaptureError


@dataclass(eq=False)
class _Active:
    """Loop-side record of one running capture (written on the event loop only)."""

    request: CaptureRequest
    capture: ObjectCapture
    odometry: OdometryPoses | None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last: CaptureProgress | None = None
    busy_skipped: int = 0
    reported_no_pose: bool = False
    dataset: list[DatasetFrame] = field(default_factory=list)
    up_sum: np.ndarray = field(default_factory=lambda: np.zeros(3))


@dataclass(frozen=True, eq=False)
class _Step:
    """What one integration job hands back to the loop."""

    progress: CaptureProgress | None
    dataset_frame: DatasetFrame | None
    up: np.ndarray | None
    error: CaptureError | None


class CaptureHandler:
    """One session's captures, at most one per tracked prompt_id. See the module docstring."""

    def __init__(
        self, executor: Executor, store: CaptureStore, config: CaptureConfig | None = None, url_prefix: str = "/captures"
    ) -> None:
        self.executor = executor
        self.store = store
        self.config = config or CaptureConfig()
        self.url_prefix = url_prefix
        self._active: dict[int, _Active] = {}

    @property
    def capturing(self) -> tuple[int, ...]:
        """prompt_ids whose objects are being captured."""
        return tuple(self._active)

    async def request(self, req: CaptureRequest, tracked: bool) -> list[CaptureReply]:
        """Act on a `capture` message. `tracked`: whether req.prompt_id is a tracked object now.

        Raises:
            CaptureStateError: start of an untracked object or of one already captured; stop,
                cancel or status of no capture (engine/session/wire.py gives its wire code).
            EmptyCaptureError: stop before any frame was integrated (the capture is dropped).
        """
        pid = req.prompt_id
        if req.action is CaptureAction.START:
            if not tracked:
                raise CaptureStateError(
                    f"prompt {pid} is not a tracked object: select the object with a prompt with track: true, then start"
                )
            if pid in self._active:
                raise CaptureStateError(f"the object of prompt {pid} is already being captured; stop or cancel it first")
            config = self.config if req.voxel_size is None else replace(self.config, voxel_size=req.voxel_size)
            capture = ObjectCapture(config)
            odometry = OdometryPoses(config.depth_max) if req.pose_source is PoseSource.ODOMETRY else None
            loop = asyncio.get_running_loop()
            progress = await loop.run_in_executor(self.executor, capture.start)
            active = _Active(req, capture, odometry, last=progress)
            self._active[pid] = active
            return [self._progress_message(pid, active, progress)]
        active = self._active.get(pid)
        if active is None:
            raise CaptureStateError(f"no capture of prompt {pid} is running; send action 'start' first")
        if req.action is CaptureAction.STATUS:
            async with active.lock:
                progress = active.capture.status(preview=active.capture.preview())
            return [self._progress_message(pid, active, progress)]
        if req.action is CaptureAction.CANCEL:
            await self.forget(pid)
            return [self._progress_message(pid, active, active.capture.status())]
        return [await self._stop(pid, active)]

    async def on_tracked_frame(self, prompt_id: int, frame: RGBDFrame, mask: np.ndarray) -> list[CaptureReply]:
        """Fuse one tracking step of prompt_id (mask: (H, W) bool in frame's pixels), if captured."""
        active = self._active.get(prompt_id)
        if active is None:
            return []
        if active.lock.locked():
            active.busy_skipped += 1
            return []
        keep = len(active.dataset) < active.capture.config.dataset_max_frames
        async with active.lock:
            step = await asyncio.get_running_loop().run_in_executor(
                self.executor, _integrate, active.capture, active.odometry, frame, mask, keep, len(active.dataset)
            )
        if self._active.get(prompt_id) is not active:  # cancelled or stopped meanwhile
            return []
        if step.error is not None:
            if isinstance(step.error, NoPoseError) and active.reported_no_pose:
                return []
            active.reported_no_pose = active.reported_no_pose or isinstance(step.error, NoPoseError)
            step.error.ref_id = prompt_id
            return [step.error]  # the session maps it to its wire code
        assert step.progress is not None
        active.last = step.progress
        if step.dataset_frame is not None:
            active.dataset.append(step.dataset_frame)
        if step.up is not None:
            active.up_sum = active.up_sum + step.up
        if step.progress.preview is None:
            return []
        return [self._progress_message(prompt_id, active, step.progress)]

    async def forget(self, prompt_id: int) -> None:
        """Cancel the capture of prompt_id if any (its object is no longer tracked)."""
        active = self._active.pop(prompt_id, None)
        if active is not None:
            async with active.lock:  # let a running job finish with the grid before dropping it
                active.capture.cancel()

    async def close(self) -> None:
        for pid in list(self._active):
            await self.forget(pid)

    async def _stop(self, pid: int, active: _Active) -> CaptureReply:
        async with active.lock:
            self._active.pop(pid, None)
            up = active.up_sum if np.linalg.norm(active.up_sum) > 0 else None
            name = active.request.name or f"capture of prompt {pid}"
            stored, vertices, triangles = await asyncio.get_running_loop().run_in_executor(
                self.executor, _finish, active.capture, self.store, name, tuple(active.dataset), up
            )
        files = tuple((f.name, f.size) for f in stored.files)
        url = f"{self.url_prefix}/{stored.capture_id}"
        return CaptureSaved(pid, stored.capture_id, stored.name, url, files, vertices, triangles, len(active.dataset))

    def _progress_message(self, pid: int, active: _Active, progress: CaptureProgress) -> CaptureProgressMessage:
        preview = progress.preview
        cov = progress.coverage
        return CaptureProgressMessage(
            pid,
            str(progress.state),
            progress.frames_integrated,
            progress.frames_skipped + active.busy_skipped,
            tuple(int(c) for c in cov.counts),
            tuple(tuple(float(x) for x in d) for d in cov.missing()),
            tuple(float(v) for v in progress.centroid) if progress.centroid is not None else None,
            preview.points if preview is not None else np.zeros((0, 3), np.float32),
            preview.colors if preview is not None else np.zeros((0, 3), np.uint8),
        )


def _integrate(
    capture: ObjectCapture, odometry: OdometryPoses | None, frame: RGBDFrame, mask: np.ndarray, keep: bool, index: int
) -> _Step:
    """Worker job: pose (client or odometry), integration, the dataset frame. Returns values only."""
    try:
        pose: Pose | None = odometry.next(frame) if odometry is not None else frame.pose
        progress = capture.add(frame, mask, pose)
    except CaptureError as exc:
        return _Step(None, None, None, exc)
    if not progress.integrated or pose is None:
        return _Step(progress, None, None, None)
    dataset_frame = DatasetFrame.of(index, frame, mask, pose.matrix) if keep else None
    return _Step(progress, dataset_frame, -pose.rotation[:, 1], None)  # camera up = -y (OpenCV axes)


def _finish(
    capture: ObjectCapture, store: CaptureStore, name: str, frames: tuple[DatasetFrame, ...], up: np.ndarray | None
) -> tuple[StoredCapture, int, int]:
    """Worker job: mesh, previews, files, one atomic store save. Returns (stored, vertices, triangles)."""
    from engine.capture.render import render_previews

    t0 = time.perf_counter()
    mesh = capture.stop()
    files = {f"mesh.{fmt}": mesh.encode(fmt) for fmt in MESH_FORMATS}
    for image in render_previews(mesh, up, capture.config.preview_image_px):
        files[f"{image.name}.png"] = image.png()
    files.update(dataset_files(list(frames)))
    c = capture.config
    meta = {
        "frames_integrated": capture.status().frames_integrated,
        "voxel_size": c.voxel_size,
        "sdf_trunc": c.sdf_trunc,
        "vertices": int(len(mesh.vertices)),
        "triangles": int(len(mesh.triangles)),
        "dataset_frames": len(frames),
        "stop_s": round(time.perf_counter() - t0, 3),
    }
    return store.save(name, files, meta), int(len(mesh.vertices)), int(len(mesh.triangles))

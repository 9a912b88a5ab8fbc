"""Capture messages of schema v1 (docs/protocol.md, "3D object capture").

client -> engine  ``capture``           start / stop / cancel / status of the capture of a tracked object
engine -> client  ``capture_progress``  state, counts, view-sphere coverage, centroid; every N frames a
                                        preview (points payload f32 (N, 3) + colors payload u8 (N, 3))
engine -> client  ``capture_saved``     the stored capture: id, files, sizes, where to download them

Kept apart from codec.py so that capture can grow without touching the core codec; the codec
registers DECODERS and ENCODERS below in its tables. Capture's domain errors become wire codes
where every other domain error does (engine/session/wire.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from engine.protocol import payloads as pl
from engine.protocol.codec import Envelope, _field, _floats, pack
from engine.protocol.errors import ErrorCode, ProtocolError
from engine.protocol.messages import Limits, MessageType

MAX_PREVIEW_POINTS = 4096
"""Cap on preview points per capture_progress message (the engine sends at most this many)."""


class CaptureAction(StrEnum):
    START = "start"  # begin fusing the tracked object of prompt_id
    STOP = "stop"  # extract the mesh, store it, answer capture_saved
    CANCEL = "cancel"  # drop the capture, store nothing
    STATUS = "status"  # answer capture_progress now (with a preview)


class PoseSource(StrEnum):  # noqa: D101
    CLIENT = "client"  # every frame carries its pose (headset / camera tracking)
    ODOMETRY = "odometry"  # the engine estimates poses by RGB-D odometry (engine/capture/odometry.py)


@dataclass(frozen=True)
class CaptureRequest:
    """``capture``: act on the capture of the object tracked by prompt_id (a `track: true` prompt).

    name: display name of the stored capture (sanitised); voxel_size: metres, None for the default.
    """

    action: CaptureAction
    prompt_id: int
    name: str = ""
    pose_source: PoseSource = PoseSource.CLIENT
    voxel_size: float | None = None


@dataclass(frozen=True, eq=False)
class CaptureProgressMessage:
    """``capture_progress``: where the capture of prompt_id stands.

    coverage: views per direction bin (12 icosahedron or 20 dodecahedron vertices, the order of
    engine/capture/coverage.py bin_directions); missing: unit vectors (world frame, from the
    centroid) of the bins not seen yet: where to walk. points (N, 3) float32 world metres and
    colors (N, 3) uint8: the preview, empty between previews.
    """

    prompt_id: int
    state: str
    frames_integrated: int
    frames_skipped: int
    coverage: tuple[int, ...]
    missing: tuple[tuple[float, float, float], ...] = ()
    centroid: tuple[float, float, float] | None = None
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    colors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.uint8))


@dataclass(frozen=True)
class CaptureSaved:
    """``capture_saved``: the mesh and its frames are stored (acknowledged: they survive a crash).

    files: (name, size in bytes) of each stored file; download each at ``url + "/files/" + name``
    over the engine's HTTP app with ``Authorization: Bearer <session token>``.
    """

    prompt_id: int
    capture_id: str
    name: str
    url: str
    files: tuple[tuple[str, int], ...]
    vertices: int
    triangles: int
    frames: int


# -- encode ------------------------------------------------------------------------------------


def _encode_request(msg: CaptureRequest) -> bytes:
    header: dict[str, Any] = {"type": MessageType.CAPTURE, "action": str(msg.action), "prompt_id": msg.prompt_id}
    if msg.name:
        header["name"] = msg.name
    if msg.pose_source is not PoseSource.CLIENT:
        header["pose_source"] = str(msg.pose_source)
    if msg.voxel_size is not None:
        header["voxel_size"] = msg.voxel_size
    return pack(header)


def _encode_progress(msg: CaptureProgressMessage) -> bytes:
    points = np.asarray(msg.points, np.float32).reshape(-1, 3)[:MAX_PREVIEW_POINTS]
    colors = np.asarray(msg.colors, np.uint8).reshape(-1, 3)[: len(points)]
    header = {
        "type": MessageType.CAPTURE_PROGRESS,
        "prompt_id": msg.prompt_id,
        "state": msg.state,
        "frames_integrated": msg.frames_integrated,
        "frames_skipped": msg.frames_skipped,
        "coverage": list(msg.coverage),
        "missing": [list(m) for m in msg.missing],
        "centroid": list(msg.centroid) if msg.centroid is not None else None,
    }
    payloads = []
    if len(points):
        payloads = [("points", "f32", pl.encode_points(points)), ("colors", "u8", np.ascontiguousarray(colors).tobytes())]
    return pack(header, payloads)


def _encode_saved(msg: CaptureSaved) -> bytes:
    header = {
        "type": MessageType.CAPTURE_SAVED,
        "prompt_id": msg.prompt_id,
        "capture_id": msg.capture_id,
        "name": msg.name,
        "url": msg.url,
        "files": [{"name": n, "size": s} for n, s in msg.files],
        "vertices": msg.vertices,
        "triangles": msg.triangles,
        "frames": msg.frames,
    }
    return pack(header)


# -- decode ------------------------------------------------------------------------------------


def _decode_request(env: Envelope, limits: Limits) -> CaptureRequest:
    h = env.header
    pid = _field(h, "prompt_id", int)
    action = _field(h, "action", str, ref_id=pid)
    if action not in CaptureAction.__members__.values():
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"capture action must be one of {', '.join(CaptureAction)}, got {action!r}", pid)
    source = _field(h, "pose_source", str, default=str(PoseSource.CLIENT), ref_id=pid)
    if source not in PoseSource.__members__.values():
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"pose_source must be one of {', '.join(PoseSource)}, got {source!r}", pid)
    name = _field(h, "name", str, default="", ref_id=pid)
    if len(name) > limits.max_text_chars:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"capture name must have at most {limits.max_text_chars} characters", pid)
    voxel = _field(h, "voxel_size", float, default=None, ref_id=pid)
    if voxel is not None and not 0.001 <= voxel <= 0.05:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"voxel_size must be in 0.001..0.05 m, got {voxel}", pid)
    return CaptureRequest(CaptureAction(action), pid, name, PoseSource(source), voxel)


def _decode_progress(env: Envelope, limits: Limits) -> CaptureProgressMessage:
    h = env.header
    points = np.zeros((0, 3), np.float32)
    colors = np.zeros((0, 3), np.uint8)
    if "points" in env.payloads:
        points = pl.decode_points(env.payloads["points"][1])
        raw = np.frombuffer(env.payloads.get("colors", ("u8", b""))[1], np.uint8)
        if raw.size != points.size:
            raise ProtocolError(ErrorCode.INVALID_FIELD, "capture_progress: colors payload must have 3 bytes per point")
        colors = raw.reshape(-1, 3).copy()
    centroid = tuple(float(v) for v in _floats(h, "centroid", 3, None)) if h.get("centroid") is not None else None
    return CaptureProgressMessage(
        _field(h, "prompt_id", int),
        _field(h, "state", str),
        _field(h, "frames_integrated", int),
        _field(h, "frames_skipped", int),
        tuple(int(v) for v in _field(h, "coverage", list)),
        tuple(tuple(float(x) for x in m) for m in _field(h, "missing", list, default=[])),
        centroid,  # type: ignore[arg-type]
        points,
        colors,
    )


def _decode_saved(env: Envelope, limits: Limits) -> CaptureSaved:
    h = env.header
    return CaptureSaved(
        _field(h, "prompt_id", int),
        _field(h, "capture_id", str),
        _field(h, "name", str),
        _field(h, "url", str),
        tuple((_field(f, "name", str), _field(f, "size", int)) for f in _field(h, "files", list)),
        _field(h, "vertices", int),
        _field(h, "triangles", int),
        _field(h, "frames", int),
    )


DECODERS: dict[str, Callable[[Envelope, Limits], Any]] = {
    MessageType.CAPTURE: _decode_request,
    MessageType.CAPTURE_PROGRESS: _decode_progress,
    MessageType.CAPTURE_SAVED: _decode_saved,
}
ENCODERS: dict[type, Callable[[Any], bytes]] = {
    CaptureRequest: _encode_request,
    CaptureProgressMessage: _encode_progress,
    CaptureSaved: _encode_saved,
}

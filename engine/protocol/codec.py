"""The one place that turns schema-v1 messages into bytes and back.

Wire format of one message (a WebSocket binary frame or a reassembled data-channel message):

    b"XRSG" | uint32 LE header length | header (UTF-8 JSON) | payload bytes, back to back

The header names its payloads in order: ``"payloads": [{"name": "rgb", "codec": "jpeg",
"size": 41234}, ...]``. A WebSocket text frame carries a header alone (handy for hello, ping
and prompts from a browser). docs/protocol.md documents every field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from engine.core import (
    AnchorWorld,
    CameraIntrinsics,
    MaskCandidate,
    MaskRanking,
    Pose,
    RGBDFrame,
    Segment3D,
    SegmentationResult,
    StageTimestamps,
)
from engine.core.frame import FrameError
from engine.protocol import payloads as pl
from engine.protocol.envelope import Envelope, pack, parse_envelope
from engine.protocol.errors import ErrorCode, ProtocolError
from engine.protocol.fields import bounded as _bounded
from engine.protocol.fields import check_text
from engine.protocol.fields import field as _field
from engine.protocol.fields import floats as _floats
from engine.protocol.fields import known as _known
from engine.protocol.messages import (
    Bye,
    Cancel,
    ErrorMessage,
    FrameMessage,
    Hello,
    Limits,
    Message,
    MessageType,
    Ping,
    Pong,
    PromptMessage,
    ResultKind,
    ResultMessage,
    SessionStats,
    StatsMessage,
    Welcome,
)
from engine.protocol.prompt_codec import _decode_prompt, encode_prompt

# Bounds on values that are finite but absurd (each would overflow a later stage):
MIN_FOCAL_PX, MAX_FOCAL_PX = 1.0, 1e6  # focal lengths in pixels; principal point within a frame of the image
MAX_POSE_M = 1e5  # pose entries: a translation beyond 100 km is not a headset in a room
MAX_DEPTH_SCALE = 1e6  # raw depth units per metre

# ---------------------------------------------------------------------------------------------
# frames


def encode_frame(
    frame: RGBDFrame, rgb_codec: pl.ImageCodec = pl.ImageCodec.JPEG, depth_codec: pl.DepthCodec = pl.DepthCodec.PNG16
) -> bytes:
    h, w = frame.size
    k = frame.intrinsics
    header = {
        "type": MessageType.FRAME,
        "frame_id": frame.frame_id,
        "capture_ts": frame.capture_ts,
        "width": w,
        "height": h,
        "intrinsics": {"fx": k.fx, "fy": k.fy, "cx": k.cx, "cy": k.cy},
        "pose": frame.pose.matrix.ravel().tolist() if frame.pose is not None else None,
        "depth_scale": frame.depth_scale,
    }
    payloads = [("rgb", str(rgb_codec), pl.encode_image(frame.rgb, rgb_codec))]
    if frame.depth is not None:
        codec = pl.DepthCodec.F32 if frame.depth.dtype == np.float32 else depth_codec
        payloads.append(("depth", str(codec), pl.encode_depth(frame.depth, codec)))
    return pack(header, payloads)


@dataclass(frozen=True, eq=False)
class FrameHeader:
    """A frame's metadata, validated without decoding pixels (cheap enough for every frame)."""

    frame_id: int
    width: int
    height: int
    intrinsics: CameraIntrinsics
    pose: Pose | None
    depth_scale: float
    capture_ts: float


def check_frame(env: Envelope, limits: Limits = Limits()) -> FrameHeader:
    """Validate a frame envelope's fields and payload headers; raise ProtocolError naming the frame.

    Image sizes are read from the payloads' own headers, so a wrong size is reported when the
    frame arrives even though its pixels are decoded only if a prompt needs them.
    """
    h = env.header
    frame_id = _field(h, "frame_id", int)
    try:
        width, height = _field(h, "width", int), _field(h, "height", int)
        if not (0 < width <= limits.max_width and 0 < height <= limits.max_height):
            raise ProtocolError(ErrorCode.TOO_LARGE, f"frame {width}x{height} is outside 1x1..{limits.max_width}x{limits.max_height}")
        intr = _field(h, "intrinsics", dict)
        fx, fy = (_bounded(intr, key, MIN_FOCAL_PX, MAX_FOCAL_PX) for key in ("fx", "fy"))
        cx = _bounded(intr, "cx", -float(width), 2.0 * width)
        cy = _bounded(intr, "cy", -float(height), 2.0 * height)
        try:
            intrinsics = CameraIntrinsics(width, height, fx, fy, cx, cy)
            pose = Pose(_floats(h, "pose", 16, frame_id, MAX_POSE_M).reshape(4, 4)) if h.get("pose") is not None else None
        except FrameError as exc:
            raise ProtocolError(ErrorCode.INVALID_FIELD, str(exc)) from None
        depth_scale = _bounded(h, "depth_scale", 0.0, MAX_DEPTH_SCALE, default=1000.0)
        if "rgb" not in env.payloads:
            raise ProtocolError(ErrorCode.BAD_IMAGE, "frame has no rgb payload")
        pl.check_image(*env.payloads["rgb"][::-1], height, width)
        if "depth" in env.payloads:
            if depth_scale <= 0:
                raise ProtocolError(ErrorCode.BAD_DEPTH, f"depth_scale must be positive, got {depth_scale}")
            pl.check_depth(*env.payloads["depth"][::-1], height, width)
        return FrameHeader(frame_id, width, height, intrinsics, pose, depth_scale, _field(h, "capture_ts", float, default=0.0))
    except ProtocolError as exc:
        exc.ref_id = frame_id
        raise


def _decode_frame(env: Envelope, limits: Limits) -> FrameMessage:
    fh = check_frame(env, limits)
    try:
        rgb = pl.decode_image(env.payloads["rgb"][1], env.payloads["rgb"][0], fh.height, fh.width)
        depth = None
        if "depth" in env.payloads:
            depth = pl.decode_depth(env.payloads["depth"][1], env.payloads["depth"][0], fh.height, fh.width)
        frame = RGBDFrame(fh.frame_id, rgb, depth, fh.intrinsics, fh.depth_scale, fh.pose, fh.capture_ts)
    except ProtocolError as exc:
        exc.ref_id = fh.frame_id
        raise
    except FrameError as exc:
        raise ProtocolError(ErrorCode.BAD_DEPTH if "depth" in str(exc) else ErrorCode.BAD_IMAGE, str(exc), fh.frame_id) from None
    return FrameMessage(frame)


# ---------------------------------------------------------------------------------------------
# results


def encode_result(result: SegmentationResult, kind: ResultKind = ResultKind.ANSWER, mapping: str = "identity") -> bytes:
    payloads: list[tuple[str, str, bytes]] = []
    masks = []
    for i, cand in enumerate(result.masks):
        payloads.append((f"mask{i}", "rle32", pl.encode_rle(cand.mask)))
        masks.append({"payload": f"mask{i}", "score": float(cand.score), "granularity": cand.granularity, "area": cand.mask.area})
        if cand.ranking is not None:  # text prompts only (additive v1 field)
            masks[-1]["ranking"] = asdict(cand.ranking)
    h, w = (result.masks[0].mask.height, result.masks[0].mask.width) if result.masks else (0, 0)
    segment = None
    if result.segment is not None:
        s = result.segment
        payloads.append(("points", "f32", pl.encode_points(s.points)))
        segment = {
            "status": s.status,
            "centroid": s.centroid.tolist(),
            "box_center": s.box_center.tolist(),
            "box_extent": s.box_extent.tolist(),
            "box_rotation": s.box_rotation.ravel().tolist(),
            "num_points": s.num_points,
            "frame": s.frame,
            "payload": "points",
        }
        if s.anchor is not None:  # a held or tracked selection's fused world anchor (additive v1 field)
            a = s.anchor
            segment["anchor"] = {"centroid": a.centroid.tolist(), "frames": a.frames, "voxels": a.voxels}
    header = {
        "type": MessageType.RESULT,
        "prompt_id": result.prompt_id,
        "frame_id": result.frame_id,
        "keyframe_id": result.keyframe_id,
        "height": h,
        "width": w,
        "best": result.best,
        "masks": masks,
        "segment": segment,
        "pose": result.pose.matrix.ravel().tolist() if result.pose is not None else None,
        "timestamps": result.timestamps.as_dict(),
        "kind": str(kind),
        "mapping": mapping,
    }
    return pack(header, payloads)


def _decode_ranking(r: object) -> MaskRanking | None:
    """A mask's text ranking (`masks[i].ranking`), absent on results of non-text prompts."""
    if r is None:
        return None
    if not isinstance(r, dict):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "field 'ranking' must be an object: score, text, similarity, gaze, iou")
    return MaskRanking(
        _field(r, "score", float), _field(r, "text", float), _field(r, "similarity", float),
        _field(r, "gaze", float, default=None), _field(r, "iou", float),
    )


def _decode_anchor(a: object) -> AnchorWorld | None:
    """A segment's fused world anchor (`segment.anchor`), absent on one-off answers and from
    engines that predate it."""
    if a is None:
        return None
    if not isinstance(a, dict):
        message = "field 'anchor' must be an object: centroid, frames, voxels"
        raise ProtocolError(ErrorCode.INVALID_FIELD, message)
    return AnchorWorld(_floats(a, "centroid", 3, None), _field(a, "frames", int), _field(a, "voxels", int))


def _decode_result(env: Envelope, limits: Limits) -> ResultMessage:
    h = env.header
    height, width = _field(h, "height", int), _field(h, "width", int)
    masks = tuple(
        MaskCandidate(
            pl.decode_rle(env.payloads[_field(m, "payload", str)][1], height, width),
            _field(m, "score", float),
            _field(m, "granularity", str, default=""),
            _decode_ranking(m.get("ranking")),
        )
        for m in _field(h, "masks", list)
    )
    segment = None
    if (s := h.get("segment")) is not None:
        segment = Segment3D(
            status=_field(s, "status", str),
            centroid=_floats(s, "centroid", 3, None),
            box_center=_floats(s, "box_center", 3, None),
            box_extent=_floats(s, "box_extent", 3, None),
            box_rotation=_floats(s, "box_rotation", 9, None).reshape(3, 3),
            points=pl.decode_points(env.payloads[_field(s, "payload", str)][1]),
            num_points=_field(s, "num_points", int),
            frame=_field(s, "frame", str),
            anchor=_decode_anchor(s.get("anchor")),
        )
    result = SegmentationResult(
        prompt_id=_field(h, "prompt_id", int),
        frame_id=_field(h, "frame_id", int),
        keyframe_id=_field(h, "keyframe_id", int),
        masks=masks,
        best=_field(h, "best", int),
        segment=segment,
        pose=Pose(_floats(h, "pose", 16, None).reshape(4, 4)) if h.get("pose") is not None else None,
        timestamps=StageTimestamps(**{k: float(v) for k, v in _known(StageTimestamps, _field(h, "timestamps", dict)).items()}),
    )
    kind = _field(h, "kind", str, default=str(ResultKind.ANSWER))
    return ResultMessage(
        result,
        ResultKind(kind) if kind in ResultKind.__members__.values() else ResultKind.ANSWER,
        _field(h, "mapping", str, default="identity"),
    )


# ---------------------------------------------------------------------------------------------
# small control messages: plain dataclass <-> header


def _encode_plain(kind: MessageType, msg: Any) -> bytes:
    return pack({"type": kind, **asdict(msg)})


def _decode_hello(env: Envelope, limits: Limits) -> Hello:
    h = env.header
    token = h.get("token")
    if not isinstance(token, str) or not token:
        raise ProtocolError(ErrorCode.UNAUTHORIZED, "hello needs the session 'token' (a string); ask the engine operator for one")
    check_text(token, "token")
    return Hello(
        token=token,
        client=_field(h, "client", str, default=""),
        protocol_version=h["v"],
        session_id=_field(h, "session_id", str, default=None),
    )


def _decode_welcome(env: Envelope, limits: Limits) -> Welcome:
    h = env.header
    return Welcome(_field(h, "session_id", str), _field(h, "model", str), Limits(**_known(Limits, _field(h, "limits", dict))))


def _decode_error(env: Envelope, limits: Limits) -> ErrorMessage:
    h = env.header
    code = _field(h, "code", str)
    return ErrorMessage(
        ErrorCode(code) if code in ErrorCode.__members__.values() else ErrorCode.INTERNAL,
        _field(h, "message", str),
        _field(h, "ref_id", int, default=None),
    )


_DECODERS: dict[str, Callable[[Envelope, Limits], Message]] = {
    MessageType.HELLO: _decode_hello,
    MessageType.WELCOME: _decode_welcome,
    MessageType.FRAME: _decode_frame,
    MessageType.PROMPT: _decode_prompt,
    MessageType.RESULT: _decode_result,
    MessageType.ERROR: _decode_error,
    MessageType.PING: lambda env, limits: Ping(_field(env.header, "t", float)),
    MessageType.PONG: lambda env, limits: Pong(_field(env.header, "t", float), _field(env.header, "server_t", float)),
    MessageType.BYE: lambda env, limits: Bye(_field(env.header, "reason", str, default="")),
    MessageType.STATS: lambda env, limits: StatsMessage(SessionStats(**_known(SessionStats, _field(env.header, "stats", dict)))),
    MessageType.CANCEL: lambda env, limits: Cancel(_field(env.header, "prompt_id", int, default=None)),
}


from engine.protocol import capture as _capture  # noqa: E402  (capture messages use the helpers above)

_DECODERS.update(_capture.DECODERS)


def decode_envelope(env: Envelope, limits: Limits = Limits()) -> Message:
    """Interpret a parsed envelope; image payloads are decoded here (the costly step)."""
    try:
        return _DECODERS[env.type](env, limits)
    except ProtocolError as exc:
        if exc.ref_id is None:
            exc.ref_id = env.ref_id
        raise
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:  # right type, impossible value
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{env.type} message: {str(exc)[:200]}", env.ref_id) from None


def decode_message(data: bytes | bytearray | memoryview | str, limits: Limits = Limits()) -> Message:
    return decode_envelope(parse_envelope(data, limits), limits)


def encode_message(msg: Message) -> bytes:
    """Any schema-v1 message -> bytes for a binary transport frame."""
    if (encode_capture := _capture.ENCODERS.get(type(msg))) is not None:
        return encode_capture(msg)
    match msg:
        case FrameMessage(frame=frame):
            return encode_frame(frame)
        case PromptMessage(prompt=prompt):
            return encode_prompt(prompt, msg.track, msg.answer, msg.everything)
        case ResultMessage(result=result):
            return encode_result(result, msg.kind, msg.mapping)
        case Hello():
            return _encode_plain(MessageType.HELLO, msg)
        case Welcome():
            return _encode_plain(MessageType.WELCOME, msg)
        case ErrorMessage():
            return _encode_plain(MessageType.ERROR, msg)
        case Ping():
            return _encode_plain(MessageType.PING, msg)
        case Pong():
            return _encode_plain(MessageType.PONG, msg)
        case Bye():
            return _encode_plain(MessageType.BYE, msg)
        case StatsMessage():
            return _encode_plain(MessageType.STATS, msg)
        case Cancel():
            return _encode_plain(MessageType.CANCEL, msg)
    raise TypeError(f"not a schema-v1 message: {type(msg).__name__}")

"""The one place that turns schema-v1 messages into bytes and back.

Wire format of one message (a WebSocket binary frame or a reassembled data-channel message):

    b"XRSG" | uint32 LE header length | header (UTF-8 JSON) | payload bytes, back to back

The header names its payloads in order: ``"payloads": [{"name": "rgb", "codec": "jpeg",
"size": 41234}, ...]``. A WebSocket text frame carries a header alone (handy for hello, ping
and prompts from a browser). docs/protocol.md documents every field.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from engine.core import (
    BoxPrompt,
    CameraIntrinsics,
    GazeSample,
    MaskCandidate,
    MaskPrompt,
    MaskRanking,
    PointPrompt,
    Pose,
    Prompt,
    RGBDFrame,
    Segment3D,
    SegmentationResult,
    StageTimestamps,
)
from engine.core.frame import FrameError
from engine.protocol import payloads as pl
from engine.protocol.errors import ErrorCode, ProtocolError
from engine.protocol.messages import (
    PROTOCOL_VERSION,
    AnswerMode,
    Bye,
    Cancel,
    EverythingRequest,
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

MAGIC = b"XRSG"
_PREFIX = struct.Struct("<4sI")


@dataclass(frozen=True, eq=False)
class Envelope:
    """A parsed but not yet interpreted message: its header and named payloads.

    Transports use it to route cheaply (e.g. keep only the newest frame) before the costly
    image decode in decode_message.
    """

    header: dict[str, Any]
    payloads: dict[str, tuple[str, memoryview]]  # name -> (codec, bytes)

    @property
    def type(self) -> str:
        return self.header["type"]

    @property
    def ref_id(self) -> int | None:
        for key in ("prompt_id", "frame_id"):
            value = self.header.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return None


# ---------------------------------------------------------------------------------------------
# envelope


def parse_envelope(data: bytes | bytearray | memoryview | str, limits: Limits = Limits()) -> Envelope:
    """Split raw bytes into header and payloads; raise ProtocolError on anything malformed."""
    if isinstance(data, str):
        raw = data.encode("utf-8")
        if len(raw) > limits.max_header_bytes:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"text message of {len(raw)} bytes exceeds {limits.max_header_bytes}")
        header = _load_header(raw)
        if header.get("payloads"):
            raise ProtocolError(ErrorCode.MALFORMED, "a text message cannot carry payloads; send a binary message")
        return Envelope(header, {})
    view = memoryview(data)
    if len(view) > limits.max_message_bytes:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"message of {len(view)} bytes exceeds the limit of {limits.max_message_bytes}")
    if len(view) < _PREFIX.size:
        raise ProtocolError(ErrorCode.MALFORMED, "message shorter than the 8-byte prefix")
    magic, header_len = _PREFIX.unpack_from(view)
    if magic != MAGIC:
        raise ProtocolError(ErrorCode.MALFORMED, f"message does not start with {MAGIC!r}; is this an xrseg client?")
    if header_len > limits.max_header_bytes or _PREFIX.size + header_len > len(view):
        raise ProtocolError(ErrorCode.MALFORMED, f"header length {header_len} is invalid for a {len(view)}-byte message")
    header = _load_header(bytes(view[_PREFIX.size : _PREFIX.size + header_len]))
    offset = _PREFIX.size + header_len
    payloads: dict[str, tuple[str, memoryview]] = {}
    for item in _field(header, "payloads", list, default=[]):
        if not isinstance(item, dict):
            raise ProtocolError(ErrorCode.MALFORMED, "each payload entry must be an object with name, codec, size")
        name, codec, size = _field(item, "name", str), _field(item, "codec", str), _field(item, "size", int)
        if size < 0 or offset + size > len(view):
            raise ProtocolError(ErrorCode.MALFORMED, f"payload {name!r} of {size} bytes runs past the end of the message")
        payloads[name] = (codec, view[offset : offset + size])
        offset += size
    if offset != len(view):
        raise ProtocolError(ErrorCode.MALFORMED, f"{len(view) - offset} trailing bytes after the declared payloads")
    return Envelope(header, payloads)


def _load_header(raw: bytes) -> dict[str, Any]:
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(ErrorCode.MALFORMED, f"header is not UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(ErrorCode.MALFORMED, "header must be a JSON object")
    version = header.get("v")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION, f"protocol version {version!r} is not supported; this engine speaks v{PROTOCOL_VERSION}"
        )
    kind = header.get("type")
    if kind not in MessageType.__members__.values():
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r}; v1 types: {', '.join(MessageType)}")
    return header


def pack(header: dict[str, Any], payloads: list[tuple[str, str, bytes]] = ()) -> bytes:
    """Frame a header and (name, codec, bytes) payloads as one v1 message (adds \"v\" and \"payloads\")."""
    header = {"v": PROTOCOL_VERSION, **header}
    if payloads:
        header["payloads"] = [{"name": n, "codec": c, "size": len(b)} for n, c, b in payloads]
    raw = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return b"".join([_PREFIX.pack(MAGIC, len(raw)), raw, *(b for _, _, b in payloads)])


# ---------------------------------------------------------------------------------------------
# field validation: every error names the field and what was expected


def _field(obj: dict[str, Any], key: str, kind: type, default: Any = ..., ref_id: int | None = None) -> Any:
    if key not in obj or obj[key] is None:
        if default is ...:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"missing field {key!r}", ref_id)
        return default
    value = obj[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"field {key!r} must be {kind.__name__}, got {type(value).__name__}", ref_id)
    if kind is float and not math.isfinite(value):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"field {key!r} must be finite", ref_id)
    return value


def _known(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Keep the keys a dataclass knows: a newer peer may add fields (forward compatibility)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def _floats(obj: dict[str, Any], key: str, n: int, ref_id: int | None) -> np.ndarray:
    value = _field(obj, key, list, ref_id=ref_id)
    if len(value) != n or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"field {key!r} must be a list of {n} numbers", ref_id)
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"field {key!r} must be finite", ref_id)
    return arr


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
        try:
            intrinsics = CameraIntrinsics(width, height, *(_field(intr, key, float) for key in ("fx", "fy", "cx", "cy")))
            pose = Pose(_floats(h, "pose", 16, frame_id).reshape(4, 4)) if h.get("pose") is not None else None
        except FrameError as exc:
            raise ProtocolError(ErrorCode.INVALID_FIELD, str(exc)) from None
        depth_scale = _field(h, "depth_scale", float, default=1000.0)
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
# prompts


def encode_prompt(
    prompt: Prompt, track: bool = False, answer: AnswerMode = AnswerMode.NOW, everything: EverythingRequest | None = None
) -> bytes:
    """A prompt message; track / answer / everything are written only when not their v1 default."""
    items: list[dict[str, Any]] = [{"type": "point", "x": p.x, "y": p.y, "label": p.label} for p in prompt.points]
    payloads: list[tuple[str, str, bytes]] = []
    if prompt.box is not None:
        items.append({"type": "box", **asdict(prompt.box)})
    if prompt.mask is not None:
        from engine.core import RLEMask

        rle = RLEMask.encode(prompt.mask.mask)
        payloads.append(("mask", "rle32", pl.encode_rle(rle)))
        items.append({"type": "mask", "payload": "mask", "height": rle.height, "width": rle.width})
    if prompt.text:
        items.append({"type": "text", "text": prompt.text})
    if prompt.gaze:
        items.append({"type": "gaze", "samples": [[g.t, g.x, g.y, g.confidence] for g in prompt.gaze]})
    if everything is not None:
        items.append({"type": "everything", **{k: v for k, v in asdict(everything).items() if v is not None}})
    header = {
        "type": MessageType.PROMPT,
        "prompt_id": prompt.prompt_id,
        "frame_id": prompt.frame_id,
        "multimask": prompt.multimask,
        "want_3d": prompt.want_3d,
        "items": items,
    }
    if track:
        header["track"] = True
    if answer is not AnswerMode.NOW:
        header["answer"] = str(answer)
    return pack(header, payloads)


def _decode_prompt(env: Envelope, limits: Limits) -> PromptMessage:
    h = env.header
    pid = _field(h, "prompt_id", int)
    parsed: dict[str, Any] = {"points": [], "gaze": []}
    for item in _field(h, "items", list, ref_id=pid):
        if not isinstance(item, dict):
            raise ProtocolError(ErrorCode.BAD_PROMPT, "each prompt item must be an object with a 'type'", pid)
        parser = _PROMPT_ITEMS.get(item.get("type"))  # type: ignore[arg-type]
        if parser is None:
            raise ProtocolError(
                ErrorCode.UNKNOWN_PROMPT,
                f"unknown prompt item type {item.get('type')!r}; v1 items: {', '.join(_PROMPT_ITEMS)}",
                pid,
            )
        parser(item, env, parsed, pid, limits)
    if len(parsed["points"]) > limits.max_points or len(parsed["gaze"]) > limits.max_gaze_samples:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"at most {limits.max_points} points and {limits.max_gaze_samples} gaze samples", pid)
    prompt = Prompt(
        prompt_id=pid,
        frame_id=_field(h, "frame_id", int, ref_id=pid),
        points=tuple(parsed["points"]),
        box=parsed.get("box"),
        mask=parsed.get("mask"),
        text=parsed.get("text"),
        gaze=tuple(parsed["gaze"]),
        multimask=_field(h, "multimask", bool, default=True, ref_id=pid),
        want_3d=_field(h, "want_3d", bool, default=True, ref_id=pid),
    )
    everything = parsed.get("everything")
    if prompt.is_empty() and everything is None:
        raise ProtocolError(ErrorCode.BAD_PROMPT, "prompt has no items; send a point, box, mask, text, gaze or everything", pid)
    answer = _field(h, "answer", str, default=str(AnswerMode.NOW), ref_id=pid)
    if answer not in AnswerMode.__members__.values():
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"field 'answer' must be one of {', '.join(AnswerMode)}, got {answer!r}", pid)
    track = _field(h, "track", bool, default=False, ref_id=pid)
    if track and everything is not None:
        raise ProtocolError(ErrorCode.BAD_PROMPT, "an everything prompt cannot be tracked; track one of its masks with a mask prompt", pid)
    return PromptMessage(prompt, track, AnswerMode(answer), everything)


def _item_point(item: dict, env: Envelope, out: dict, pid: int, limits: Limits) -> None:
    out["points"].append(
        PointPrompt(_field(item, "x", float, ref_id=pid), _field(item, "y", float, ref_id=pid), _field(item, "label", int, 1, pid))
    )


def _item_box(item: dict, env: Envelope, out: dict, pid: int, limits: Limits) -> None:
    out["box"] = BoxPrompt(*(_field(item, k, float, ref_id=pid) for k in ("x0", "y0", "x1", "y1")))


def _item_mask(item: dict, env: Envelope, out: dict, pid: int, limits: Limits) -> None:
    name = _field(item, "payload", str, ref_id=pid)
    if name not in env.payloads:
        raise ProtocolError(ErrorCode.BAD_PROMPT, f"mask item names payload {name!r}, which the message lacks", pid)
    height, width = _field(item, "height", int, ref_id=pid), _field(item, "width", int, ref_id=pid)
    if not (0 < width <= limits.max_width and 0 < height <= limits.max_height):
        raise ProtocolError(ErrorCode.TOO_LARGE, f"mask {width}x{height} exceeds the frame limits", pid)
    try:
        out["mask"] = MaskPrompt(pl.decode_rle(env.payloads[name][1], height, width).decode())
    except ProtocolError as exc:
        raise ProtocolError(ErrorCode.BAD_PROMPT, f"mask prompt: {exc.message}", pid) from None


def _item_text(item: dict, env: Envelope, out: dict, pid: int, limits: Limits) -> None:
    text = _field(item, "text", str, ref_id=pid).strip()
    if not text or len(text) > limits.max_text_chars:
        raise ProtocolError(ErrorCode.BAD_PROMPT, f"text must have 1..{limits.max_text_chars} characters", pid)
    out["text"] = text


def _item_gaze(item: dict, env: Envelope, out: dict, pid: int, limits: Limits) -> None:
    for sample in _field(item, "samples", list, ref_id=pid):
        if not (isinstance(sample, list) and len(sample) in (3, 4)):
            raise ProtocolError(ErrorCode.BAD_PROMPT, "each gaze sample is [t, x, y] or [t, x, y, confidence]", pid)
        values = _floats({"s": sample}, "s", len(sample), pid)
        out["gaze"].append(GazeSample(*(float(v) for v in values)))


def _item_everything(item: dict, env: Envelope, out: dict, pid: int, limits: Limits) -> None:
    side = _field(item, "points_per_side", int, default=32, ref_id=pid)
    if not 1 <= side <= 64:
        raise ProtocolError(ErrorCode.BAD_PROMPT, f"everything: points_per_side must be in 1..64, got {side}", pid)
    thresholds = {}
    for key in ("pred_iou_thresh", "stability_score_thresh"):
        value = _field(item, key, float, default=None, ref_id=pid)
        if value is not None and not 0.0 <= value <= 1.0:
            raise ProtocolError(ErrorCode.BAD_PROMPT, f"everything: {key} must be in [0, 1], got {value}", pid)
        thresholds[key] = value
    out["everything"] = EverythingRequest(side, **thresholds)


_PROMPT_ITEMS: dict[str, Callable[[dict, Envelope, dict, int, Limits], None]] = {
    "point": _item_point,
    "box": _item_box,
    "mask": _item_mask,
    "text": _item_text,
    "gaze": _item_gaze,
    "everything": _item_everything,
}


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
    return Hello(
        token=_field(h, "token", str),
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
    except (KeyError, TypeError, ValueError) as exc:  # a field of the right type but an impossible value
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{env.type} message: {exc}", env.ref_id) from None


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

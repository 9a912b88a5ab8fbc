"""Schema v1 codec: round trips and every malformed-input path gives a coded ProtocolError."""

from __future__ import annotations

import json
import struct

import cv2
import numpy as np
import pytest

from engine.core import (
    AnchorWorld,
    BoxPrompt,
    CameraIntrinsics,
    GazeSample,
    MaskCandidate,
    MaskPrompt,
    PointPrompt,
    Pose,
    Prompt,
    RGBDFrame,
    RLEMask,
    Segment3D,
    SegmentationResult,
    StageTimestamps,
)
from engine.protocol import (
    DepthCodec,
    ErrorCode,
    FrameMessage,
    ImageCodec,
    Limits,
    PromptMessage,
    ProtocolError,
    ResultMessage,
    decode_message,
    encode_frame,
    encode_message,
)
from engine.protocol.envelope import pack, parse_envelope


def _frame(h: int = 48, w: int = 64, depth_dtype: type = np.uint16) -> RGBDFrame:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 4 % 256, yy * 5 % 256, (xx + yy) % 256], -1).astype(np.uint8)
    depth = (1000 + 10 * xx + rng.integers(0, 5, (h, w))).astype(depth_dtype)
    pose = np.eye(4)
    pose[:3, 3] = [0.1, -0.2, 1.5]
    return RGBDFrame(7, rgb, depth, CameraIntrinsics(w, h, 50.0, 51.0, w / 2, h / 2), 1000.0, Pose(pose), 1234.5)


def _pack(header: dict, payload: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return b"XRSG" + struct.pack("<I", len(raw)) + raw + payload


def _code(data: bytes | str, limits: Limits = Limits()) -> ErrorCode:
    with pytest.raises(ProtocolError) as info:
        decode_message(data, limits)
    return info.value.code


@pytest.mark.parametrize("depth_codec", [DepthCodec.PNG16, DepthCodec.RAW16])
def test_frame_round_trip_keeps_depth_bit_exact(depth_codec: DepthCodec) -> None:
    frame = _frame()
    msg = decode_message(encode_frame(frame, ImageCodec.PNG, depth_codec))
    assert isinstance(msg, FrameMessage)
    got = msg.frame
    assert got.frame_id == 7 and got.capture_ts == 1234.5 and got.depth_scale == 1000.0
    assert np.array_equal(got.rgb, frame.rgb)  # png is lossless
    assert got.depth.dtype == np.uint16 and np.array_equal(got.depth, frame.depth)
    assert got.intrinsics == frame.intrinsics
    assert np.allclose(got.pose.matrix, frame.pose.matrix)


def test_float_depth_with_nan_travels_as_f32_and_reads_as_invalid() -> None:
    frame = _frame(depth_dtype=np.float32)
    depth = frame.depth.copy() / 1000.0
    depth[0:5] = np.nan
    frame = RGBDFrame(1, frame.rgb, depth.astype(np.float32), frame.intrinsics, depth_scale=1.0)
    got = decode_message(encode_message(FrameMessage(frame))).frame
    assert np.isnan(got.depth[0]).all()
    assert (got.depth_m[0:5] == 0).all() and (got.depth_m[5:] > 0.9).all()


def test_prompt_round_trip_with_every_item_type() -> None:
    mask = np.zeros((48, 64), bool)
    mask[10:20, 5:30] = True
    prompt = Prompt(
        3, 7, points=(PointPrompt(1.5, 2.5, 1), PointPrompt(10, 11, 0)), box=BoxPrompt(1, 2, 30, 40),
        mask=MaskPrompt(mask), text="the mug", gaze=(GazeSample(0.5, 3, 4, 0.8),), multimask=False,
    )
    got = decode_message(encode_message(PromptMessage(prompt))).prompt
    assert got.points == prompt.points and got.box == prompt.box and got.text == "the mug"
    assert got.gaze == prompt.gaze and got.multimask is False
    assert np.array_equal(got.mask.mask, mask)


def test_result_round_trip() -> None:
    mask = np.zeros((48, 64), bool)
    mask[3:9, 4:40] = True
    seg = Segment3D("ok", np.array([1.0, 2, 3]), np.array([1.0, 2, 3]), np.array([0.1, 0.2, 0.3]), np.eye(3),
                    np.arange(12, dtype=np.float32).reshape(4, 3), 40)
    result = SegmentationResult(5, 7, 6, (MaskCandidate(RLEMask.encode(mask), 0.9, "object"),), 0, seg,
                                Pose.identity(), StageTimestamps(capture=1.0, receive=1.01, send=1.05))
    got = decode_message(encode_message(ResultMessage(result))).result
    assert np.array_equal(got.masks[0].mask.decode(), mask) and got.masks[0].granularity == "object"
    assert np.array_equal(got.segment.points, seg.points) and got.segment.num_points == 40
    assert got.timestamps == result.timestamps and got.keyframe_id == 6
    assert got.segment.anchor is None  # a one-off answer: no anchor on the wire, none decoded


def test_result_round_trip_carries_the_world_anchor() -> None:
    """segment.anchor (engine/anchor.py) is an optional field: present, it survives the round trip;
    a header without it (an older engine) still decodes."""
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:5] = True
    anchor = AnchorWorld(np.array([0.4, -0.1, 1.2]), 7, 913)
    seg = Segment3D("ok", np.zeros(3), np.zeros(3), np.ones(3), np.eye(3), np.zeros((2, 3), np.float32), 9,
                    anchor=anchor)  # fmt: skip
    result = SegmentationResult(1, 2, 2, (MaskCandidate(RLEMask.encode(mask), 0.9, "object"),), 0, seg,
                                Pose.identity(), StageTimestamps())  # fmt: skip
    got = decode_message(encode_message(ResultMessage(result))).result.segment.anchor
    np.testing.assert_allclose(got.centroid, anchor.centroid)
    assert (got.frames, got.voxels) == (7, 913)
    assert _code(_pack_result_with_anchor([0.1, 0.2])) == ErrorCode.INVALID_FIELD  # two coordinates


def _pack_result_with_anchor(centroid: list[float]) -> bytes:
    seg = Segment3D("ok", np.zeros(3), np.zeros(3), np.ones(3), np.eye(3), np.zeros((1, 3), np.float32), 1,
                    anchor=AnchorWorld(np.zeros(3), 1, 1))  # fmt: skip
    result = SegmentationResult(1, 2, 2, (), 0, seg, None, StageTimestamps())
    env = parse_envelope(encode_message(ResultMessage(result)))
    header = {k: v for k, v in env.header.items() if k not in ("v", "payloads")}
    header["segment"]["anchor"]["centroid"] = centroid
    return pack(header, [(name, codec, bytes(data)) for name, (codec, data) in env.payloads.items()])


def test_rle_matches_pycocotools_convention() -> None:
    mask = np.array([[0, 1], [1, 1], [0, 0]], bool)  # column-major: 0 1 0 | 1 1 0
    assert RLEMask.encode(mask).counts.tolist() == [1, 1, 1, 2, 1]
    assert RLEMask.encode(np.ones((2, 2), bool)).counts.tolist() == [0, 4]


def test_malformed_bytes() -> None:
    assert _code(b"\x00\x01garbage") == ErrorCode.MALFORMED
    assert _code(b"NOPE" + struct.pack("<I", 2) + b"{}") == ErrorCode.MALFORMED
    assert _code(b"XRSG" + struct.pack("<I", 999) + b"{}") == ErrorCode.MALFORMED  # header runs past the end
    assert _code(b"XRSG" + struct.pack("<I", 3) + b"{x}") == ErrorCode.MALFORMED
    assert _code(b"XRSG" + struct.pack("<I", 2) + b"[]") == ErrorCode.MALFORMED
    assert _code("not json") == ErrorCode.MALFORMED
    good = encode_frame(_frame())
    assert _code(good[:-10]) == ErrorCode.MALFORMED  # truncated payload
    assert _code(good + b"extra") == ErrorCode.MALFORMED


def test_version_type_and_field_errors() -> None:
    assert _code(_pack({"v": 2, "type": "ping", "t": 1.0})) == ErrorCode.UNSUPPORTED_VERSION
    assert _code(_pack({"v": 1, "type": "teleport"})) == ErrorCode.UNKNOWN_TYPE
    assert _code(_pack({"v": 1, "type": "ping"})) == ErrorCode.INVALID_FIELD
    assert _code(_pack({"v": 1, "type": "ping", "t": "soon"})) == ErrorCode.INVALID_FIELD
    assert _code('{"v": 1, "type": "ping", "t": NaN}') == ErrorCode.INVALID_FIELD


def test_prompt_errors_name_the_prompt() -> None:
    def prompt(items: list) -> str:
        return json.dumps({"v": 1, "type": "prompt", "prompt_id": 9, "frame_id": 1, "items": items})

    with pytest.raises(ProtocolError) as info:
        decode_message(prompt([{"type": "lasso", "points": []}]))
    assert info.value.code == ErrorCode.UNKNOWN_PROMPT and info.value.ref_id == 9 and "lasso" in info.value.message
    assert _code(prompt([])) == ErrorCode.BAD_PROMPT
    assert _code(prompt([{"type": "point", "x": "left", "y": 3}])) == ErrorCode.INVALID_FIELD
    assert _code(prompt([{"type": "text", "text": "x" * 1000}])) == ErrorCode.BAD_PROMPT
    assert _code(prompt([{"type": "gaze", "samples": [[1, 2]]}])) == ErrorCode.BAD_PROMPT
    assert _code(prompt([{"type": "mask", "payload": "m", "height": 4, "width": 4}])) == ErrorCode.BAD_PROMPT
    assert _code(prompt([{"type": "point", "x": 1, "y": 1}] * 65)) == ErrorCode.TOO_LARGE


def test_frame_errors() -> None:
    frame = _frame()
    header = {"v": 1, "type": "frame", "frame_id": 4, "width": 64, "height": 48,
              "intrinsics": {"fx": 50, "fy": 50, "cx": 32, "cy": 24}}
    rgb = cv2.imencode(".png", frame.rgb)[1].tobytes()
    small = cv2.imencode(".png", frame.rgb[:24, :32])[1].tobytes()
    depth = cv2.imencode(".png", frame.depth[:24, :32])[1].tobytes()

    def with_payloads(*items: tuple[str, str, bytes], **extra: object) -> bytes:
        h = {**header, **extra, "payloads": [{"name": n, "codec": c, "size": len(b)} for n, c, b in items]}
        return _pack(h, b"".join(b for _, _, b in items))

    with pytest.raises(ProtocolError) as info:
        decode_message(with_payloads(("rgb", "png", small)))
    assert info.value.code == ErrorCode.BAD_IMAGE and info.value.ref_id == 4 and "32x24" in info.value.message
    assert _code(with_payloads(("rgb", "png", rgb), ("depth", "png16", depth))) == ErrorCode.BAD_DEPTH
    assert _code(with_payloads(("rgb", "png", b"\x89PNG not really"))) == ErrorCode.BAD_IMAGE
    assert _code(with_payloads(("rgb", "raw", b"\x00" * 10))) == ErrorCode.BAD_IMAGE
    assert _code(with_payloads(("rgb", "webp", rgb))) == ErrorCode.BAD_IMAGE
    assert _code(with_payloads()) == ErrorCode.BAD_IMAGE
    assert _code(with_payloads(("rgb", "png", rgb), width=100000, height=100000)) == ErrorCode.TOO_LARGE
    assert _code(with_payloads(("rgb", "png", rgb), intrinsics={"fx": -1, "fy": 50, "cx": 1, "cy": 1})) == ErrorCode.INVALID_FIELD
    assert _code(with_payloads(("rgb", "png", rgb), pose=[1.0] * 16)) == ErrorCode.INVALID_FIELD
    full_depth = cv2.imencode(".png", frame.depth)[1].tobytes()
    assert decode_message(with_payloads(("rgb", "png", rgb), ("depth", "png16", full_depth))).frame.frame_id == 4
    assert _code(with_payloads(("rgb", "png", rgb), ("depth", "png16", full_depth), depth_scale=0)) == ErrorCode.BAD_DEPTH


def test_message_size_limit() -> None:
    data = encode_frame(_frame())
    assert _code(data, Limits(max_message_bytes=len(data) - 1)) == ErrorCode.TOO_LARGE


def test_fields_added_by_a_newer_engine_are_ignored() -> None:
    header = {"v": 1, "type": "stats", "stats": {"frames_received": 3, "gpu_ms": 1.5}}
    msg = decode_message(json.dumps(header))
    assert msg.stats.frames_received == 3
    welcome = {"v": 1, "type": "welcome", "session_id": "s", "model": "m", "limits": {"max_points": 8, "max_voxels": 9}}
    assert decode_message(json.dumps(welcome)).limits.max_points == 8

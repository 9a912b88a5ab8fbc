"""Fuzzing the wire codec (hypothesis): any exception other than a coded ProtocolError is a bug.

Covers the envelope parser, every message decoder, the depth codec and chunk reassembly, plus
the inputs that crashed handlers before (each a named regression case).
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core import BoxPrompt, CameraIntrinsics, GazeSample, PointPrompt, Pose, Prompt, RGBDFrame
from engine.protocol import (
    Bye,
    Cancel,
    DepthCodec,
    ErrorCode,
    Hello,
    ImageCodec,
    Limits,
    MessageType,
    Ping,
    PromptMessage,
    ProtocolError,
    decode_message,
    encode_frame,
    encode_message,
    pack,
)
from engine.protocol import depth_codec as rdz
from engine.protocol.chunking import Reassembler, split_message

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMITS = Limits(max_message_bytes=1 << 20)


def _decodes_or_codes(data: bytes | str, limits: Limits = LIMITS) -> None:
    """decode_message either returns or raises ProtocolError with a schema-v1 code; nothing else."""
    try:
        decode_message(data, limits)
    except ProtocolError as exc:
        assert isinstance(exc.code, ErrorCode) and exc.message


def _frame(codec: ImageCodec = ImageCodec.PNG, depth: DepthCodec = DepthCodec.RDZ) -> bytes:
    h, w = 24, 32
    rgb = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    d = np.full((h, w), 1500, np.uint16)
    frame = RGBDFrame(3, rgb, d, CameraIntrinsics(w, h, 30.0, 30.0, 16.0, 12.0), 1000.0, Pose.identity(), 1.5)
    return encode_frame(frame, codec, depth)


VALID = [
    _frame(),
    _frame(ImageCodec.JPEG, DepthCodec.PNG16),
    _frame(ImageCodec.RAW, DepthCodec.RAW16),
    encode_message(
        PromptMessage(
            Prompt(
                5,
                3,
                points=(PointPrompt(4, 5),),
                box=BoxPrompt(1, 1, 9, 9),
                text="the chair",
                gaze=(GazeSample(0.1, 3, 4, 0.9),),
            )
        )
    ),
    encode_message(Hello("tok", "c", session_id="abc")),
    encode_message(Ping(1.0)),
    encode_message(Cancel(4)),
    encode_message(Bye("x")),
]

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)
FIELD_NAMES = st.sampled_from(
    [
        "frame_id",
        "prompt_id",
        "width",
        "height",
        "intrinsics",
        "pose",
        "depth_scale",
        "capture_ts",
        "items",
        "token",
        "session_id",
        "t",
        "reason",
        "payloads",
        "multimask",
        "want_3d",
        "answer",
        "track",
        "client",
        "code",
        "message",
    ]
)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_get_coded_errors(data: bytes) -> None:
    _decodes_or_codes(data)
    _decodes_or_codes(b"XRSG" + data)


@FUZZ
@given(st.sampled_from(list(MessageType)), st.dictionaries(FIELD_NAMES, JSON, max_size=8))
def test_random_headers_of_every_type_get_coded_errors(kind: MessageType, fields: dict) -> None:
    header = {"v": 1, "type": str(kind), **fields}
    _decodes_or_codes(json.dumps(header))
    header.pop("payloads", None)
    body = b"\x89PNG\r\n\x1a\n" + b"\0" * 30
    raw = json.dumps({**header, "payloads": [{"name": "rgb", "codec": "png", "size": len(body)}]}).encode()
    _decodes_or_codes(b"XRSG" + struct.pack("<I", len(raw)) + raw + body)


@FUZZ
@given(
    st.sampled_from(range(len(VALID))),
    st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8),
    st.integers(0, 1 << 20),
)
def test_mutated_valid_messages_get_coded_errors(which: int, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(VALID[which])
    for pos, value in flips:
        data[pos % len(data)] = value
    _decodes_or_codes(bytes(data))
    _decodes_or_codes(bytes(data[: cut % (len(data) + 1)]))


@FUZZ
@given(st.binary(max_size=512), st.integers(1, 64), st.integers(1, 64))
def test_depth_codec_raises_only_its_own_error(body: bytes, h: int, w: int) -> None:
    header = struct.pack("<2sBBHHI", b"XD", 1, 1 + (len(body) % 2), w, h, 0)
    import zlib

    for data in (body, header + body, header[:-4] + struct.pack("<I", zlib.crc32(body)) + body):
        try:
            out = rdz.decode_depth(data, h, w)
        except rdz.DepthCodecError:
            continue
        assert out.shape == (h, w) and out.dtype == np.uint16


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(0, 5),
            st.integers(0, 5),
            st.integers(1, 255),
            st.binary(max_size=64),
        ),
        max_size=30,
    )
)
def test_chunk_reassembly_raises_only_coded_errors_and_stays_bounded(chunks: list) -> None:
    reassembler = Reassembler(max_message_bytes=4096, max_chunk=256, max_partial=2)
    for mid, index, count, version, body in chunks:
        data = struct.pack("<2sBBIHH", b"XC", 1 if version > 8 else version, 0, mid, index, count) + body
        try:
            reassembler.feed(data)
        except ProtocolError as exc:
            assert exc.code in (ErrorCode.MALFORMED, ErrorCode.TOO_LARGE)
        assert len(reassembler._partial) <= 2 and len(reassembler._refused) <= 8


def test_split_and_reassemble_round_trip() -> None:
    data = VALID[0]
    r = Reassembler(1 << 20, max_chunk=512)
    out = [r.feed(c) for c in split_message(data, 7, 512)]
    assert out[-1] == data and all(o is None for o in out[:-1])


# ---------------------------------------------------------------------------------------------
# the inputs that crashed handlers before (close 1011, no code): each now a coded error


def _dds(w: int, h: int) -> bytes:
    """A DirectDraw Surface header with an unknown pixel format (Pillow raised NotImplementedError)."""
    head = struct.pack("<4sIIIIIII", b"DDS ", 124, 0x1007, h, w, 0, 0, 0) + b"\0" * 44
    return (
        head
        + struct.pack("<II4sIIIII", 32, 0x4, b"ZZZZ", 0, 0, 0, 0, 0)
        + struct.pack("<IIIII", 0x1000, 0, 0, 0, 0)
        + b"\0" * 64
    )


def _frame_header(**over: object) -> dict:
    header: dict = {
        "type": "frame",
        "frame_id": 1,
        "width": 32,
        "height": 24,
        "intrinsics": {"fx": 30.0, "fy": 30.0, "cx": 16.0, "cy": 12.0},
    }
    header.update(over)
    return header


def _prompt(*items: dict) -> str:
    return json.dumps({"v": 1, "type": "prompt", "prompt_id": 9, "frame_id": 1, "items": list(items)})


def _png(h: int = 24, w: int = 32) -> bytes:
    from engine.protocol.payloads import encode_image

    return encode_image(np.zeros((h, w, 3), np.uint8), ImageCodec.PNG)


def _pack_raw(header: dict, swap: tuple[str, str]) -> bytes:
    """A frame whose header JSON has one literal swapped in (NaN and Infinity, which pack refuses)."""
    png = _png()
    header = {"v": 1, **header, "payloads": [{"name": "rgb", "codec": "png", "size": len(png)}]}
    raw = json.dumps(header).replace(*swap).encode()
    return b"XRSG" + struct.pack("<I", len(raw)) + raw + png


EYE = np.eye(4).ravel().tolist()
CRASHERS = {
    "json nested 30000 deep": (
        '{"v":1,"type":"ping","t":' + "[" * 30000 + "]" * 30000 + "}",
        ErrorCode.MALFORMED,
    ),
    "5000-digit integer": ('{"v":1,"type":"ping","t":' + "9" * 5000 + "}", ErrorCode.MALFORMED),
    "lone surrogate in text": (
        _prompt({"type": "text", "text": "chair \\ud800"}).replace("\\\\ud800", "\\ud800"),
        ErrorCode.INVALID_FIELD,
    ),
    "lone surrogate in token": ('{"v":1,"type":"hello","token":"\\udfff"}', ErrorCode.INVALID_FIELD),
    "missing token": ('{"v":1,"type":"hello","client":"x"}', ErrorCode.UNAUTHORIZED),
    "dds labelled jpeg": (pack(_frame_header(), [("rgb", "jpeg", _dds(32, 24))]), ErrorCode.BAD_IMAGE),
    "png labelled jpeg": (pack(_frame_header(), [("rgb", "jpeg", _png())]), ErrorCode.BAD_IMAGE),
    "dds labelled png16 depth": (
        pack(_frame_header(), [("rgb", "png", _png()), ("depth", "png16", _dds(32, 24))]),
        ErrorCode.BAD_DEPTH,
    ),
    "fx 1e-300": (
        pack(
            _frame_header(intrinsics={"fx": 1e-300, "fy": 30, "cx": 16, "cy": 12}), [("rgb", "png", _png())]
        ),
        ErrorCode.INVALID_FIELD,
    ),
    "cx 1e308": (
        pack(_frame_header(intrinsics={"fx": 30, "fy": 30, "cx": 1e308, "cy": 12}), [("rgb", "png", _png())]),
        ErrorCode.INVALID_FIELD,
    ),
    "pose translation 1e300": (
        pack(_frame_header(pose=EYE[:3] + [1e300] + EYE[4:]), [("rgb", "png", _png())]),
        ErrorCode.INVALID_FIELD,
    ),
    "pose NaN": (
        _pack_raw(_frame_header(pose=[7777.5] + EYE[1:]), ("7777.5", "NaN")),
        ErrorCode.INVALID_FIELD,
    ),
    "intrinsics inf": (
        _pack_raw(
            _frame_header(intrinsics={"fx": 7777.5, "fy": 30, "cx": 16, "cy": 12}), ("7777.5", "-Infinity")
        ),
        ErrorCode.INVALID_FIELD,
    ),
    "gaze confidence 1e308": (
        _prompt({"type": "gaze", "samples": [[0.0, 3.0, 4.0, 1e308]]}),
        ErrorCode.INVALID_FIELD,
    ),
    "point x 1e300": (_prompt({"type": "point", "x": 1e300, "y": 3}), ErrorCode.INVALID_FIELD),
    "frame id 2**80": (json.dumps({"v": 1, "type": "cancel", "prompt_id": 2**80}), ErrorCode.INVALID_FIELD),
    "frame 60000x60000": (
        pack(_frame_header(width=60000, height=60000), [("rgb", "png", _png())]),
        ErrorCode.TOO_LARGE,
    ),
    "10^6 points": (lambda: _prompt(*[{"type": "point", "x": 1, "y": 1}] * 1_000_000), ErrorCode.TOO_LARGE),
    "1 MB text prompt": (_prompt({"type": "text", "text": "a" * (1 << 20)}), ErrorCode.TOO_LARGE),
}


@pytest.mark.parametrize("case", list(CRASHERS))
def test_inputs_that_crashed_handlers_get_coded_errors(case: str) -> None:
    data, code = CRASHERS[case]
    data = data() if callable(data) else data  # built when run: collecting must stay cheap
    with pytest.raises(ProtocolError) as info:
        decode_message(data, Limits(max_message_bytes=8 << 20))
    assert info.value.code == code, info.value.message


def test_a_large_header_within_limits_stops_at_the_first_extra_point() -> None:
    limits = Limits(max_header_bytes=16 << 20, max_message_bytes=16 << 20)
    with pytest.raises(ProtocolError) as info:
        decode_message(_prompt(*[{"type": "point", "x": 1, "y": 1}] * 200_000), limits)
    assert info.value.code == ErrorCode.TOO_LARGE and info.value.ref_id == 9


def test_sane_values_still_pass() -> None:
    msg = decode_message(VALID[3], LIMITS)
    assert isinstance(msg, PromptMessage) and msg.prompt.gaze[0].confidence == pytest.approx(0.9)

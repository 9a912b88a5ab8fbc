"""rdz depth codec: bit-exact on real sensor depth, measured against PNG, and safe on bad bytes."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import cv2
import lz4.block
import numpy as np
import pytest
import zstandard

from engine.protocol.depth_codec import MAX_SIDE, Backend, DepthCodecError, decode_depth, encode_depth

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "rgbd"
HEADER = struct.Struct("<2sBBHHI")


def shared_depth(per_sequence: int) -> list[np.ndarray]:
    """Up to per_sequence depth maps of every shared sequence, (480, 640) uint16 each."""
    frames = []
    for seq in sorted(p for p in DATA.iterdir() if (p / "depth").is_dir()):
        for path in sorted((seq / "depth").iterdir())[:per_sequence]:
            frames.append(cv2.imread(str(path), cv2.IMREAD_UNCHANGED))
    assert len(frames) >= 3, f"shared sequences missing under {DATA}"
    return frames


def repack(payload: bytes, body: bytes, **fields: int) -> bytes:
    """payload's header with some fields replaced, over a new body, with a matching crc32."""
    magic, version, backend, width, height, _ = HEADER.unpack_from(payload)
    values = {
        "magic": magic,
        "version": version,
        "backend": backend,
        "width": width,
        "height": height,
    } | fields
    return HEADER.pack(*values.values(), zlib.crc32(body)) + body


@pytest.mark.parametrize("backend", list(Backend))
def test_real_depth_round_trips_bit_exact(backend: Backend) -> None:
    for depth in shared_depth(4):
        data = encode_depth(depth, backend)
        back = decode_depth(data, *depth.shape)
        assert back.dtype == np.uint16 and back.shape == depth.shape
        np.testing.assert_array_equal(back, depth)


@pytest.mark.parametrize("backend", list(Backend))
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (7, 5), (15, 3), (17, 33), (481, 641), (8, 2000)])
def test_any_size_and_value_round_trips(backend: Backend, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    for depth in (
        rng.integers(0, 65536, shape, dtype=np.uint16),  # worst case: no structure, full range
        np.zeros(shape, np.uint16),
        np.full(shape, 65535, np.uint16),
        np.where(rng.random(shape) < 0.5, 0, 65535).astype(np.uint16),  # residuals that wrap
    ):
        np.testing.assert_array_equal(decode_depth(encode_depth(depth, backend), *shape), depth)


def test_views_and_byte_orders_encode_the_same_samples() -> None:
    depth = shared_depth(1)[0]
    view = depth[::2, 1::3]  # not contiguous
    np.testing.assert_array_equal(decode_depth(encode_depth(view), *view.shape), view)
    big_endian = depth.astype(">u2")
    assert encode_depth(big_endian) == encode_depth(depth)


def test_ratio_at_least_png_and_five_times_faster() -> None:
    """The acceptance bar of issue 5 on 20 shared frames, in this thread's CPU time.

    Other processes share this 2-core machine and inflate memory-bound code most, so each codec
    runs in passes of its own over all frames (as bench.webrtc does), alternating, and the best
    of five passes counts, as timeit does. bench.webrtc reports per-frame medians on 221 frames.
    """
    frames = shared_depth(10)

    def ours(depth: np.ndarray) -> int:
        data = encode_depth(depth)
        decode_depth(data, *depth.shape)
        return len(data)

    def png(depth: np.ndarray) -> int:
        ok, buf = cv2.imencode(".png", depth)
        cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        return len(buf)

    best = {ours: float("inf"), png: float("inf")}
    size = {}
    for _ in range(5):
        for codec in best:
            t = time.thread_time()
            size[codec] = sum(codec(depth) for depth in frames)
            best[codec] = min(best[codec], time.thread_time() - t)
    speedup = best[png] / best[ours]
    assert size[ours] <= size[png], f"rdz {size[ours]} bytes vs png {size[png]}"
    assert speedup >= 5.0, f"rdz encode+decode only {speedup:.1f}x faster than PNG"


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4), np.float32),
        np.zeros((4, 4), np.int16),
        np.zeros((4, 4, 1), np.uint16),
        np.zeros(8, np.uint16),
    ],
    ids=["float32", "int16", "3d", "1d"],
)
def test_encode_rejects_what_is_not_raw_depth(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint16"):
        encode_depth(bad)


def test_encode_rejects_oversized_and_empty() -> None:
    with pytest.raises(ValueError, match="outside"):
        encode_depth(np.zeros((1, MAX_SIDE + 1), np.uint16))
    with pytest.raises(ValueError, match="outside"):
        encode_depth(np.zeros((0, 5), np.uint16))


def test_decode_rejects_each_kind_of_bad_header() -> None:
    depth = shared_depth(1)[0]
    h, w = depth.shape
    good = encode_depth(depth)
    body = good[HEADER.size :]
    cases = {
        "empty": (b"", "shorter"),
        "short": (good[:5], "shorter"),
        "magic": (repack(good, body, magic=b"PK"), "does not start"),
        "version": (repack(good, body, version=2), "version 2"),
        "backend": (repack(good, body, backend=9), "compressor 9"),
        "size": (repack(good, body, width=w + 1), "but the frame is"),
        "crc": (good[:-1] + bytes([good[-1] ^ 1]), "crc32"),
        "truncated": (good[:-100], "crc32"),
        "trailing": (good + b"\0", "crc32"),
    }
    for name, (data, message) in cases.items():
        with pytest.raises(DepthCodecError, match=message):
            decode_depth(data, h, w)
        assert name
    with pytest.raises(ValueError, match="outside"):
        decode_depth(good, 100_000, 100_000)  # the caller's size is bounded before anything else


def test_decode_rejects_bodies_that_lie_about_their_size() -> None:
    """A hostile client can compute a crc32: the decompressors themselves must hold the line."""
    h, w = 48, 64
    good = encode_depth(np.ones((h, w), np.uint16))
    too_short = lz4.block.compress(b"\0" * (2 * h * w - 2), store_size=False)
    too_long = lz4.block.compress(b"\0" * (2 * h * w + 2), store_size=False)
    huge = zstandard.ZstdCompressor(write_content_size=True).compress(b"\0" * (64 << 20))  # 64 MiB of zeros
    zstd_good = zstandard.ZstdCompressor(write_content_size=True).compress(b"\0" * (2 * h * w))
    no_size = zstandard.ZstdCompressor(write_content_size=False).compress(b"\0" * (2 * h * w))
    cases = [
        (repack(good, too_short), "decoded to"),
        (repack(good, too_long), "corrupt"),
        (repack(good, b"\xff" * 64), "corrupt"),
        (repack(good, huge, backend=Backend.ZSTD), "declares"),
        (repack(good, no_size, backend=Backend.ZSTD), "declares"),
        (repack(good, zstd_good + b"x", backend=Backend.ZSTD), "corrupt"),
        (repack(good, b"garbage!", backend=Backend.ZSTD), "zstd frame header"),
    ]
    for data, message in cases:
        with pytest.raises(DepthCodecError, match=message):
            decode_depth(data, h, w)


@pytest.mark.parametrize("backend", list(Backend))
def test_mutated_payloads_raise_or_decode_to_the_right_shape(backend: Backend) -> None:
    """400 random corruptions with a fixed-up crc: never a crash, only DepthCodecError or an array."""
    depth = shared_depth(1)[0][:96, :128].copy()
    good = encode_depth(depth, backend)
    body = good[HEADER.size :]
    rng = np.random.default_rng(int(backend))
    outcomes = {"error": 0, "decoded": 0}
    for _ in range(400):
        mutated = bytearray(body)
        kind = rng.integers(3)
        if kind == 0:
            for pos in rng.integers(0, len(mutated), rng.integers(1, 8)):
                mutated[pos] = rng.integers(256)
        elif kind == 1:
            del mutated[rng.integers(len(mutated)) :]
        else:
            mutated[rng.integers(len(mutated)) : rng.integers(len(mutated))] = rng.bytes(
                int(rng.integers(1, 64))
            )
        try:
            back = decode_depth(repack(good, bytes(mutated)), *depth.shape)
        except DepthCodecError:
            outcomes["error"] += 1
        else:
            assert back.shape == depth.shape and back.dtype == np.uint16
            outcomes["decoded"] += 1
    assert outcomes["error"] > 200, outcomes  # most damage is detected by the decompressor itself


def test_frame_messages_carry_rdz_depth_and_report_bad_depth() -> None:
    """The schema-v1 codec speaks rdz: bit-exact through encode_frame / decode_message."""
    from engine.core import CameraIntrinsics, RGBDFrame
    from engine.protocol import DepthCodec, ErrorCode, FrameMessage, ImageCodec, ProtocolError
    from engine.protocol.codec import check_frame, decode_message, encode_frame, parse_envelope

    depth = shared_depth(1)[0]
    frame = RGBDFrame(
        7, np.zeros((480, 640, 3), np.uint8), depth, CameraIntrinsics(640, 480, 525.0, 525.0, 319.5, 239.5)
    )
    data = encode_frame(frame, ImageCodec.JPEG, DepthCodec.RDZ)
    msg = decode_message(data)
    assert isinstance(msg, FrameMessage)
    np.testing.assert_array_equal(msg.frame.depth, depth)
    at = data.index(b"XD\x01")  # the rdz header: magic, version, backend, width, height
    bad = data[: at + 6] + (481).to_bytes(2, "little") + data[at + 8 :]  # says 640x481
    with pytest.raises(ProtocolError) as info:
        check_frame(parse_envelope(bad))
    assert info.value.code == ErrorCode.BAD_DEPTH and info.value.ref_id == 7

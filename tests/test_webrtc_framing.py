"""Pure pieces of the WebRTC transport: chunk framing and the colour/metadata aligner."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from engine.protocol import ErrorCode, ProtocolError
from engine.protocol.chunking import Reassembler, split_message
from engine.transport.webrtc.alignment import FrameAligner

K = 6000  # pts per frame at 15 fps


def test_chunks_round_trip_and_small_messages_pass_through() -> None:
    small, big = b"XRSG" + b"a" * 100, b"XRSG" + os.urandom(100_000)
    assert split_message(small, 1, 16384) == [small]
    chunks = split_message(big, 2, 16384)
    assert len(chunks) == 7 and all(len(c) <= 16384 for c in chunks)
    joiner = Reassembler(max_message_bytes=1 << 20, max_chunk=16384)
    assert [joiner.feed(c) for c in chunks[:-1]] == [None] * 6
    assert joiner.feed(chunks[-1]) == big
    assert joiner.feed(small) == small and joiner.feed("text") == "text"


def test_reassembler_bounds_what_a_peer_can_make_it_hold() -> None:
    joiner = Reassembler(max_message_bytes=50_000, max_chunk=16384, max_partial=2)
    with pytest.raises(ProtocolError) as info:
        joiner.feed(split_message(b"x" * 100_000, 1, 16384)[0])  # 7 chunks declared: over the limit
    assert info.value.code == ErrorCode.TOO_LARGE
    for mid in (2, 3, 4):  # three unfinished messages: the oldest is given up
        joiner.feed(split_message(b"y" * 40_000, mid, 16384)[0])
    assert joiner.dropped == 1
    with pytest.raises(ProtocolError, match="out of order"):
        joiner.feed(split_message(b"y" * 40_000, 2, 16384)[1])  # message 2 was given up
    with pytest.raises(ProtocolError, match="shorter"):
        joiner.feed(b"XC\x01")


@dataclass
class Video:
    pts: int
    width: int = 640
    height: int = 480


def test_aligner_pairs_by_pts_whichever_half_comes_first() -> None:
    aligner = FrameAligner(K, max_wait_s=1.0)
    assert aligner.add_metadata(40, "m40", 0.0) is None
    first = aligner.add_video(Video(0), 0.01)  # aiortc's first frame has pts 0: locks 40 <-> 0
    assert first is not None and (first.frame_id, first.metadata) == (40, "m40")
    assert aligner.add_video(Video(2 * K - 1), 0.1) is None  # frame 42 (aiortc rounds 12000 to 11999)
    paired = aligner.add_metadata(42, "m42", 0.12)
    assert paired is not None and paired.frame_id == 42
    assert aligner.add_video(Video(2 * K + K // 4 + 10), 0.13) is None  # off the grid: a filler
    assert aligner.counters.off_grid == 1 and aligner.counters.paired == 2


def test_aligner_drops_and_counts_halves_that_never_pair() -> None:
    aligner = FrameAligner(K, max_wait_s=0.5, max_pending=4, max_video=2)
    aligner.add_metadata(0, "m0", 0.0)
    aligner.add_video(Video(0), 0.0)
    aligner.add_metadata(1, "m1", 0.1)  # its colour is lost
    aligner.add_metadata(2, "m2", 0.2)
    assert aligner.add_video(Video(2 * K), 0.25).frame_id == 2  # overtakes 1: dropped
    assert aligner.counters.metadata_dropped == 1
    aligner.add_video(Video(3 * K), 0.3)  # its metadata never comes
    aligner.expire(0.9)
    assert aligner.counters.video_dropped == 1
    assert (
        aligner.add_metadata(2, "again", 1.0) is None and aligner.counters.metadata_dropped == 2
    )  # stale id
    aligner.reset()  # a new track: pts restart at 0 for whatever frame comes first
    aligner.add_metadata(7, "m7", 2.0)
    assert aligner.add_video(Video(0), 2.0).frame_id == 7

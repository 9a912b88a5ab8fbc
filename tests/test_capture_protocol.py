"""Capture messages on the wire: round trips through the one codec, coded errors for bad fields."""

from __future__ import annotations

import numpy as np
import pytest

from engine.protocol import ErrorCode, ProtocolError, decode_message, encode_message, pack
from engine.protocol.capture import (
    MAX_PREVIEW_POINTS,
    CaptureAction,
    CaptureProgressMessage,
    CaptureRequest,
    CaptureSaved,
    PoseSource,
)


def test_capture_messages_round_trip() -> None:
    request = CaptureRequest(CaptureAction.START, 7, "mug", PoseSource.ODOMETRY, 0.004)
    assert decode_message(encode_message(request)) == request
    assert decode_message(encode_message(CaptureRequest(CaptureAction.STOP, 7))) == CaptureRequest(CaptureAction.STOP, 7)
    saved = CaptureSaved(7, "a" * 32, "mug", "/captures/" + "a" * 32, (("mesh.glb", 10), ("view0.png", 3)), 100, 196, 60)
    assert decode_message(encode_message(saved)) == saved
    rng = np.random.default_rng(0)
    points = rng.normal(size=(5000, 3)).astype(np.float32)
    colors = rng.integers(0, 255, (5000, 3), dtype=np.uint8)
    progress = CaptureProgressMessage(7, "capturing", 40, 2, tuple(range(20)), ((0.0, 0.0, -1.0),), (0.1, 0.2, 0.3), points, colors)
    back = decode_message(encode_message(progress))
    assert isinstance(back, CaptureProgressMessage)
    assert back.coverage == tuple(range(20)) and back.missing == ((0.0, 0.0, -1.0),) and back.centroid == (0.1, 0.2, 0.3)
    assert len(back.points) == MAX_PREVIEW_POINTS  # capped per message
    assert np.array_equal(back.points, points[:MAX_PREVIEW_POINTS]) and np.array_equal(back.colors, colors[:MAX_PREVIEW_POINTS])
    empty = decode_message(encode_message(CaptureProgressMessage(7, "cancelled", 0, 0, (0,) * 20)))
    assert len(empty.points) == 0 and empty.centroid is None


@pytest.mark.parametrize(
    ("header", "match"),
    [
        ({"action": "explode", "prompt_id": 1}, "action must be one of"),
        ({"action": "start"}, "missing field 'prompt_id'"),
        ({"action": "start", "prompt_id": 1, "pose_source": "gps"}, "pose_source must be one of"),
        ({"action": "start", "prompt_id": 1, "voxel_size": 0.5}, "voxel_size must be in"),
        ({"action": "start", "prompt_id": 1, "name": "x" * 300}, "at most"),
        ({"action": "start", "prompt_id": "1"}, "must be int"),
    ],
)
def test_bad_capture_requests_get_invalid_field(header: dict, match: str) -> None:
    with pytest.raises(ProtocolError, match=match) as err:
        decode_message(pack({"type": "capture", **header}))
    assert err.value.code is ErrorCode.INVALID_FIELD

"""Schema v1 additions for streaming (docs/protocol.md): track, answer, everything, cancel, result kind."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.core import (
    GazeSample,
    MaskCandidate,
    PointPrompt,
    Pose,
    Prompt,
    RLEMask,
    SegmentationResult,
    StageTimestamps,
)
from engine.protocol import (
    AnswerMode,
    Cancel,
    ErrorCode,
    EverythingRequest,
    PromptMessage,
    ProtocolError,
    ResultKind,
    ResultMessage,
    decode_message,
    encode_message,
)


def _roundtrip(msg):
    return decode_message(encode_message(msg))


def test_prompt_options_round_trip_and_default_to_v1():
    prompt = Prompt(3, 9, points=(PointPrompt(1.0, 2.0),), gaze=(GazeSample(0.5, 1.0, 2.0, 0.9),))
    plain = _roundtrip(PromptMessage(prompt))
    assert not plain.track and plain.answer is AnswerMode.NOW and plain.everything is None
    v1_header = json.dumps(
        {
            "v": 1,
            "type": "prompt",
            "prompt_id": 3,
            "frame_id": 9,
            "items": [{"type": "point", "x": 1, "y": 2}],
        }
    )
    assert decode_message(v1_header).answer is AnswerMode.NOW  # a v1 client's prompt means what it meant
    tracked = _roundtrip(PromptMessage(prompt, track=True, answer=AnswerMode.DWELL))
    assert tracked.track and tracked.answer is AnswerMode.DWELL and tracked.prompt.gaze == prompt.gaze
    every = _roundtrip(PromptMessage(Prompt(4, 9), everything=EverythingRequest(16, 0.5)))
    assert every.everything == EverythingRequest(16, 0.5, None) and every.prompt.is_empty()


@pytest.mark.parametrize(
    "header",
    [
        {"answer": "later", "items": [{"type": "point", "x": 1, "y": 2}]},
        {"track": "yes", "items": [{"type": "point", "x": 1, "y": 2}]},
        {"items": [{"type": "everything", "points_per_side": 0}]},
        {"items": [{"type": "everything", "pred_iou_thresh": 1.5}]},
        {"track": True, "items": [{"type": "everything"}]},
        {"items": []},
    ],
)
def test_bad_prompt_options_get_coded_errors(header):
    msg = json.dumps({"v": 1, "type": "prompt", "prompt_id": 5, "frame_id": 1, **header})
    with pytest.raises(ProtocolError) as info:
        decode_message(msg)
    assert info.value.code in (ErrorCode.INVALID_FIELD, ErrorCode.BAD_PROMPT) and info.value.ref_id == 5


def test_cancel_and_result_kind_round_trip():
    assert _roundtrip(Cancel(7)) == Cancel(7) and _roundtrip(Cancel()) == Cancel(None)
    mask = np.zeros((4, 5), bool)
    mask[1:3, 2:4] = True
    result = SegmentationResult(
        7,
        12,
        10,
        (MaskCandidate(RLEMask.encode(mask), 0.9, "object"),),
        0,
        None,
        Pose.identity(),
        StageTimestamps(receive=1.0, decode=2.0),
    )
    back = _roundtrip(ResultMessage(result, ResultKind.TRACK, "reprojection"))
    assert back.kind is ResultKind.TRACK and back.mapping == "reprojection"
    assert back.result.frame_id == 12 and back.result.keyframe_id == 10
    assert np.array_equal(back.result.masks[0].mask.decode(), mask)
    assert _roundtrip(ResultMessage(result)).kind is ResultKind.ANSWER

"""docs/schema: a JSON Schema for every message, examples, rdz test vectors, checked against the codec.

A schema that drifted from engine/protocol/codec.py would mislead every non-Python client, so the
examples must pass both the schema and the engine's own decoder, and headers the engine really
writes must pass the schema.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from referencing import Registry, Resource

from engine.core import (
    AnchorWorld,
    CameraIntrinsics,
    MaskCandidate,
    MaskRanking,
    Pose,
    RGBDFrame,
    RLEMask,
    Segment3D,
    SegmentationResult,
    StageTimestamps,
)
from engine.protocol import DepthCodec, ErrorCode, ImageCodec, ProtocolError, decode_message, encode_message
from engine.protocol import depth_codec as rdz
from engine.protocol.capture import (
    CaptureAction,
    CaptureProgressMessage,
    CaptureRequest,
    CaptureSaved,
    PoseSource,
)
from engine.protocol.codec import encode_frame, parse_envelope
from engine.protocol.messages import (
    Bye,
    Cancel,
    ErrorMessage,
    MessageType,
    Ping,
    Pong,
    ResultKind,
    ResultMessage,
    SessionStats,
    StatsMessage,
    Welcome,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "schema"
SCHEMAS = {p.stem: json.loads(p.read_text()) for p in DOCS.glob("*.json") if p.stem != "rdz_vectors"}
REGISTRY = Registry().with_resources(
    (s["$id"].rsplit("/", 1)[-1], Resource.from_contents(s)) for s in SCHEMAS.values()
)
EXAMPLES = {p.stem: json.loads(p.read_text()) for p in (DOCS / "examples").glob("*.json")}
CLIENT_TO_ENGINE = {"hello", "prompt", "prompt_gaze_dwell", "prompt_box", "cancel", "ping", "bye", "capture"}


def validate(instance: dict, schema_name: str) -> None:
    jsonschema.Draft202012Validator(SCHEMAS[schema_name], registry=REGISTRY).validate(instance)


def test_every_message_type_has_a_schema_and_an_example() -> None:
    for kind in MessageType:
        assert str(kind) in SCHEMAS, f"docs/schema/{kind}.json missing"
        assert str(kind) in EXAMPLES, f"docs/schema/examples/{kind}.json missing"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_examples_match_their_schema(name: str) -> None:
    validate(EXAMPLES[name], name.split("_gaze")[0].split("_box")[0])


@pytest.mark.parametrize("name", sorted(CLIENT_TO_ENGINE))
def test_client_examples_are_accepted_by_the_engine(name: str) -> None:
    decode_message(json.dumps(EXAMPLES[name]))  # a text message, as a browser may send it


def test_headers_the_engine_writes_match_the_schemas() -> None:
    mask = np.zeros((6, 8), bool)
    mask[1:4, 2:6] = True
    segment = Segment3D(
        "ok", np.zeros(3), np.zeros(3), np.ones(3), np.eye(3), np.zeros((5, 3), np.float32), 5,
        anchor=AnchorWorld(np.zeros(3), 3, 40),
    )  # fmt: skip
    ranking = MaskRanking(1.2, 0.6, 0.27, None, 0.9)
    result = SegmentationResult(
        3, 9, 8, (MaskCandidate(RLEMask.encode(mask), 0.9, "object", ranking),), 0, segment,
        Pose.identity(), StageTimestamps(capture=1.0, receive=1.1, send=1.2),
    )  # fmt: skip
    messages = {
        "result": ResultMessage(result, ResultKind.TRACK, "reprojection"),
        "error": ErrorMessage(ErrorCode.OVERLOADED, "dropped", 3),
        "stats": StatsMessage(SessionStats(frames_received=3)),
        "pong": Pong(1.0, 2.0),
        "welcome": Welcome("s", "geometric"),
        "cancel": Cancel(4),
        "ping": Ping(1.0),
        "bye": Bye("x"),
        "capture": CaptureRequest(CaptureAction.START, 4, name="mug", pose_source=PoseSource.ODOMETRY),
        "capture_progress": CaptureProgressMessage(
            4, "capturing", 3, 0, (1, 0, 2), ((0.0, 0.0, 1.0),), (0.1, 0.2, 1.0)
        ),
        "capture_saved": CaptureSaved(
            4, "0" * 32, "mug", "/captures/" + "0" * 32, (("mesh.glb", 10),), 8, 12, 3
        ),
    }
    for name, msg in messages.items():
        validate(parse_envelope(encode_message(msg)).header, name)
    depth = np.full((6, 8), 1500, np.uint16)
    k = CameraIntrinsics(8, 6, 5.0, 5.0, 3.5, 2.5)
    frame = RGBDFrame(2, np.zeros((6, 8, 3), np.uint8), depth, k, 1000.0, Pose.identity(), 1.5)
    validate(parse_envelope(encode_frame(frame, ImageCodec.PNG, DepthCodec.RDZ)).header, "frame")


def test_schema_and_engine_both_refuse_a_point_without_x() -> None:
    bad = {"v": 1, "type": "prompt", "prompt_id": 1, "frame_id": 1, "items": [{"type": "point", "y": 3}]}
    with pytest.raises(jsonschema.ValidationError):
        validate(bad, "prompt")
    with pytest.raises(ProtocolError):
        decode_message(json.dumps(bad))


def test_rdz_vectors_in_the_docs_decode_to_their_depth() -> None:
    v = json.loads((DOCS / "rdz_vectors.json").read_text())
    depth = np.array(v["depth"], np.uint16)
    h, w = v["height"], v["width"]
    for key in ("rdz_lz4_hex", "rdz_zstd_hex"):
        assert np.array_equal(rdz.decode_depth(bytes.fromhex(v[key]), h, w), depth)
    planes = bytes.fromhex(v["planes_hex"])
    biased = (np.frombuffer(planes[: h * w], np.uint8).astype(np.uint16) << 8) | np.frombuffer(
        planes[h * w :], np.uint8
    )
    assert np.array_equal(biased.reshape(h, w), np.array(v["residual_biased"], np.uint16))
    zstd_body = bytes.fromhex(v["rdz_zstd_hex"])[12:]
    import zstandard

    assert zstandard.ZstdDecompressor().decompress(zstd_body) == planes

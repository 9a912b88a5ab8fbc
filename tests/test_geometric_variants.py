"""The geometric registry entries: `geometric` refuses a frame without depth with a coded error that
names the way out, and `geometric-rgb` (the default for colour-only sources: a webcam) answers it;
`geometric-fast` is the default without its support-plane path."""

from __future__ import annotations

from dataclasses import replace

import pytest

from clients.sources.synthetic import (
    DepthDegradation,
    default_intrinsics,
    make_scene,
    orbit_poses,
    render_sequence,
)
from engine.config import EngineConfig
from engine.core import PointPrompt, Prompt
from engine.masks.metrics import mask_iou
from engine.protocol import ErrorCode, PromptMessage
from engine.server import Engine
from engine.tracking import interior_point
from models.registry import ModelSpec, build_model
from tests.session_inbox import offer, open_session


@pytest.fixture(scope="module")
def colour_only():
    scene = make_scene(3)
    (synth,) = render_sequence(
        scene, orbit_poses(scene, 1), default_intrinsics(320, 240), DepthDegradation(), seed=1
    )
    target = max(scene.object_ids, key=lambda o: synth.visible_mask(o).sum())
    return replace(synth.frame, depth=None), synth.visible_mask(target)


async def _prompt(model_name: str, frame, visible):
    async with Engine(EngineConfig(port=0), build_model(ModelSpec(model_name))) as engine:
        session, inbox = open_session(engine)
        offer(session, frame)
        x, y = interior_point(visible)
        session.submit(PromptMessage(Prompt(1, frame.frame_id, points=(PointPrompt(x, y),), want_3d=False)))
        return await inbox.wait_for(lambda m: getattr(m, "ref_id", None) == 1 or hasattr(m, "result"))


async def test_geometric_refuses_colour_only_frames_and_names_geometric_rgb(colour_only) -> None:
    error = await _prompt("geometric", *colour_only)
    assert error.code == ErrorCode.BAD_DEPTH and "geometric-rgb" in error.message


async def test_geometric_rgb_answers_colour_only_frames(colour_only) -> None:
    frame, visible = colour_only
    msg = await _prompt("geometric-rgb", frame, visible)
    result = msg.result
    assert result.segment is None
    assert max(mask_iou(c.mask.decode(), visible) for c in result.masks) > 0.5


def test_geometric_fast_is_the_default_without_its_support_plane_path() -> None:
    from models.geometric import GeometricConfig

    fast = build_model(ModelSpec("geometric-fast"))
    default = build_model(ModelSpec("geometric"))
    assert fast.needs_depth and fast.encoder.config == GeometricConfig(hybrid=False)
    assert default.encoder.config == replace(fast.encoder.config, hybrid=True)

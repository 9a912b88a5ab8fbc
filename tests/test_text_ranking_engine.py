"""Text prompts end to end: a real engine (geometric default + a CLIP checkpoint of the real
open_clip architecture with random weights) over a real WebSocket.

The expected rankings are computed here, independently of the engine's batched path: each
candidate's masked crop through `encode_image` one at a time, the phrase through `encode_text`
of a separately loaded copy of the checkpoint, then the formula of docs/protocol.md.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from clients.ws_client import EngineError, XrsegClient
from engine.config import EngineConfig
from engine.core import BoxPrompt, CameraIntrinsics, GazeSample, Pose, Prompt, RGBDFrame, SegmentationResult
from engine.core.results import StageTimestamps
from engine.everything import EverythingConfig
from engine.fusion.text import masked_crop
from engine.pipeline import Pipeline
from engine.protocol import ErrorCode, ImageCodec, Limits
from engine.server import Engine
from engine.transport.websocket import WebSocketTransport
from models.clip.text import ClipEncoder, load_clip
from models.interfaces import CheckpointError
from tests.clip_tiny import write_tiny_clip
from tests.conftest import TOKEN, LiveEngine

H, W = 240, 320
FX = 260.0
BLOCKS = {  # name: (x0, x1, y0, y1, depth m, colour)
    "red": (30, 90, 70, 150, 1.4, (200, 40, 30)),
    "green": (130, 190, 90, 170, 1.5, (40, 180, 60)),
    "blue": (230, 290, 60, 140, 1.6, (40, 60, 200)),
}


def blocks_frame() -> tuple[RGBDFrame, dict[str, np.ndarray]]:
    """A grey wall 2 m away with three coloured blocks in front: (frame, true masks by name)."""
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.full((H, W, 3), 150, np.uint8)
    depth = np.full((H, W), 2.0)
    truth = {}
    for name, (x0, x1, y0, y1, z, colour) in BLOCKS.items():
        block = (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)
        rgb[block], depth[block], truth[name] = colour, z, block
    depth_mm = np.round((depth + 0.002 * np.sin(xx / 3.0)) * 1000).astype(np.uint16)
    k = CameraIntrinsics(W, H, FX, FX, W / 2 - 0.5, H / 2 - 0.5)
    return RGBDFrame(1, rgb, depth_mm, k, 1000.0, Pose.identity(), 0.0), truth


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.fixture(scope="module")
def reference_clip(clip_folder: Path) -> ClipEncoder:
    return load_clip(clip_folder)


@pytest.fixture
async def text_engine(clip_folder: Path) -> AsyncIterator[LiveEngine]:
    config = EngineConfig(
        port=0,
        tokens=(TOKEN,),
        limits=Limits(max_message_bytes=1 << 20),
        clip_checkpoint=clip_folder,
        everything=EverythingConfig(points_per_side=16),
    )
    async with Engine(config) as engine:
        transport = WebSocketTransport(engine, "127.0.0.1", 0)
        await transport.start()
        try:
            yield LiveEngine(engine, transport)
        finally:
            await transport.stop()


def _angle_deg(point: tuple[float, float], mask: np.ndarray, k: CameraIntrinsics) -> float:
    """Smallest angle between the viewing ray of `point` and that of any mask pixel (0 inside)."""
    ys, xs = np.nonzero(mask)
    if mask[int(round(point[1])), int(round(point[0]))]:
        return 0.0
    rays = np.stack([(xs - k.cx) / k.fx, (ys - k.cy) / k.fy, np.ones(len(xs))], 1)
    g = np.array([(point[0] - k.cx) / k.fx, (point[1] - k.cy) / k.fy, 1.0])
    return math.degrees(float(np.arctan2(np.linalg.norm(np.cross(rays, g), axis=1), rays @ g).min()))


def expected_ranking(
    clip: ClipEncoder,
    frame: RGBDFrame,
    result: SegmentationResult,
    phrase: str,
    point: tuple[float, float] | None,
) -> dict[str, np.ndarray]:
    """The documented formula over the result's own masks and predicted IoUs, one crop at a time."""
    masks = [c.mask.decode() for c in result.masks]
    t = clip.encode_text([phrase])[0]
    sims = np.array([float(clip.encode_image(masked_crop(frame.rgb, m)) @ t) for m in masks])
    text = np.exp((sims - sims.max()) / 0.01)
    text /= text.sum()
    iou = np.clip([c.score for c in result.masks], 0, 1)
    score = 1.0 * text + 0.25 * iou
    out = {"similarity": sims, "text": text, "iou": iou}
    if point is not None:
        out["gaze"] = np.array(
            [math.exp(-(_angle_deg(point, m, frame.intrinsics) ** 2) / (2 * 1.5**2)) for m in masks]
        )
        score = score + 0.5 * out["gaze"]
    out["score"] = score
    return out


def assert_ranking_matches(result: SegmentationResult, want: dict[str, np.ndarray], with_gaze: bool) -> None:
    ranks = [c.ranking for c in result.masks]
    assert all(r is not None for r in ranks)
    got = {
        name: np.array([getattr(r, name) for r in ranks], np.float64)
        for name in ("score", "text", "similarity", "iou")
    }
    assert np.allclose(got["similarity"], want["similarity"], atol=1e-5)
    assert np.allclose(got["text"], want["text"], atol=1e-3) and np.allclose(
        got["iou"], want["iou"], atol=1e-6
    )
    assert np.allclose(got["score"], want["score"], atol=1e-3)
    if with_gaze:
        assert np.allclose([r.gaze for r in ranks], want["gaze"], atol=1e-9)
    else:
        assert all(r.gaze is None for r in ranks)
    # the ranking itself: the engine's order by score, read against the expected scores, never
    # goes up by more than the tolerance (so ties closer than that may swap, nothing else)
    order = np.argsort(-got["score"], kind="stable")
    assert np.all(np.diff(want["score"][order]) <= 2e-3)
    assert result.best == int(order[0]) and want["score"][result.best] >= want["score"].max() - 2e-3


async def test_text_alone_ranks_every_mask_of_the_frame(
    text_engine: LiveEngine, reference_clip: ClipEncoder
) -> None:
    frame, truth = blocks_frame()
    async with XrsegClient.connect(text_engine.url, TOKEN) as client:
        await client.send_frame(frame, ImageCodec.PNG)
        result = await client.prompt(Prompt(1, frame.frame_id, text="the red block"))
    # the candidates are exactly segment-everything's masks of this frame, in its order
    config = text_engine.engine.config
    pipeline = Pipeline(
        text_engine.engine.model, config.lift, config.mask_clean, config.mapping, config.everything
    )
    everything = pipeline.everything(frame, pipeline.keyframe_now(frame), 0, StageTimestamps()).result
    assert len(result.masks) == len(everything.masks) >= 3
    for got, want in zip(result.masks, everything.masks, strict=True):
        assert np.array_equal(got.mask.decode(), want.mask.decode()) and got.score == pytest.approx(
            want.score
        )
        assert got.granularity == "everything"
    for block in truth.values():  # every block is among them
        assert (
            max((c.mask.decode() & block).sum() / (c.mask.decode() | block).sum() for c in result.masks) > 0.9
        )
    assert_ranking_matches(
        result, expected_ranking(reference_clip, frame, result, "the red block", None), with_gaze=False
    )
    seg = result.segment  # only the best mask is lifted
    best = result.masks[result.best].mask.decode()
    z = frame.depth_m[best].mean()
    assert seg is not None and seg.status == "ok" and abs(seg.centroid[2] - z) < 0.05


async def test_a_glance_picks_the_looked_at_object_and_terms_combine(
    text_engine: LiveEngine, reference_clip: ClipEncoder
) -> None:
    frame, truth = blocks_frame()
    phrase = "the red block"
    async with XrsegClient.connect(text_engine.url, TOKEN) as client:
        await client.send_frame(frame, ImageCodec.PNG)
        alone = await client.prompt(Prompt(1, frame.frame_id, text=phrase))
        picked = alone.masks[alone.best].mask.decode()
        # look at a block the phrase alone did not pick: the glance decides
        name = next(n for n, b in truth.items() if (b & picked).sum() < 0.1 * b.sum())
        ys, xs = np.nonzero(truth[name])
        samples = tuple(
            GazeSample(0.01 * i, float(xs.mean()) + dx, float(ys.mean()) + dy, c)
            for i, (dx, dy, c) in enumerate([(-2, 1, 1.0), (1, -1, 0.8), (2, 2, 0.5), (0, -2, 0.9)])
        )
        glance = await client.prompt(Prompt(2, frame.frame_id, text=phrase, gaze=samples))
        # a box alone gets no gaze term; its candidates are ranked by text and IoU
        x0, x1, y0, y1 = BLOCKS["blue"][:4]
        boxed = await client.prompt(
            Prompt(3, frame.frame_id, text=phrase, box=BoxPrompt(x0 - 4, y0 - 4, x1 + 4, y1 + 4))
        )
    w = np.array([s.confidence for s in samples])
    gaze_xy = (
        float(np.dot(w, [s.x for s in samples]) / w.sum()),
        float(np.dot(w, [s.y for s in samples]) / w.sum()),
    )
    assert len(glance.masks) == 3 and {c.granularity for c in glance.masks} == {"part", "object", "region"}
    assert_ranking_matches(
        glance, expected_ranking(reference_clip, frame, glance, phrase, gaze_xy), with_gaze=True
    )
    best = glance.masks[glance.best].mask.decode()
    assert (best & truth[name]).sum() / (
        best | truth[name]
    ).sum() > 0.9  # the looked-at block, not the phrase's pick
    assert len(boxed.masks) == 3
    assert_ranking_matches(
        boxed, expected_ranking(reference_clip, frame, boxed, phrase, None), with_gaze=False
    )


async def test_without_clip_text_is_unsupported_and_names_the_flag(live_engine: LiveEngine) -> None:
    frame, _ = blocks_frame()
    async with XrsegClient.connect(live_engine.url, TOKEN) as client:
        await client.send_frame(frame, ImageCodec.PNG)
        with pytest.raises(EngineError) as info:
            await client.prompt(Prompt(1, frame.frame_id, text="the mug", gaze=(GazeSample(0, 50, 100),)))
        assert info.value.code == ErrorCode.UNSUPPORTED_PROMPT and "--clip-checkpoint" in info.value.message
        result = await client.prompt(
            Prompt(2, frame.frame_id, gaze=(GazeSample(0, 50, 100),))
        )  # the session goes on
    assert all(c.ranking is None for c in result.masks)


async def test_a_missing_clip_checkpoint_stops_the_engine_with_what_to_do(tmp_path: Path) -> None:
    engine = Engine(EngineConfig(port=0, clip_checkpoint=tmp_path / "no-such-clip"))
    with pytest.raises(CheckpointError, match=r"no-such-clip not found: download"):
        await engine.start()

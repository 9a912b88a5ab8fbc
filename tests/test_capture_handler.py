"""The session-facing capture handler end to end: messages, the store, COCO export, HTTP download."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pycocotools.coco import COCO

from clients.sources.synthetic import default_intrinsics
from engine.capture.config import CaptureConfig, CaptureError, CaptureStateError
from engine.capture.dataset import export_coco
from engine.capture.handler import CaptureHandler
from engine.capture.http import add_capture_routes
from engine.capture.mesh import CaptureMesh
from engine.capture.store import CaptureStore
from engine.config import EngineConfig
from engine.protocol import ErrorCode, decode_message, encode_message
from engine.protocol.capture import (
    CaptureAction,
    CaptureProgressMessage,
    CaptureRequest,
    CaptureSaved,
    PoseSource,
)
from engine.server import Engine
from engine.session.wire import error_message
from tests.capture_scenes import capture_sequence

TOKEN = "capture-token"


@pytest.fixture(scope="module")
def orbit():
    return capture_sequence(seed=1, n=16)


@pytest.fixture
def executor():
    with ThreadPoolExecutor(2) as pool:
        yield pool


def _wire(msg):
    """Every reply goes through the real codec, as a transport would send it."""
    return decode_message(encode_message(msg))


async def _captured(handler: CaptureHandler, orbit, pid: int = 5, name: str = "red box") -> tuple[list, CaptureSaved]:
    _, oid, frames = orbit
    replies = await handler.request(CaptureRequest(CaptureAction.START, pid, name), tracked=True)
    for f in frames:
        replies += await handler.on_tracked_frame(pid, f.frame, f.visible_mask(oid))
    saved = await handler.request(CaptureRequest(CaptureAction.STOP, pid), tracked=True)
    assert len(saved) == 1 and isinstance(saved[0], CaptureSaved)
    return [_wire(r) for r in replies], _wire(saved[0])


async def test_start_frames_stop_gives_progress_and_a_stored_capture(tmp_path: Path, executor, orbit) -> None:
    store = CaptureStore(tmp_path)
    handler = CaptureHandler(executor, store, CaptureConfig(progress_every=4))
    replies, saved = await _captured(handler, orbit)
    assert all(isinstance(r, CaptureProgressMessage) for r in replies)
    assert replies[0].state == "capturing" and replies[0].frames_integrated == 0
    previews = replies[1:]
    assert [r.frames_integrated for r in previews] == [4, 8, 12, 16]
    assert all(0 < len(r.points) <= 4096 and r.colors.shape == r.points.shape for r in previews)
    assert sum(previews[-1].coverage) == 16 and len(previews[-1].missing) == 20 - np.count_nonzero(previews[-1].coverage)
    assert saved.prompt_id == 5 and saved.name == "red box" and saved.frames == 16 and saved.triangles > 100
    names = {n for n, _ in saved.files}
    assert {"mesh.ply", "mesh.obj", "mesh.glb", "view0.png", "view1.png", "view2.png", "frames.json"} <= names
    assert {f"frame_{i:05d}.jpg" for i in range(16)} <= names and {f"mask_{i:05d}.png" for i in range(16)} <= names
    assert saved.url == f"/captures/{saved.capture_id}"
    assert CaptureStore(tmp_path).get(saved.capture_id).meta["frames_integrated"] == 16
    assert CaptureStore(tmp_path).verify(saved.capture_id) == []
    mesh = CaptureMesh.decode(store.read(saved.capture_id, "mesh.glb"), "glb")
    assert len(mesh.triangles) == saved.triangles
    assert handler.capturing == ()


async def test_capture_errors_are_coded_and_the_capture_keeps_going(tmp_path: Path, executor, orbit) -> None:
    _, oid, frames = orbit
    handler = CaptureHandler(executor, CaptureStore(tmp_path), CaptureConfig(progress_every=100))
    with pytest.raises(CaptureStateError, match="not a tracked object") as untracked:
        await handler.request(CaptureRequest(CaptureAction.START, 9), tracked=False)
    assert error_message(untracked.value, 9).code is ErrorCode.CAPTURE_FAILED
    with pytest.raises(CaptureStateError, match="send action 'start' first"):
        await handler.request(CaptureRequest(CaptureAction.STOP, 9), tracked=True)
    assert await handler.on_tracked_frame(9, frames[0].frame, frames[0].visible_mask(oid)) == []  # not captured
    await handler.request(CaptureRequest(CaptureAction.START, 9), tracked=True)
    with pytest.raises(CaptureStateError, match="already being captured"):
        await handler.request(CaptureRequest(CaptureAction.START, 9), tracked=True)
    no_pose = [replace(f.frame, pose=None) for f in frames[:3]]
    errors = [r for f in no_pose for r in await handler.on_tracked_frame(9, f, frames[0].visible_mask(oid))]
    assert len(errors) == 1 and isinstance(errors[0], CaptureError) and errors[0].ref_id == 9
    coded = error_message(errors[0])
    assert coded.code is ErrorCode.NO_POSE and "odometry" in coded.message and coded.ref_id == 9
    for f in frames[:4]:
        await handler.on_tracked_frame(9, f.frame, f.visible_mask(oid))
    status = await handler.request(CaptureRequest(CaptureAction.STATUS, 9), tracked=True)
    assert status[0].frames_integrated == 4 and len(status[0].points) > 0
    cancelled = await handler.request(CaptureRequest(CaptureAction.CANCEL, 9), tracked=True)
    assert cancelled[0].state == "cancelled" and handler.capturing == ()
    assert CaptureStore(tmp_path).list() == []  # a cancelled capture stores nothing
    # stop with nothing integrated: a clear domain error, nothing stored
    await handler.request(CaptureRequest(CaptureAction.START, 10), tracked=True)
    with pytest.raises(CaptureError, match="no frame was integrated"):
        await handler.request(CaptureRequest(CaptureAction.STOP, 10), tracked=True)
    assert handler.capturing == ()


async def test_odometry_pose_source_captures_frames_without_poses(tmp_path: Path, executor, orbit) -> None:
    """The first frame anchors the world frame (its pose, when given); odometry chains the rest."""
    _, oid, frames = orbit
    small_steps = capture_sequence(seed=1, n=128, intrinsics=default_intrinsics(320, 240, 262.5, 262.5), count=8)[2]
    handler = CaptureHandler(executor, CaptureStore(tmp_path), CaptureConfig(progress_every=100))
    await handler.request(CaptureRequest(CaptureAction.START, 3, pose_source=PoseSource.ODOMETRY), tracked=True)
    for i, f in enumerate(small_steps):
        frame = f.frame if i == 0 else replace(f.frame, pose=None)
        assert await handler.on_tracked_frame(3, frame, f.visible_mask(oid)) == []
    saved = await handler.request(CaptureRequest(CaptureAction.STOP, 3), tracked=True)
    poses = json.loads(CaptureStore(tmp_path).read(saved[0].capture_id, "frames.json"))
    drift = [np.linalg.norm(np.reshape(p["pose"], (4, 4))[:3, 3] - f.frame.pose.translation) for p, f in zip(poses, small_steps, strict=True)]
    assert len(poses) == 8 and max(drift) < 0.01, drift  # 2.8 degrees (3.4 cm) per step


async def test_stored_capture_exports_as_a_coco_dataset(tmp_path: Path, executor, orbit) -> None:
    _, oid, frames = orbit
    store = CaptureStore(tmp_path / "store")
    _, saved = await _captured(CaptureHandler(executor, store, CaptureConfig(mask_erode_px=0)), orbit)
    path = export_coco(store, saved.capture_id, tmp_path / "coco", category="box")
    coco = COCO(str(path))
    assert len(coco.getImgIds()) == 16 and coco.loadCats(1)[0]["name"] == "box"
    for i, image_id in enumerate(sorted(coco.getImgIds())):
        image = coco.loadImgs(image_id)[0]
        assert (tmp_path / "coco" / "images" / image["file_name"]).is_file()
        assert np.allclose(np.reshape(image["pose"], (4, 4)), frames[i].frame.pose.matrix)
        (ann,) = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert np.array_equal(coco.annToMask(ann).astype(bool), frames[i].visible_mask(oid))
        assert ann["area"] == frames[i].visible_mask(oid).sum()


async def test_http_lists_and_serves_captures_behind_the_token(tmp_path: Path, executor, orbit) -> None:
    store = CaptureStore(tmp_path)
    _, saved = await _captured(CaptureHandler(executor, store), orbit, name="../../etc/passwd")
    app = web.Application()
    engine = Engine(EngineConfig(port=0, tokens=(TOKEN,), capture_dir=tmp_path, warm_up=False))
    add_capture_routes(app, engine)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with TestClient(TestServer(app)) as client:
        for url in ("/captures", f"/captures/{saved.capture_id}", f"/captures/{saved.capture_id}/files/mesh.ply"):
            assert (await client.get(url)).status == 401
            assert (await client.get(url, headers={"Authorization": "Bearer wrong"})).status == 401
        listing = await (await client.get("/captures", headers=auth)).json()
        assert [c["capture_id"] for c in listing["captures"]] == [saved.capture_id]
        assert listing["captures"][0]["name"] == "etc_passwd"
        response = await client.get(f"/captures/{saved.capture_id}/files/mesh.glb", headers=auth)
        assert response.status == 200 and response.headers["Content-Type"] == "model/gltf-binary"
        assert await response.read() == store.read(saved.capture_id, "mesh.glb")
        assert 'filename="etc_passwd_mesh.glb"' in response.headers["Content-Disposition"]
        (tmp_path / "secret.txt").write_text("secret")
        for bad in (
            f"/captures/{saved.capture_id}/files/..%2F..%2Fsecret.txt",
            f"/captures/{saved.capture_id}/files/%2E%2E",
            "/captures/..%2F..%2F/files/secret.txt",
            f"/captures/{saved.capture_id}/files/..%5Csecret.txt",
            f"/captures/{saved.capture_id}/files/index.sqlite",
            f"/captures/{'0' * 32}/files/mesh.ply",
            f"/captures/{saved.capture_id}/files/../../secret.txt",
        ):
            response = await client.get(bad, headers=auth)
            assert response.status == 404, bad
            assert b"secret" != await response.read()

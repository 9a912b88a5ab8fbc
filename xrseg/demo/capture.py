"""`xrseg demo --capture`: track one object over a real WebSocket, fuse it into a mesh, save it.

The user's part is scripted: select the object once (a box and a click on the first frame, a
tracked prompt), then walk around it. The engine tracks the object on every frame (kind "track"
results), and each tracked mask is fused with its frame's pose by engine/capture (ObjectCapture):
TSDF, mesh, previews, the capture store and its COCO export.

Interim wiring: until the session's capture handler is wired into the protocol, the fusion runs
here, in the demo process, on the masks the engine streamed back; the result is the same objects
the `capture` messages will produce (engine/capture/handler.py).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from clients.ws_client import XrsegClient
from engine.capture.config import CaptureConfig
from engine.capture.dataset import DatasetFrame, dataset_files, export_coco
from engine.capture.mesh import MESH_FORMATS, CaptureMesh
from engine.capture.render import render_previews
from engine.capture.store import CaptureStore
from engine.capture.volume import CaptureProgress, ObjectCapture
from engine.config import EngineConfig
from engine.core import BoxPrompt, PointPrompt, Prompt, RGBDFrame
from engine.protocol import ImageCodec, ResultKind
from engine.server import Engine
from engine.transport.websocket import WebSocketTransport

# The chair of Redwood livingroom1, frame 0: a box around it and a click on its back cushion.
LIVINGROOM1_CHAIR = (BoxPrompt(330.0, 100.0, 620.0, 385.0), PointPrompt(430.0, 180.0))


@dataclass(frozen=True, eq=False)
class TrackedFrames:
    """frames[i] with the engine's tracked mask masks[i] ((H, W) bool; empty when lost)."""

    frames: list[RGBDFrame]
    masks: list[np.ndarray]
    track_ms: list[float]


async def track_object(
    frames: list[RGBDFrame], box: BoxPrompt | None, point: PointPrompt, engine_config: EngineConfig
) -> TrackedFrames:
    """Select the object on frames[0] with a tracked prompt, stream the rest, collect every tracked mask."""
    token = secrets.token_urlsafe(12)
    masks: list[np.ndarray] = []
    track_ms: list[float] = []
    async with Engine(replace(engine_config, tokens=(token,))) as engine:
        transport = WebSocketTransport(engine, "127.0.0.1", 0)
        await transport.start()
        try:
            async with XrsegClient.connect(transport.url, token, "xrseg-demo-capture") as client:
                await client.send_frame(frames[0], ImageCodec.PNG)
                first = await asyncio.wait_for(
                    client.prompt_nowait(Prompt(1, frames[0].frame_id, points=(point,), box=box), track=True), 120
                )
                masks.append(first.result.masks[first.result.best].mask.decode())
                for frame in frames[1:]:
                    t0 = time.perf_counter()
                    await client.send_frame(frame, ImageCodec.PNG)
                    update = await client.next_result(timeout=120)
                    while update.kind is not ResultKind.TRACK or update.result.frame_id != frame.frame_id:
                        update = await client.next_result(timeout=120)
                    track_ms.append((time.perf_counter() - t0) * 1e3)
                    masks.append(update.result.masks[0].mask.decode())
                await client.cancel(1)
        finally:
            await transport.stop()
    return TrackedFrames(frames, masks, track_ms)


def fuse(tracked: TrackedFrames, config: CaptureConfig) -> tuple[CaptureMesh, list[CaptureProgress], list[DatasetFrame]]:
    """Integrate every tracked mask with its frame's pose; the mesh, per-frame progress, dataset frames."""
    capture = ObjectCapture(config)
    capture.start()
    progress, dataset = [], []
    for frame, mask in zip(tracked.frames, tracked.masks, strict=True):
        p = capture.add(frame, mask)
        progress.append(p)
        if p.integrated and len(dataset) < config.dataset_max_frames and frame.pose is not None:
            dataset.append(DatasetFrame.of(len(dataset), frame, mask, frame.pose.matrix))
    return capture.stop(), progress, dataset


def write_capture(out: Path, tracked: TrackedFrames, config: CaptureConfig, name: str, source: str) -> dict:
    """Fuse, then write mesh files, previews, a mask contact sheet, the store entry and its COCO export."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    mesh, progress, dataset = fuse(tracked, config)
    fuse_s = time.perf_counter() - t0
    files = {f"mesh.{fmt}": mesh.encode(fmt) for fmt in MESH_FORMATS}
    up = np.mean([-f.pose.rotation[:, 1] for f in tracked.frames if f.pose is not None], axis=0)
    previews = render_previews(mesh, up, config.preview_image_px)
    for image in previews:
        files[f"{image.name}.png"] = image.png()
    for file_name, data in files.items():
        (out / file_name).write_bytes(data)
    _mask_sheet(out / "tracked_masks.png", tracked)
    store = CaptureStore(out / "store")
    stored = store.save(name, {**files, **dataset_files(dataset)}, {"frames_integrated": progress[-1].frames_integrated})
    export_coco(store, stored.capture_id, out / "coco", category=name)
    integrate_ms = [p.integrate_ms for p in progress if p.integrated]
    last = progress[-1]
    summary = {
        "sequence": source,
        "object": name,
        "frames": len(tracked.frames),
        "frames_integrated": last.frames_integrated,
        "frames_skipped": last.frames_skipped,
        "vertices": int(len(mesh.vertices)),
        "triangles": int(len(mesh.triangles)),
        "extent_m": [round(float(v), 3) for v in np.ptp(mesh.vertices, axis=0)],
        "coverage_bins_seen": int(last.coverage.seen.sum()),
        "coverage_bins": int(len(last.coverage.counts)),
        "integrate_ms_p50": round(float(np.percentile(integrate_ms, 50)), 2) if integrate_ms else None,
        "integrate_ms_p95": round(float(np.percentile(integrate_ms, 95)), 2) if integrate_ms else None,
        "track_ms_p50": round(float(np.percentile(tracked.track_ms, 50)), 1) if tracked.track_ms else None,
        "fuse_and_mesh_s": round(fuse_s, 2),
        "capture_id": stored.capture_id,
        "files": sorted(files),
        "coco": str(out / "coco" / "annotations.json"),
        "voxel_size": config.voxel_size,
    }
    (out / "capture.json").write_text(json.dumps(summary, indent=2))
    return summary


def _mask_sheet(path: Path, tracked: TrackedFrames, n: int = 8) -> None:
    """n evenly spaced frames with their tracked mask tinted, in one image (a check that tracking held)."""
    picks = np.linspace(0, len(tracked.frames) - 1, min(n, len(tracked.frames))).astype(int)
    tiles = []
    for i in picks:
        bgr = cv2.cvtColor(tracked.frames[i].rgb, cv2.COLOR_RGB2BGR)
        m = tracked.masks[i]
        bgr[m] = (0.45 * bgr[m] + 0.55 * np.array([40, 80, 255])).astype(np.uint8)
        cv2.putText(bgr, f"frame {tracked.frames[i].frame_id}", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2)
        tiles.append(cv2.resize(bgr, (320, 240)))
    while len(tiles) % 4:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[r : r + 4]) for r in range(0, len(tiles), 4)]
    cv2.imwrite(str(path), np.vstack(rows))


async def run_capture_demo(
    out: Path,
    sequence: Path | None,
    max_frames: int | None,
    engine_config: EngineConfig,
    config: CaptureConfig | None = None,
    synthetic: bool = False,
) -> dict:
    """The livingroom1 chair (or, with `synthetic` or without the shared data, a box of a synthetic orbit)."""
    from xrseg.demo.run import SHARED_SEQUENCE

    path = sequence or (SHARED_SEQUENCE if SHARED_SEQUENCE.is_dir() and not synthetic else None)
    config = config or CaptureConfig(voxel_size=0.01)
    if path is not None:
        from clients.sources.folder import open_sequence

        seq = open_sequence(path)
        n = len(seq) if max_frames is None else min(len(seq), max_frames)
        frames = [seq[i] for i in range(n)]
        box, point = LIVINGROOM1_CHAIR if path.name.startswith("livingroom1") else (None, _centre(frames[0]))
        name = "chair" if path.name.startswith("livingroom1") else path.name
    else:
        frames, box, point, name = await asyncio.to_thread(_synthetic_orbit, max_frames or 60)
    tracked = await track_object(frames, box, point, engine_config)
    source = str(path) if path is not None else "synthetic"
    return await asyncio.to_thread(write_capture, out / "capture", tracked, config, name, source)


def _centre(frame: RGBDFrame) -> PointPrompt:
    return PointPrompt(frame.intrinsics.width / 2, frame.intrinsics.height / 2)


def _synthetic_orbit(n: int) -> tuple[list[RGBDFrame], BoxPrompt, PointPrompt, str]:
    """A camera circling a box on the floor of a generated room, and the prompt selecting it."""
    from clients.sources.synthetic import (
        DepthDegradation,
        SceneRenderer,
        default_intrinsics,
        look_at_pose,
        make_scene,
    )
    from engine.tracking import interior_point

    scene = make_scene(1, n_objects=3, with_table=False)
    oid = next(o for o in scene.object_ids if scene.objects[o].kind == "box")
    c = scene.objects[oid].center
    renderer = SceneRenderer(scene)
    rendered = [
        renderer.render(default_intrinsics(), look_at_pose(c + np.array([0.8 * np.cos(a), 0.8 * np.sin(a), 0.5]), c),
                        DepthDegradation(), seed=i, frame_id=i)
        for i, a in enumerate(np.linspace(0, 2 * np.pi, n, endpoint=False))
    ]
    visible = rendered[0].visible_mask(oid)
    ys, xs = np.nonzero(visible)
    x, y = interior_point(visible)
    box = BoxPrompt(float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
    return [r.frame for r in rendered], box, PointPrompt(x, y), "box"

"""3D object capture: mesh accuracy against exact ground truth, integration cost, a real sequence.

    python -m bench.capture [--frames 120] [--objects 3] [--quick]

Synthetic part (clients/sources/synthetic.py, Kinect-like noise, holes, flying pixels, mm depth):
for each object (a box, a cylinder, a sphere/cone/torus, each resting on the floor of its own
generated room, with other objects around) a camera circles it once at 640x480, 35 degrees above
it, looking at it. The capture of N frames (N = 30 / 60 / 120, each spanning the full circle:
every 4th / 2nd / each frame of the 120-frame orbit) is fused with
  * ground-truth masks (the ray caster's visible mask): fusion errors alone;
  * the default model's masks: the geometric model tracking the object over a real WebSocket
    (engine tracking, one tracked prompt with a box + click on the first frame) on the 120-frame
    orbit; the 60 / 30-frame captures use every 2nd / 4th of those masks.
Metrics (meshes sampled uniformly, 20k points each):
  * precision@1cm: share of captured-surface samples within 1 cm of the true object mesh;
  * recall@1cm: share of the true surface samples within 1 cm of the captured mesh, over the
    *observed* true surface (samples some camera of the orbit sees, unoccluded; the face on the
    floor is never seen) and, for reference, over the whole true mesh;
  * F-score@1cm = 2PR / (P + R); Chamfer distance = (mean d(captured->true) + mean d(true->captured)) / 2.
Cost: ObjectCapture.add per frame at 640x480 (mask filtering, block allocation, integration,
centroid and preview sampling) p50/p95 over every integrated frame; voxel memory (blocks x 512
voxels x 20 bytes) and the process's peak RSS; RGB-D odometry per 640x480 frame.
Real part: the chair of livingroom1_micro (tracked as in `xrseg demo --capture`): mesh + previews.
Writes bench/results/capture.json, capture.png and bench/results/capture_chair/*.png.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import subprocess
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import open3d as o3d
import trimesh

from bench.common import RESULTS, machine, percentiles, write_json
from clients.sources.synthetic import (
    DepthDegradation,
    SceneRenderer,
    SyntheticFrame,
    SyntheticScene,
    default_intrinsics,
    look_at_pose,
    make_scene,
)
from engine.capture.config import CaptureConfig
from engine.capture.mesh import CaptureMesh
from engine.capture.render import render_previews
from engine.capture.volume import ObjectCapture
from engine.config import EngineConfig
from engine.core import BoxPrompt, PointPrompt
from engine.tracking import interior_point
from xrseg.demo.capture import TrackedFrames, track_object

log = logging.getLogger("bench.capture")

# (seed, kind) of each synthetic object: one room per object, the object on the floor.
OBJECTS = ((1, "box"), (7, "cylinder"), (3, ("sphere", "cone", "torus")), (11, "box"), (2, "cylinder"))
SAMPLES = 20_000
TAU = 0.01


def pick_object(seed: int, kinds) -> tuple[SyntheticScene, int]:
    kinds = (kinds,) if isinstance(kinds, str) else kinds
    for s in range(seed, seed + 50):
        scene = make_scene(s, n_objects=4, with_table=False)
        for o in scene.object_ids:
            obj = scene.objects[o]
            if obj.kind in kinds and obj.support_id == 0 and float(np.ptp(obj.vertices[:, 2])) > 0.08:
                return scene, o
    raise SystemExit(f"no scene from seed {seed} has a {kinds} on the floor")


def orbit(scene: SyntheticScene, oid: int, n: int) -> list[SyntheticFrame]:
    obj = scene.objects[oid]
    c = obj.center
    size = float(np.linalg.norm(np.ptp(obj.vertices, axis=0)))
    dist = max(0.55, 2.2 * size)
    el = np.deg2rad(35.0)
    renderer = SceneRenderer(scene)
    k = default_intrinsics()
    frames = []
    for i, a in enumerate(np.linspace(0, 2 * np.pi, n, endpoint=False)):
        eye = c + dist * np.array([np.cos(el) * np.cos(a), np.cos(el) * np.sin(a), np.sin(el)])
        frames.append(renderer.render(k, look_at_pose(eye, c), DepthDegradation(), seed=1000 + i, frame_id=i))
    return frames


def observed_samples(scene: SyntheticScene, oid: int, frames: list[SyntheticFrame], samples: np.ndarray) -> np.ndarray:
    """(N,) bool: which true-surface samples some camera of the orbit sees unoccluded."""
    rc = o3d.t.geometry.RaycastingScene()
    gids = [rc.add_triangles(o3d.core.Tensor(o.vertices), o3d.core.Tensor(o.triangles.astype(np.uint32))) for o in scene.objects]
    seen = np.zeros(len(samples), bool)
    for f in frames:
        eye = f.frame.pose.translation
        d = samples - eye
        dist = np.linalg.norm(d, axis=1)
        rays = np.concatenate([np.broadcast_to(eye, d.shape), d / dist[:, None]], axis=1).astype(np.float32)
        hit = rc.cast_rays(o3d.core.Tensor(rays))
        t, g = hit["t_hit"].numpy(), hit["geometry_ids"].numpy()
        cam = (f.frame.pose.inverse().transform(samples))
        k = f.frame.intrinsics
        u, v = cam[:, 0] / cam[:, 2] * k.fx + k.cx, cam[:, 1] / cam[:, 2] * k.fy + k.cy
        in_view = (cam[:, 2] > 0) & (u >= 0) & (u < k.width) & (v >= 0) & (v < k.height)
        seen |= in_view & (g == gids[oid]) & (np.abs(t - dist) < 0.003)
    return seen


def distance_to(vertices: np.ndarray, triangles: np.ndarray, points: np.ndarray) -> np.ndarray:
    rc = o3d.t.geometry.RaycastingScene()
    rc.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(triangles.astype(np.uint32)))
    return rc.compute_distance(o3d.core.Tensor(points.astype(np.float32))).numpy()


def mesh_metrics(mesh: CaptureMesh | None, true_v, true_t, true_samples, observed) -> dict:
    if mesh is None or mesh.is_empty:
        return {"precision": 0.0, "recall": 0.0, "fscore": 0.0, "recall_full": 0.0, "fscore_full": 0.0, "chamfer_mm": None}
    pred, _ = trimesh.sample.sample_surface(trimesh.Trimesh(mesh.vertices, mesh.triangles, process=False), SAMPLES, seed=0)
    d_pred = distance_to(true_v, true_t, pred)
    d_true = distance_to(mesh.vertices, mesh.triangles, true_samples)
    p = float(np.mean(d_pred < TAU))
    r = float(np.mean(d_true[observed] < TAU))
    r_full = float(np.mean(d_true < TAU))

    def f(a: float, b: float) -> float:
        return 2 * a * b / (a + b) if a + b > 0 else 0.0

    chamfer = (float(d_pred.mean()) + float(d_true[observed].mean())) / 2
    return {
        "precision": round(p, 4), "recall": round(r, 4), "fscore": round(f(p, r), 4),
        "recall_full": round(r_full, 4), "fscore_full": round(f(p, r_full), 4), "chamfer_mm": round(chamfer * 1000, 2),
    }


def capture(frames, masks, config: CaptureConfig) -> tuple[CaptureMesh | None, list[float], int]:
    cap = ObjectCapture(config)
    cap.start()
    times = []
    for frame, mask in zip(frames, masks, strict=True):
        p = cap.add(frame, mask, want_preview=False)
        if p.integrated:
            times.append(p.integrate_ms)
    blocks = cap.status().blocks
    try:
        return cap.stop(), times, blocks
    except Exception as exc:  # noqa: BLE001 - an empty capture is a result (F = 0), reported
        log.warning("capture failed: %s", exc)
        return None, times, blocks


def select_prompt(frame: SyntheticFrame, oid: int) -> tuple[BoxPrompt, PointPrompt]:
    visible = frame.visible_mask(oid) & (frame.frame.depth_m > 0)
    ys, xs = np.nonzero(visible)
    x, y = interior_point(visible)
    return BoxPrompt(float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())), PointPrompt(x, y)


def odometry_cost(n: int = 12) -> dict:
    from engine.capture.odometry import OdometryPoses
    from xrseg.demo.run import SHARED_SEQUENCE

    if not SHARED_SEQUENCE.is_dir():
        return {"note": "no shared data"}
    from clients.sources.folder import open_sequence

    seq = open_sequence(SHARED_SEQUENCE)
    od = OdometryPoses()
    ms, drift = [], []
    for i in range(0, 2 * n, 2):
        f = seq[i]
        t0 = time.perf_counter()
        pose = od.next(f if i == 0 else replace(f, pose=None))
        ms.append((time.perf_counter() - t0) * 1e3)
        drift.append(float(np.linalg.norm(pose.translation - f.pose.translation)))
    return {"odometry_ms": percentiles(ms[1:]), "drift_m_after": round(drift[-1], 4), "steps": n - 1,
            "note": "photometric multi-scale RGB-D odometry, every 2nd frame of livingroom1_micro, 640x480"}


def chair(out: Path, max_frames: int | None) -> dict:
    from clients.sources.folder import open_sequence
    from xrseg.demo.capture import LIVINGROOM1_CHAIR, fuse
    from xrseg.demo.run import SHARED_SEQUENCE

    if not SHARED_SEQUENCE.is_dir():
        return {"note": "no shared data"}
    seq = open_sequence(SHARED_SEQUENCE)
    frames = [seq[i] for i in range(len(seq) if max_frames is None else min(len(seq), max_frames))]
    tracked = asyncio.run(track_object(frames, *LIVINGROOM1_CHAIR, EngineConfig(port=0)))
    config = CaptureConfig(voxel_size=0.01)
    mesh, progress, _ = fuse(tracked, config)
    up = np.mean([-f.pose.rotation[:, 1] for f in frames], axis=0)
    out.mkdir(parents=True, exist_ok=True)
    for image in render_previews(mesh, up, 400):
        (out / f"{image.name}.png").write_bytes(image.png())
    (out / "mesh.glb").write_bytes(mesh.encode("glb"))
    return {
        "frames": len(frames), "frames_integrated": progress[-1].frames_integrated,
        "vertices": int(len(mesh.vertices)), "triangles": int(len(mesh.triangles)),
        "extent_m": [round(float(v), 3) for v in np.ptp(mesh.vertices, axis=0)],
        "integrate_ms": percentiles([p.integrate_ms for p in progress if p.integrated]),
        "track_ms": percentiles(tracked.track_ms), "voxel_size": config.voxel_size,
        "files": sorted(p.name for p in out.iterdir()),
    }


def timing(n: int, runs: int = 3) -> dict:
    """ObjectCapture.add per 640x480 frame, `runs` times over the same orbit (true masks): a range."""
    scene, oid = pick_object(*OBJECTS[0])
    frames = orbit(scene, oid, n)
    masks = [f.visible_mask(oid) for f in frames]
    per_run = []
    for _ in range(runs):
        load = os.getloadavg()[0]
        _, ms, _ = capture([f.frame for f in frames], masks, CaptureConfig())
        per_run.append({**percentiles(ms), "loadavg_1min": round(load, 2)})
    px = [int(m.sum()) for m in masks]
    summary = {
        "bench": "capture_timing",
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "machine": machine(),
        "object": f"{scene.objects[oid].kind} (seed {scene.seed})",
        "mask_px": {"median": int(np.median(px)), "max": int(max(px))},
        "runs": per_run,
        "note": "ObjectCapture.add: mask filtering, block allocation, TSDF integration, centroid + preview sampling; "
        "2 shared CPU cores: upper bounds",
    }
    write_json("capture_timing.json", summary)
    log.info("integration per run: %s", per_run)
    return summary


def plot(results: list[dict], integrate_ms: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for r in results:
        for masks, style in (("truth", "-"), ("model", "--")):
            xs = sorted(int(n) for n in r[masks])
            axes[0].plot(xs, [r[masks][str(n)]["fscore"] for n in xs], style, marker="o", label=f"{r['name']} ({masks} masks)")
            axes[1].plot(xs, [r[masks][str(n)]["chamfer_mm"] or np.nan for n in xs], style, marker="o")
    axes[0].axhline(0.8, color="k", lw=0.8, ls=":")
    axes[0].set(xlabel="frames fused (one circle)", ylabel="F-score @ 1 cm", ylim=(0, 1.02), title="Captured mesh vs true mesh")
    axes[0].legend(fontsize=7)
    axes[1].set(xlabel="frames fused", ylabel="Chamfer distance (mm)", title="Chamfer (lower is better)")
    axes[2].hist(integrate_ms, bins=40)
    axes[2].axvline(np.percentile(integrate_ms, 95), color="r", ls="--", label="p95")
    axes[2].set(xlabel="ms per 640x480 frame", ylabel="frames", title="ObjectCapture.add (CPU)")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=120, help="frames of the full orbit (subsets use every 2nd / 4th)")
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="short run: 24-frame orbits, no chair, no odometry")
    parser.add_argument("--timing", action="store_true", help="only the integration cost: 3 runs over one 120-frame orbit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.timing:
        return timing(args.frames)
    load_before = os.getloadavg()
    n_full = 24 if args.quick else args.frames
    counts = [n_full // 4, n_full // 2, n_full]
    config = CaptureConfig()
    results, all_ms, blocks_max = [], [], 0
    for seed, kinds in OBJECTS[: args.objects]:
        scene, oid = pick_object(seed, kinds)
        obj = scene.objects[oid]
        t0 = time.perf_counter()
        frames = orbit(scene, oid, n_full)
        render_s = time.perf_counter() - t0
        true_samples, _ = trimesh.sample.sample_surface(trimesh.Trimesh(obj.vertices, obj.triangles, process=False), SAMPLES, seed=1)
        observed = observed_samples(scene, oid, frames, true_samples)
        truth_masks = [f.visible_mask(oid) for f in frames]
        t0 = time.perf_counter()
        tracked: TrackedFrames = asyncio.run(track_object([f.frame for f in frames], *select_prompt(frames[0], oid), EngineConfig(port=0)))
        track_s = time.perf_counter() - t0
        from engine.masks.metrics import mask_iou

        ious = [mask_iou(m, t) for m, t in zip(tracked.masks, truth_masks, strict=True)]
        entry = {"name": f"{obj.kind} (seed {scene.seed})", "kind": obj.kind, "size_m": [round(float(v), 3) for v in np.ptp(obj.vertices, 0)],
                 "observed_fraction": round(float(observed.mean()), 3), "tracked_mask_iou_mean": round(float(np.mean(ious)), 3),
                 "tracked_mask_iou_min": round(float(np.min(ious)), 3), "render_s": round(render_s, 1), "track_s": round(track_s, 1),
                 "truth": {}, "model": {}}
        for n in counts:
            step = n_full // n
            for label, masks in (("truth", truth_masks), ("model", tracked.masks)):
                mesh, ms, blocks = capture([f.frame for f in frames[::step]], masks[::step], config)
                if label == "truth" and n == n_full:
                    all_ms += ms
                blocks_max = max(blocks_max, blocks)
                entry[label][str(n)] = {**mesh_metrics(mesh, obj.vertices, obj.triangles, true_samples, observed),
                                        "triangles": 0 if mesh is None else int(len(mesh.triangles)), "blocks": blocks}
                log.info("%s %s masks, %d frames: %s", entry["name"], label, n, entry[label][str(n)])
        results.append(entry)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    bytes_per_block = config.block_resolution**3 * (4 + 4 + 12)
    summary = {
        "bench": "capture",
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "machine": machine(),
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "note": "2 CPU cores shared with other agents: times are upper bounds",
        "config": asdict(config),
        "frame_counts": counts,
        "objects": results,
        "acceptance_fscore_model_60": {
            r["name"]: r["model"][str(counts[1])]["fscore"] for r in results
        },
        "integrate_ms_640x480": percentiles(all_ms),
        "voxel_memory_mb_max": round(blocks_max * bytes_per_block / 2**20, 2),
        "peak_rss_mb": round(peak_rss_mb, 1),
    }
    if not args.quick:
        summary["odometry"] = odometry_cost()
        summary["chair"] = chair(RESULTS / "capture_chair", None)
    write_json("capture.json", summary)
    plot(results, all_ms, RESULTS / "capture.png")
    log.info("integrate p50/p95 %s; F@1cm (model, %d frames) %s", summary["integrate_ms_640x480"], counts[1], summary["acceptance_fscore_model_60"])
    return summary


if __name__ == "__main__":
    main()

"""`python -m bench.selection_stability`: does a gazed object stay the same object from frame to frame?

On a posed sequence (livingroom1_micro: rendered room, camera poses from Open3D's reconstruction),
one world point on an object (the chair's seat, picked in the first frame) is projected into
every frame as the gaze point, and the engine answers through the public `Pipeline` with its
default settings (mask cleaning on), each frame encoded fresh (no tracking, no dwell reuse):
the floor of what the session gets without reuse; and "sticky": the same, but of the three
candidates the one overlapping the previous selection (mapped into this frame by depth + pose,
engine/mapping.py) is selected, through Pipeline.answer's `choose` hook; and "track": the first
frame's answer followed by the session's tracker (engine/tracking.py track_step, a fresh keyframe
every frame), which is how a stream keeps one object. Why all three: the chair's cushion curves
from the seat into the back, but from the low viewpoints of frames 0-16 the seat's front roll
hides that curve (a ~25 cm depth jump between seat and back in the image), so one frame alone
says "seat"; from frame 17 on the curve is in view and the LCCP path joins seat and back (in frame
17 the lift still splits the two at a 7 cm hidden gap and keeps the seat, the anchor's cluster).
Frame 18 offers no seat-alone candidate (its part is a 200-pixel piece), so choosing among
candidates (sticky) switches there too; the tracker, which also prompts with the previous mask,
keeps the seat. "track_fused" reports, for the tracked segments, the centroid of all they covered
so far (VoxelUnion) instead of each frame's visible-surface centroid. "gaze" is the served path:
the same gaze point sent as a stream of gaze prompts (8 samples a frame, 1 px noise) with the
frames, at 30 fps, into a Session of an in-process Engine with its default settings (held answers
reused, renewed as the same object once older than DwellConfig.reuse_max_s while the gaze stays
on them: engine/renewal.py; speculative decodes at the fixation); the figure is what a client
gets, and next to it ("anchor") the spread of the world anchor the engine reports with each
answer of the held object (engine/anchor.py: the engine's own fusion over frames, which
track_fused computes here in the bench). `--modes` runs a subset.
Reported: the spread of the selected 3D segment's world centroid (distance to the median centroid:
median, p90, max), frame-to-frame centroid steps, and how often the selected granularity changed.

Writes bench/results/selection_stability.json and .png (commit, n, load).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.common import RESULTS, machine, percentiles, write_json
from bench.real_gt import default_data_dir
from clients.sources.folder import open_sequence
from engine.config import EngineConfig
from engine.core import GazeSample, Prompt, StageTimestamps
from engine.mapping import FrameMapping
from engine.masks.metrics import mask_iou
from engine.pipeline import Pipeline
from engine.protocol import ErrorMessage, Hello, Message, ResultMessage
from engine.server import Engine
from engine.session import PendingFrame
from engine.tracking import TrackState, track_step
from models.interfaces import PromptInput
from models.registry import ModelSpec, build_model

MODES = {
    "fresh": "every frame encoded fresh, one gaze point at the projected target, best score selected",
    "sticky": "as fresh, but the candidate overlapping the previous selection (mapped by pose) is selected",
    "track": "the first frame's answer, then engine.tracking.track_step on every frame (a fresh keyframe "
    "each frame): the session's tracked object",
    "track_fused": "as track, but the point reported is the centroid of every 1 cm world voxel the tracked "
    "segments covered so far (fused here in the bench: what a world anchor fused over frames would give; "
    "the engine's results carry each frame's visible-surface centroid)",
    "gaze": "the served path: a gaze prompt (8 samples, 1 px noise) with every frame at 30 fps into a "
    "Session of an in-process Engine, default settings (held answers reused, then renewed as the same "
    "object while the gaze stays on them; speculative decodes at the fixation); 'anchor': the world "
    "anchor the engine reports with those answers (segment.anchor, engine/anchor.py)",
}
GAZE_FPS = 30.0
GAZE_SAMPLES = 8
FUSED_VOXEL_M = 0.01


class VoxelUnion:
    """World voxels ever covered by a tracked object's segment points, and their centroid.

    Why: a segment's centroid is that of the surface visible in its frame, so it slides as the
    view turns (a seat's front roll seen from the left, then from the right) although the object
    stands still; the centroid of everything seen of it so far converges instead. Bench-side only:
    it assumes a static object and keeps any voxel a bad mask ever touched.
    """

    def __init__(self, size_m: float) -> None:
        self.size_m = size_m
        self.cells: set[tuple[int, int, int]] = set()

    def add(self, points: np.ndarray) -> np.ndarray:
        """Add (N, 3) world points; the (3,) centroid of all voxel centres so far."""
        self.cells.update(
            map(tuple, np.floor(np.asarray(points, np.float64) / self.size_m).astype(np.int64).tolist())
        )
        return (np.array(sorted(self.cells), np.float64) + 0.5).mean(axis=0) * self.size_m


def world_point(frame, x: int, y: int) -> np.ndarray:
    """(3,) world point under pixel (x, y) (median depth of its 5x5 neighbourhood)."""
    d = frame.depth_m[y - 2 : y + 3, x - 2 : x + 3]
    z = float(np.median(d[d > 0]))
    k = frame.intrinsics
    p = np.array([(x - k.cx) * z / k.fx, (y - k.cy) * z / k.fy, z, 1.0])
    return (frame.pose.matrix @ p)[:3]


def project(frame, point: np.ndarray) -> tuple[float, float] | None:
    cam = np.linalg.inv(frame.pose.matrix) @ np.append(point, 1.0)
    if cam[2] <= 0.1:
        return None
    k = frame.intrinsics
    x, y = k.fx * cam[0] / cam[2] + k.cx, k.fy * cam[1] / cam[2] + k.cy
    if not (0 <= x < k.width and 0 <= y < k.height):
        return None
    return float(x), float(y)


def sticky_chooser(prior: np.ndarray, min_iou: float = 0.3):
    """Pick the candidate that overlaps the previous selection (mapped into this frame) most,
    if it overlaps at least min_iou; else the best score (Pipeline's Chooser protocol)."""

    def choose(masks, scores) -> int:
        ious = [mask_iou(m, prior) for m in masks]
        best = int(np.argmax(ious))
        return best if ious[best] >= min_iou else int(np.argmax(scores))

    return choose


def run(pipe: Pipeline, seq, target: np.ndarray, n_frames: int, mode: str) -> dict:
    """One pass over the sequence in one of MODES ("gaze" ignores `pipe`: the engine builds its own)."""
    if mode == "gaze":
        return asyncio.run(run_gaze(seq, target, n_frames))
    centroids, grans, ms, used = [], [], [], []
    prev = None
    state = None
    fused = VoxelUnion(FUSED_VOXEL_M) if mode == "track_fused" else None
    for i in range(min(n_frames, len(seq))):
        frame = seq[i]
        xy = project(frame, target)
        if xy is None:
            continue
        t0 = time.perf_counter()
        keyframe = pipe.keyframe_now(frame)
        if state is not None:
            ans, state = track_step(pipe, state, frame, keyframe, StageTimestamps())
            granularity = ans.result.masks[0].granularity
        else:
            choose = None
            if mode == "sticky" and prev is not None:
                prior = FrameMapping.between(prev[0], frame, pipe.mapping).mask(prev[1])
                choose = sticky_chooser(prior)
            ans = pipe.answer(
                frame,
                keyframe,
                PromptInput(np.array([xy], np.float32), np.ones(1, np.int32)),
                i,
                StageTimestamps(),
                choose=choose,
            )
            prev = (frame, ans.mask)
            if mode.startswith("track"):
                state = TrackState.from_answer(i, frame, ans, True)
            granularity = ans.result.masks[ans.result.best].granularity
        ms.append((time.perf_counter() - t0) * 1e3)
        seg = ans.result.segment
        if seg is None or seg.status != "ok":
            continue
        centroid = np.asarray(seg.centroid, np.float64)
        centroids.append(centroid if fused is None else fused.add(seg.points))
        grans.append(granularity)
        used.append(i)
    return _summary(centroids, grans, ms, used)


async def run_gaze(seq, target: np.ndarray, n_frames: int, config: EngineConfig | None = None) -> dict:
    """The "gaze" mode: frames and gaze prompts through a Session, paced at GAZE_FPS (so held
    answers age as in a live stream); ms_per_frame is the time until the session went idle."""
    rng = np.random.default_rng(0)
    replies: list[Message] = []

    async def send(message: Message) -> None:
        replies.append(message)

    ms, asked = [], []
    async with Engine(config or EngineConfig(port=0)) as engine:
        session = engine.open_session(Hello(token="local", client="bench.selection_stability"))
        session.attach(send)
        start = time.perf_counter()
        for i in range(min(n_frames, len(seq))):
            frame = replace(seq[i], frame_id=i, capture_ts=i / GAZE_FPS)
            xy = project(frame, target)
            if xy is None:
                continue
            ahead = start + i / GAZE_FPS - time.perf_counter()
            if ahead > 0:
                await asyncio.sleep(ahead)
            noise = rng.normal(0.0, 1.0, (GAZE_SAMPLES, 2))
            samples = tuple(
                GazeSample((i + k / GAZE_SAMPLES) / GAZE_FPS, xy[0] + dx, xy[1] + dy, 0.95)
                for k, (dx, dy) in enumerate(noise)
            )
            t0 = time.perf_counter()
            session.offer_frame(PendingFrame.from_frame(frame, frame.capture_ts))
            session.submit(Prompt(i, i, gaze=samples))
            await session.idle()
            ms.append((time.perf_counter() - t0) * 1e3)
            asked.append(i)
        stats = session.stats
    results = {m.result.prompt_id: m.result for m in replies if isinstance(m, ResultMessage)}
    errors = [m for m in replies if isinstance(m, ErrorMessage)]
    if errors:
        raise RuntimeError(f"the session answered gaze prompts with errors: {errors[:3]}")
    centroids, grans, used, anchors, anchored, fused = [], [], [], [], [], []
    for i in asked:
        result = results.get(i)
        if result is None or result.segment is None or result.segment.status != "ok":
            continue
        centroids.append(np.asarray(result.segment.centroid, np.float64))
        grans.append(result.masks[result.best].granularity)
        used.append(i)
        if (anchor := result.segment.anchor) is not None:
            anchors.append(np.asarray(anchor.centroid, np.float64))
            anchored.append(i)
            fused.append(anchor.frames)
    out = _summary(centroids, grans, ms, used)
    # The engine's world anchor of the held object (engine/anchor.py), as the client got it.
    if anchors:
        a = _summary(anchors, [], [], anchored)
        out["anchor"] = {
            "n_frames": a["n_frames"],
            "anchor_spread_cm": a["centroid_spread_cm"],
            "frame_to_frame_step_cm": a["frame_to_frame_step_cm"],
            "frames_fused": fused,
            # the anchor started afresh (frames_fused went down): the engine took it for another object
            "resets": int(sum(b < p for p, b in zip(fused[:-1], fused[1:], strict=True))),
            "spread_per_frame_cm": a["spread_per_frame_cm"],
            "frames": anchored,
        }
    out["session_stats"] = {
        "speculative_hits": stats.speculative_hits,
        "speculative_decodes": stats.speculative_decodes,
        "dwell_selections": stats.dwell_selections,
        "prompts_answered": stats.prompts_answered,
    }
    return out


def _summary(centroids: list[np.ndarray], grans: list[str], ms: list[float], used: list[int]) -> dict:
    """Spread and steps of the selected segment's world centroid over the frames of one pass."""
    c = np.stack(centroids)
    spread = np.linalg.norm(c - np.median(c, axis=0), axis=1)
    steps = np.linalg.norm(np.diff(c, axis=0), axis=1)
    return {
        "n_frames": len(used),
        "centroid_spread_cm": _stats(spread),
        "frame_to_frame_step_cm": _stats(steps),
        "granularity_counts": {g: grans.count(g) for g in sorted(set(grans))},
        "granularity_switches": int(sum(a != b for a, b in zip(grans[:-1], grans[1:], strict=True))),
        "ms_per_frame": percentiles(ms) if ms else None,
        "spread_per_frame_cm": (spread * 100).round(2).tolist(),
        "steps_cm": (steps * 100).round(2).tolist(),
        "frames": used,
    }


def _stats(v: np.ndarray) -> dict:
    return {
        "median": round(float(np.median(v)) * 100, 2),
        "p90": round(float(np.percentile(v, 90)) * 100, 2),
        "max": round(float(v.max()) * 100, 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--frames", type=int, default=80, help="consecutive frames from the first")
    parser.add_argument(
        "--click", type=int, nargs=2, default=(480, 240), help="pixel of the object in frame 0"
    )
    parser.add_argument(
        "--modes", nargs="+", default=list(MODES), choices=list(MODES), help="which passes to run"
    )
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    seq = open_sequence((args.data or default_data_dir()) / "livingroom1_micro")
    cfg = EngineConfig()
    pipe = Pipeline(
        build_model(ModelSpec("geometric")),
        cfg.lift,
        cfg.mask_clean,
        cfg.mapping,
        cfg.everything,
        cfg.clean_masks,
    )
    target = world_point(seq[0], *args.click)
    runs = {mode: run(pipe, seq, target, args.frames, mode) for mode in args.modes}
    try:
        run_git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        commit = run_git.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    payload = {
        "commit": commit,
        "machine": machine(),
        "load_before": list(load_before),
        "load_after": list(os.getloadavg()),
        "sequence": "livingroom1_micro",
        "target_world": target.tolist(),
        "modes": {mode: MODES[mode] for mode in runs},
        **runs,
    }
    write_json("selection_stability.json", payload)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for mode, r in runs.items():
        ax[0].plot(r["frames"], r["spread_per_frame_cm"], ".-", label=mode)
        if "anchor" in r:
            a = r["anchor"]
            ax[0].plot(a["frames"], a["spread_per_frame_cm"], ".-", label=f"{mode} anchor")
        ax[1].plot(r["frames"][1:], r["steps_cm"], ".-", label=mode)
    ax[0].axhline(2, color="r", ls="--", lw=1, label="2 cm target")
    ax[0].set(
        xlabel="frame", ylabel="distance to median centroid (cm)", title="world centroid of the gazed chair"
    )
    ax[0].legend()
    ax[1].legend()
    ax[1].set(xlabel="frame", ylabel="cm", title="frame-to-frame centroid step")
    fig.tight_layout()
    fig.savefig(RESULTS / "selection_stability.png", dpi=110)
    plt.close(fig)
    keys = ("n_frames", "centroid_spread_cm", "frame_to_frame_step_cm", "granularity_counts")
    for mode, r in runs.items():
        print(mode, {k: r[k] for k in keys})
        if "anchor" in r:
            print(f"{mode} anchor", {k: r["anchor"][k] for k in ("n_frames", "anchor_spread_cm", "resets")})
    return payload


if __name__ == "__main__":
    main()

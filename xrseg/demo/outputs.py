"""What the demo leaves on disk: overlays, 3D segments, a summary and a one-page view of it all."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import open3d as o3d

from clients.ws_client import TimedResult
from engine.core import RGBDFrame, SegmentationResult

_COLOURS = np.array([[255, 80, 40], [40, 200, 255], [120, 255, 80]], np.uint8)


@dataclass(frozen=True)
class LatencyStats:
    p50: float
    p95: float
    n: int

    @classmethod
    def of(cls, values_ms: Sequence[float]) -> LatencyStats:
        v = np.asarray(values_ms, dtype=np.float64)
        if v.size == 0:
            return cls(float("nan"), float("nan"), 0)
        return cls(round(float(np.percentile(v, 50)), 2), round(float(np.percentile(v, 95)), 2), int(v.size))


def latency_table(results: Sequence[TimedResult]) -> dict[str, LatencyStats]:
    """Per-stage engine latencies plus the client's prompt-to-result, p50/p95 in ms."""
    stages: dict[str, list[float]] = {}
    for r in results:
        for stage, ms in r.result.timestamps.durations_ms().items():
            if stage != "receive":  # capture -> prompt receive spans client pacing, not engine work
                stages.setdefault(stage, []).append(ms)
        ts = r.result.timestamps
        if ts.receive is not None and ts.send is not None:
            stages.setdefault("engine_total", []).append((ts.send - ts.receive) * 1000.0)
        stages.setdefault("prompt_to_result", []).append(r.latency_ms)
        if ts.capture is not None:
            stages.setdefault("glass_to_mask", []).append((r.received - ts.capture) * 1000.0)
    return {k: LatencyStats.of(v) for k, v in stages.items()}


def render_overlay(frame: RGBDFrame, result: SegmentationResult, label: str) -> np.ndarray:
    """(H, W, 3) uint8 BGR: the selected mask tinted, its contour, the prompt point and scores."""
    bgr = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)
    best = result.masks[result.best]
    mask = best.mask.decode()
    tint = bgr.copy()
    tint[mask] = (0.45 * bgr[mask] + 0.55 * _COLOURS[0][::-1]).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(tint, contours, -1, (255, 255, 255), 2)
    scores = "  ".join(f"{c.granularity or i}:{c.score:.2f}" for i, c in enumerate(result.masks))
    text = f"frame {result.frame_id}  {label}  [{best.granularity}]  {scores}"
    cv2.rectangle(tint, (0, 0), (tint.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(tint, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    if result.segment is not None and result.segment.status == "ok":
        c = result.segment.centroid
        cv2.putText(tint, f"centroid {c[0]:+.2f} {c[1]:+.2f} {c[2]:+.2f} m", (6, tint.shape[0] - 8),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return tint


def write_ply(path: Path, points: np.ndarray, colour: tuple[float, float, float] | None = None) -> None:
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    if colour is not None:
        cloud.paint_uniform_color(colour)
    if not o3d.io.write_point_cloud(str(path), cloud):
        raise OSError(f"could not write {path}")


def fuse_segments(results: Sequence[SegmentationResult], voxel: float = 0.01) -> np.ndarray:
    """World-frame points of many segments of one object, merged and voxel-down-sampled: (N, 3)."""
    clouds = [r.segment.points for r in results if r.segment is not None and r.segment.status == "ok"]
    if not clouds:
        return np.zeros((0, 3), np.float32)
    merged = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.concatenate(clouds).astype(np.float64)))
    return np.asarray(merged.voxel_down_sample(voxel).points, np.float32)


def write_contact_sheet(path: Path, overlays: Sequence[Path], columns: int = 4, tile_width: int = 320) -> None:
    tiles = []
    for p in overlays:
        img = cv2.imread(str(p))
        scale = tile_width / img.shape[1]
        tiles.append(cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    if not tiles:
        return
    blank = np.zeros_like(tiles[0])
    rows = [np.hstack((tiles[i : i + columns] + [blank] * columns)[:columns]) for i in range(0, len(tiles), columns)]
    cv2.imwrite(str(path), np.vstack(rows))


def write_html(path: Path, summary: dict, overlays: Sequence[Path], plys: Sequence[Path]) -> None:
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v['p50']}</td><td>{v['p95']}</td><td>{v['n']}</td></tr>"
        for k, v in summary["latency_ms"].items()
    )
    imgs = "".join(f'<img src="{html.escape(p.relative_to(path.parent).as_posix())}" width="320">' for p in overlays)
    links = "".join(f'<li><a href="{html.escape(p.relative_to(path.parent).as_posix())}">{html.escape(p.name)}</a></li>' for p in plys)
    counts = {k: v for k, v in summary.items() if not isinstance(v, dict | list)}
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>xrseg demo</title>
<style>body{{font-family:sans-serif;margin:1.5em}}td,th{{padding:2px 10px;text-align:right}}img{{margin:2px}}</style></head>
<body><h1>xrseg demo</h1><pre>{html.escape(json.dumps(counts, indent=1))}</pre>
<h2>Latency (ms)</h2><table><tr><th>stage</th><th>p50</th><th>p95</th><th>n</th></tr>{rows}</table>
<h2>Masks</h2>{imgs}<h2>3D segments (PLY)</h2><ul>{links}</ul></body></html>"""
    path.write_text(page)

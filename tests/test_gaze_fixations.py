"""Fixation and dwell detection on synthetic gaze traces with known fixations and saccades.

The traces are built the way an eye moves: fixations with Gaussian jitter (0.3 deg per axis, no
microsaccades), saccades whose duration and speed follow the main sequence (duration
21 ms + 2.2 ms/deg, minimum-jerk profile, so 4-15 deg saccades peak at ~250-520 deg/s), blinks
around some saccades (low confidence, garbage coordinates) and short tracker dropouts inside
fixations. Sampling at 60, 90, 120 and 200 Hz with timestamp jitter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from engine.core import CameraIntrinsics, GazeSample
from engine.fusion import (
    Fixation,
    FixationConfig,
    FixationDetector,
    FixationEventKind,
    GazeGeometry,
    detect_fixations,
)
from engine.fusion.gaze import angle_deg

INTRINSICS = CameraIntrinsics(640, 480, 525.0, 525.0, 319.5, 239.5)
GEOMETRY = GazeGeometry.from_intrinsics(INTRINSICS)
DWELL_S = 0.6


@dataclass(frozen=True)
class TrueFixation:
    start: float
    end: float
    ax: float  # target direction, degrees (azimuth, elevation in the tangent-plane sense)
    ay: float

    @property
    def long(self) -> bool:
        return self.end - self.start >= DWELL_S


def _pixel(ax: np.ndarray, ay: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of directions given as tangent-plane angles in degrees (test-side model of the eye)."""
    g = GEOMETRY
    return g.cx + g.fx * np.tan(np.radians(ax)), g.cy + g.fy * np.tan(np.radians(ay))


def make_trace(
    rate_hz: float, seed: int, n_fixations: int = 36, noise_deg: float = 0.3
) -> tuple[list[GazeSample], list[TrueFixation]]:
    """A gaze trace and its true fixations (intervals of visible, stable gaze)."""
    rng = np.random.default_rng(seed)
    # Eye position as a piecewise function of time: fixation segments and saccade segments.
    segments: list[tuple[str, float, float, tuple[float, float], tuple[float, float]]] = []
    blinks: list[tuple[float, float]] = []
    truths: list[TrueFixation] = []
    t = 0.0
    pos = (0.0, 0.0)
    blink_after_next = 0.0  # part of this fixation's start hidden by the blink of the saccade before
    for i in range(n_fixations):
        visible = rng.uniform(0.8, 1.2) if rng.random() < 0.4 else rng.uniform(0.15, 0.45)
        blink_here = i < n_fixations - 1 and rng.random() < 0.3
        blink_before_sacc = rng.uniform(0.03, 0.06) if blink_here else 0.0
        duration = blink_after_next + visible + blink_before_sacc
        truths.append(TrueFixation(t + blink_after_next, t + blink_after_next + visible, *pos))
        segments.append(("fix", t, t + duration, pos, pos))
        t += duration
        if i == n_fixations - 1:
            break
        while True:
            amp = rng.uniform(4.0, 15.0)
            theta = rng.uniform(0, 2 * math.pi)
            nxt = (pos[0] + amp * math.cos(theta), pos[1] + amp * math.sin(theta))
            if abs(nxt[0]) < 25 and abs(nxt[1]) < 18:
                break
        sacc = 0.021 + 0.0022 * amp
        segments.append(("sacc", t, t + sacc, pos, nxt))
        blink_after_next = rng.uniform(0.05, 0.10) if blink_here else 0.0
        if blink_here:
            blinks.append((t - blink_before_sacc, t + sacc + blink_after_next))
        t += sacc
        pos = nxt

    n = int(t * rate_hz)
    ts = np.arange(n) / rate_hz + rng.uniform(-0.2e-3, 0.2e-3, n)
    ax = np.empty(n)
    ay = np.empty(n)
    for kind, t0, t1, p0, p1 in segments:
        sel = (ts >= t0) & (ts < t1)
        if kind == "fix":
            ax[sel], ay[sel] = p0
        else:
            tau = (ts[sel] - t0) / (t1 - t0)
            s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5  # minimum jerk
            ax[sel] = p0[0] + (p1[0] - p0[0]) * s
            ay[sel] = p0[1] + (p1[1] - p0[1]) * s
    ax += rng.normal(0, noise_deg, n)
    ay += rng.normal(0, noise_deg, n)
    conf = rng.uniform(0.8, 1.0, n)
    bad = np.zeros(n, bool)
    for b0, b1 in blinks:
        bad |= (ts >= b0) & (ts < b1)
    # Short dropouts (1-3 samples, at most 50 ms) anywhere, at least 3 good samples apart.
    for start in 6 * rng.choice(n // 6, size=n // 60, replace=False):
        bad[start : start + int(rng.integers(1, 4))] = True
    conf[bad] = rng.uniform(0.0, 0.3, int(bad.sum()))
    ax[bad] = rng.uniform(-30, 30, int(bad.sum()))  # garbage, as trackers report during blinks
    ay[bad] = rng.uniform(-20, 20, int(bad.sum()))
    x, y = _pixel(ax, ay)
    samples = [
        GazeSample(float(a), float(b), float(c), float(d)) for a, b, c, d in zip(ts, x, y, conf, strict=True)
    ]
    # Truth = stable gaze while visible; dropouts are shorter than the detector's gap fill.
    return samples, truths


def _interval_iou(a0: float, a1: float, b0: float, b1: float) -> float:
    inter = max(0.0, min(a1, b1) - max(a0, b0))
    union = max(a1, b1) - min(a0, b0)
    return inter / union if union > 0 else 0.0


def _true_ray(f: TrueFixation) -> tuple[float, float, float]:
    x, y = _pixel(np.array(f.ax), np.array(f.ay))
    return GEOMETRY.ray(float(x), float(y))


def match(detected: list[Fixation], truths: list[TrueFixation]) -> int:
    """One-to-one matches: time intervals overlap with IoU > 0.5 and centroids within 1 deg."""
    used: set[int] = set()
    matches = 0
    for d in detected:
        for j, f in enumerate(truths):
            if j in used:
                continue
            iou = _interval_iou(d.start, d.end, f.start, f.end)
            if iou > 0.5 and angle_deg(GEOMETRY.ray(d.x, d.y), _true_ray(f)) < 1.0:
                used.add(j)
                matches += 1
                break
    return matches


@pytest.mark.parametrize("rate_hz", [60, 90, 120, 200])
def test_precision_and_recall_on_synthetic_traces(rate_hz: int) -> None:
    tp = n_det = n_true = 0
    for seed in range(3):
        samples, truths = make_trace(rate_hz, seed=seed + 100 * rate_hz)
        detected = detect_fixations(samples, GEOMETRY)
        tp += match(detected, truths)
        n_det += len(detected)
        n_true += len(truths)
    precision, recall = tp / n_det, tp / n_true
    assert precision >= 0.9 and recall >= 0.9, f"{rate_hz} Hz: precision {precision:.3f}, recall {recall:.3f}"


@pytest.mark.parametrize("rate_hz", [60, 120])
def test_dwell_fires_once_per_long_fixation_and_never_for_short_ones(rate_hz: int) -> None:
    samples, truths = make_trace(rate_hz, seed=7 + rate_hz)
    detector = FixationDetector(GEOMETRY, FixationConfig(dwell_s=DWELL_S))
    events = [e for s in samples for e in detector.push(s)] + list(detector.finish())
    dwells = [e for e in events if e.kind is FixationEventKind.DWELL_COMPLETED]
    assert len({e.fixation_id for e in dwells}) == len(dwells)
    dwell_times = [e.fixation.end for e in dwells]
    longs = [f for f in truths if f.long]
    shorts = [f for f in truths if not f.long]
    assert len(longs) >= 5 and len(shorts) >= 5
    for f in longs:
        fired = [t for t in dwell_times if f.start <= t <= f.end]
        assert len(fired) == 1, f"long fixation {f} fired {len(fired)} dwells"
        assert fired[0] - f.start == pytest.approx(DWELL_S, abs=0.12)
    for f in shorts:
        fired = [t for t in dwell_times if f.start <= t <= f.end + 0.1]
        assert not fired, f"short fixation {f} fired a dwell"
    assert len(dwell_times) == len(longs)


def test_each_fixation_reports_started_then_updates_then_ended_in_order() -> None:
    samples, truths = make_trace(90, seed=3, n_fixations=12)
    detector = FixationDetector(GEOMETRY)
    events = [e for s in samples for e in detector.push(s)] + list(detector.finish())
    by_id: dict[int, list[FixationEventKind]] = {}
    for e in events:
        by_id.setdefault(e.fixation_id, []).append(e.kind)
    assert sorted(by_id) == list(range(len(by_id))) and len(by_id) == detector.stats.fixations
    for kinds in by_id.values():
        assert kinds[0] is FixationEventKind.STARTED and kinds[-1] is FixationEventKind.ENDED
        assert kinds.count(FixationEventKind.STARTED) == 1 and kinds.count(FixationEventKind.ENDED) == 1
        assert kinds.count(FixationEventKind.DWELL_COMPLETED) <= 1
    started = [e for e in events if e.kind is FixationEventKind.STARTED]
    # Started fires once the fixation lasted min_fixation_s: early enough for a speculative decode.
    for e in started:
        assert 0.1 <= e.fixation.duration < 0.13


def _steady(
    rate_hz: float, seconds: float, x: float, y: float, t0: float = 0.0, noise_px: float = 0.0
) -> list[GazeSample]:
    """A still gaze at (x, y) pixels, optionally with Gaussian jitter."""
    rng = np.random.default_rng(0)
    n = int(seconds * rate_hz)
    jitter = rng.normal(0, noise_px, (n, 2))
    return [GazeSample(t0 + k / rate_hz, x + jitter[k, 0], y + jitter[k, 1]) for k in range(n)]


def test_low_confidence_and_broken_samples_are_ignored_not_fatal() -> None:
    clean = _steady(120, 0.8, 300.0, 200.0, noise_px=2.0)
    noisy = []
    for k, s in enumerate(clean):
        if k % 4 == 1:
            noisy.append(GazeSample(s.t, float("nan"), 0.0, 0.9))  # broken coordinates
        elif k % 4 == 3:
            noisy.append(GazeSample(s.t, 5.0, 5.0, 0.1))  # low confidence, garbage position
        else:
            noisy.append(s)
    detector = FixationDetector(GEOMETRY)
    for s in noisy:
        detector.push(s)
    detector.push(GazeSample(0.5, 300.0, 200.0))  # out of order: ignored and counted
    ended = [e for e in detector.finish() if e.kind is FixationEventKind.ENDED]
    assert len(ended) == 1
    f = ended[0].fixation
    assert abs(f.x - 300.0) < 1.5 and abs(f.y - 200.0) < 1.5
    assert f.sample_count < len(clean) // 2 + 1
    assert detector.stats.low_confidence == len(clean) // 2
    assert detector.stats.out_of_order == 1


def test_a_long_data_gap_ends_the_fixation_and_a_short_one_is_bridged() -> None:
    short_gap = _steady(60, 0.4, 320, 240) + _steady(60, 0.4, 320, 240, t0=0.45)  # 50 ms without samples
    assert len(detect_fixations(short_gap, GEOMETRY)) == 1
    long_gap = _steady(60, 0.4, 320, 240) + _steady(60, 0.4, 320, 240, t0=0.6)  # 200 ms blink
    assert len(detect_fixations(long_gap, GEOMETRY)) == 2


def test_thresholds_are_visual_angles_not_pixels() -> None:
    # The same 40 px jump in 25 ms: 4.4 deg at fx = 525 (a saccade between two fixations),
    # 0.44 deg at fx = 5250 (a telephoto view: sub-threshold drift within one fixation).
    trace = _steady(120, 0.4, 300, 240)
    trace += [GazeSample(0.4 + k / 120, 300 + 40 * (k + 1) / 3, 240) for k in range(3)]
    trace += _steady(120, 0.4, 340, 240, t0=0.425)
    assert len(detect_fixations(trace, GEOMETRY)) == 2
    assert len(detect_fixations(trace, GazeGeometry(5250.0, 5250.0, 319.5, 239.5))) == 1


def test_memory_is_bounded_on_a_long_stream() -> None:
    samples, _ = make_trace(200, seed=11, n_fixations=80)
    detector = FixationDetector(GEOMETRY)
    peak = 0
    for s in samples:
        detector.push(s)
        peak = max(peak, detector.buffered_samples)
    # Two 40 ms windows at 200 Hz, the sample being classified and the minimum-side extras.
    assert peak <= 2 * 0.04 * 200 + 4
    assert detector.stats.samples == len(samples)


def test_geometry_and_config_errors_say_what_to_fix() -> None:
    g = GazeGeometry.from_fov(640, 480, 90.0)
    assert g.fx == pytest.approx(320.0)
    assert angle_deg(g.ray(g.cx, g.cy), g.ray(g.cx + g.fx, g.cy)) == pytest.approx(45.0)
    x, y = g.pixel(g.ray(10.0, 470.0))
    assert (x, y) == (pytest.approx(10.0), pytest.approx(470.0))
    with pytest.raises(ValueError, match="dwell_s"):
        FixationConfig(dwell_s=0.05)
    with pytest.raises(ValueError, match="focal"):
        GazeGeometry(0.0, 500.0, 0.0, 0.0)

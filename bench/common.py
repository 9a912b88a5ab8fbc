"""What every benchmark shares: machine description, percentiles, result files."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"device": "cpu", "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def percentiles(values_ms: Sequence[float]) -> dict:
    v = np.asarray(values_ms, dtype=np.float64)
    if v.size == 0:
        return {"p50": None, "p95": None, "mean": None, "n": 0}
    return {
        "p50": round(float(np.percentile(v, 50)), 3),
        "p95": round(float(np.percentile(v, 95)), 3),
        "mean": round(float(v.mean()), 3),
        "n": int(v.size),
    }


def provenance() -> dict:
    """What a skeptic needs to trust a figure: the commit it was measured on (and whether the tree
    had uncommitted changes), when, and how loaded the machine was (1-minute load average)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "dirty": bool(
            git("status", "--porcelain", "--untracked-files=no", "--", "engine", "models", "bench", "clients")
        ),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def write_json(name: str, payload: dict) -> Path:
    """Write a result file; every file carries its provenance (commit, date, load at the end).

    `make bench-check` (scripts/bench_check.py) marks a file stale when the code it measures
    changed after its commit."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    payload = {**payload, "provenance": {**provenance(), **payload.get("provenance", {})}}
    path.write_text(json.dumps(payload, indent=2))
    return path

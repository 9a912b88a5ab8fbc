"""What every benchmark shares: machine description, percentiles, result files."""

from __future__ import annotations

import json
import os
import platform
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


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2))
    return path

"""ONNX Runtime's CPU and GPU builds are two extras, never both: what pyproject.toml declares,
what this environment holds, and the check that scripts/check_install.py runs on fresh installs
(that script, run by hand or `make check-install`, resolves and really installs both extras)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from types import ModuleType

from engine.system import onnxruntime_builds_problem

ROOT = Path(__file__).resolve().parents[1]


def check_install() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_install", ROOT / "scripts" / "check_install.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pyproject_declares_one_build_per_extra_and_none_in_the_base() -> None:
    assert check_install().declared() == []


def test_the_check_tells_each_case() -> None:
    verdict = check_install().verdict
    assert verdict("gpu", {"onnxruntime-gpu", "numpy"}) is None
    assert verdict("cpu", {"onnxruntime", "numpy"}) is None
    assert "both" in verdict("gpu", {"onnxruntime-gpu", "onnxruntime"})
    assert "not installed" in verdict("cpu", {"onnxruntime-gpu"})


def test_this_environment_holds_exactly_one_build() -> None:
    names = {d.metadata["Name"].lower() for d in importlib.metadata.distributions() if d.metadata["Name"]}
    builds = names & {"onnxruntime", "onnxruntime-gpu"}
    assert len(builds) == 1, builds
    assert onnxruntime_builds_problem() is None
    assert "pip uninstall" in (onnxruntime_builds_problem({"onnxruntime", "onnxruntime-gpu"}) or "")

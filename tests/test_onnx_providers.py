"""Which ONNX Runtime providers a decoder asks for, and with which options: the TensorRT engine
cache is on (so a restart does not rebuild engines for minutes), fp16 only when asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from models.interfaces import ModelError
from models.onnx.runtime import OnnxSession, SessionConfig, choose_providers, provider_options

ALL = ("CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider")


def test_tensorrt_gets_its_engine_cache_and_fp16_only_when_asked(tmp_path: Path) -> None:
    providers = choose_providers("cuda:1", available=ALL)
    assert providers == ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    trt, cuda, cpu = provider_options(providers, SessionConfig(device="cuda:1", trt_cache_dir=tmp_path / "trt"))
    assert trt == {
        "device_id": "1",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(tmp_path / "trt"),
        "trt_fp16_enable": "False",
    }
    assert (tmp_path / "trt").is_dir()  # TensorRT writes engines there; it must exist
    assert cuda == {"device_id": "1"} and cpu == {}
    fp16 = provider_options(providers[:1], SessionConfig(device="cuda", trt_fp16=True, trt_cache_dir=tmp_path))
    assert fp16[0]["trt_fp16_enable"] == "True" and fp16[0]["device_id"] == "0"


def test_the_default_cache_is_under_xrseg_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XRSEG_CACHE", str(tmp_path))
    [trt] = provider_options(("TensorrtExecutionProvider",), SessionConfig(device="cuda"))
    assert trt["trt_engine_cache_path"] == str(tmp_path / "tensorrt")


def test_cpu_needs_no_options_and_a_gpu_without_a_gpu_build_is_explained() -> None:
    assert choose_providers("cpu", available=ALL) == ("CPUExecutionProvider",)
    assert provider_options(("CPUExecutionProvider",), SessionConfig(device="cpu")) == [{}]
    with pytest.raises(ModelError, match="onnxruntime-gpu"):
        choose_providers("cuda", available=("CPUExecutionProvider",))


def test_a_real_session_opens_with_the_built_options(tmp_path: Path) -> None:
    """ONNX Runtime accepts what provider_options builds for the providers this build offers."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])],
        "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    path = tmp_path / "double.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    session = OnnxSession(path, SessionConfig(device="auto", trt_cache_dir=tmp_path / "trt"))
    [y] = session.run({"x": np.array([1.0, 2.0], np.float32)})
    assert y.tolist() == [2.0, 4.0]

"""ONNX Runtime sessions for exported graphs: provider choice, fp16 on GPU, IO binding.

Provider order is TensorRT > CUDA > CPU among those this onnxruntime build offers, and the choice
is logged once per session so a user can see why a decode is slow. On a GPU provider we run an
fp16 copy of the graph (inputs and outputs stay fp32, so callers never see the difference) and bind
inputs and outputs explicitly (IO binding): an embedding uploaded once with `to_device` is reused by
every prompt instead of being copied host -> device per decode.

TensorRT builds an engine per graph and input shape the first time it sees them (tens of seconds
to minutes); `provider_options` turns on its engine cache (in `$XRSEG_CACHE/tensorrt`, default
`~/.cache/xrseg/tensorrt`) so a restart loads the engines instead of building them again. TensorRT's
own fp16 (`trt_fp16_enable`) is off unless asked for (`SessionConfig.trt_fp16`, or
`XRSEG_TRT_FP16=1` for the decoders): it changes numerics beyond the fp16 copy's casts.

Only the CPU path runs on our CI machines; the GPU branches are selected by provider availability.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from models.interfaces import ModelError

log = logging.getLogger(__name__)

PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
GPU_PROVIDERS = frozenset(PREFERENCE[:2])


def choose_providers(device: str = "auto", available: Sequence[str] | None = None) -> tuple[str, ...]:
    """Providers to ask ONNX Runtime for, best first.

    Args:
        device: "cpu" forces the CPU provider; "cuda"/"gpu" requires a GPU provider; "auto" takes
            the best available.
        available: what this onnxruntime build offers (default: `ort.get_available_providers()`).

    Raises:
        ModelError: a GPU was asked for and this build has no GPU provider.
    """
    offered = set(ort.get_available_providers() if available is None else available)
    if device == "cpu":
        return ("CPUExecutionProvider",)
    chosen = tuple(p for p in PREFERENCE if p in offered)
    if device.startswith(("cuda", "gpu")) and not GPU_PROVIDERS & set(chosen):
        raise ModelError(
            f"device {device!r} asked for, but this onnxruntime offers only {sorted(offered)}; "
            "install onnxruntime-gpu (pip install 'xrseg[gpu]') or pass --device cpu"
        )
    return chosen or ("CPUExecutionProvider",)


@dataclass(frozen=True)
class SessionConfig:
    """How to open a graph.

    Attributes:
        device: see `choose_providers`.
        fp16: run an fp16 copy on GPU providers (ignored on CPU, where fp16 is slower).
        threads: intra-op threads on CPU; 0 lets ONNX Runtime use one per physical core.
        trt_fp16: let TensorRT pick fp16 kernels (trt_fp16_enable).
        trt_cache_dir: where TensorRT keeps built engines; None: $XRSEG_CACHE/tensorrt.
    """

    device: str = "auto"
    fp16: bool = True
    threads: int = 0
    trt_fp16: bool = False
    trt_cache_dir: Path | None = None


def default_trt_cache_dir() -> Path:
    root = os.environ.get("XRSEG_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "xrseg") / "tensorrt"


def provider_options(providers: Sequence[str], config: SessionConfig) -> list[dict[str, str]]:
    """ONNX Runtime's per-provider options, in the order of `providers`.

    TensorRT: engine cache on, in config.trt_cache_dir (created), fp16 as config.trt_fp16; TensorRT
    and CUDA run on the GPU index of a "cuda:N" device. CPU: none.
    """
    index = config.device.split(":", 1)[1] if config.device.startswith(("cuda:", "gpu:")) else "0"
    out: list[dict[str, str]] = []
    for provider in providers:
        if provider == "TensorrtExecutionProvider":
            cache = config.trt_cache_dir or default_trt_cache_dir()
            cache.mkdir(parents=True, exist_ok=True)
            out.append({
                "device_id": index,
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": str(cache),
                "trt_fp16_enable": "True" if config.trt_fp16 else "False",
            })  # fmt: skip
        elif provider == "CUDAExecutionProvider":
            out.append({"device_id": index})
        else:
            out.append({})
    return out


def fp16_copy(path: Path) -> Path:
    """Write (once) and return an fp16 version of `path` with fp32 inputs and outputs."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out = path.with_name(path.stem + ".fp16.onnx")
    if not out.exists():
        model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
        tmp = out.with_suffix(".tmp")
        onnx.save(model, str(tmp))
        tmp.replace(out)
    return out


class OnnxSession:
    """One ONNX Runtime session over one exported graph.

    `run(feeds)` takes numpy arrays (or `OrtValue`s made by `to_device`) by input name and returns
    numpy outputs in graph order.
    """

    def __init__(self, path: Path, config: SessionConfig = SessionConfig(), name: str = "") -> None:
        self.path = Path(path)
        self.name = name or self.path.stem
        providers = choose_providers(config.device)
        self.on_gpu = providers[0] in GPU_PROVIDERS
        graph = fp16_copy(self.path) if (self.on_gpu and config.fp16) else self.path
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if config.threads:
            options.intra_op_num_threads = config.threads
        self._session = ort.InferenceSession(
            str(graph), options, providers=list(providers), provider_options=provider_options(providers, config)
        )
        self.providers = tuple(self._session.get_providers())
        self.input_names = tuple(i.name for i in self._session.get_inputs())
        self.output_names = tuple(o.name for o in self._session.get_outputs())
        log.info(
            "onnx %s: provider %s%s (offered %s)",
            self.name,
            self.providers[0],
            ", fp16" if graph != self.path else ", fp32",
            ",".join(ort.get_available_providers()),
        )

    def to_device(self, array: np.ndarray) -> ort.OrtValue | np.ndarray:
        """Upload an array that many runs share (an image embedding) once; identity on CPU."""
        if not self.on_gpu:
            return array
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), "cuda", 0)

    def run(self, feeds: Mapping[str, np.ndarray | ort.OrtValue]) -> list[np.ndarray]:
        if not self.on_gpu:
            return self._session.run(None, dict(feeds))
        binding = self._session.io_binding()
        for key, value in feeds.items():
            if isinstance(value, ort.OrtValue):
                binding.bind_ortvalue_input(key, value)
            else:
                binding.bind_cpu_input(key, np.ascontiguousarray(value))
        for key in self.output_names:
            binding.bind_output(key, "cpu")
        self._session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

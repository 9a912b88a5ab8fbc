"""Export torch graphs to ONNX files, cached by checkpoint digest.

A graph is exported once per (model, checkpoint SHA-256, graph name, graph version) and reused
by every later start: exporting SAM's decoder takes seconds, loading the file milliseconds. The
cache folder is `$XRSEG_CACHE/onnx` (default `~/.cache/xrseg/onnx`). Files are written to a
temporary name and renamed, so a crash mid-export never leaves a half file that looks valid.

We use torch's TorchScript-based exporter (`dynamo=False`): it needs no extra package and handles
the data-dependent shapes of prompts (N points) through `dynamic_axes`.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

log = logging.getLogger(__name__)

OPSET = 17


def default_cache_dir() -> Path:
    root = os.environ.get("XRSEG_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "xrseg") / "onnx"


@dataclass(frozen=True)
class GraphSpec:
    """What to export: a module, example inputs, names, and which axes vary.

    Attributes:
        name: graph name within its model ("decoder_multi", "encoder", ...).
        version: bump when the wrapper's math or signature changes, so stale cache files are not used.
        input_names / output_names: graph I/O names, in the module's argument / return order.
        dynamic_axes: {input or output name: {axis: symbolic name}}.
    """

    name: str
    version: int
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_axes: Mapping[str, Mapping[int, str]] = field(default_factory=dict)


def cache_path(model: str, sha256: str, spec: GraphSpec, cache_dir: Path | None = None) -> Path:
    """Where the exported file for this checkpoint and graph lives."""
    folder = cache_dir if cache_dir is not None else default_cache_dir()
    return folder / f"{model}-{sha256[:16]}-{spec.name}-v{spec.version}.onnx"


def export_graph(module: torch.nn.Module, args: Sequence[torch.Tensor], spec: GraphSpec, path: Path) -> Path:
    """Export `module(*args)` to `path` (atomically). Returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter warns about its own deprecation and about traced Python
        # scalars; neither affects the graph we check against the reference in tests.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        torch.onnx.export(
            module,
            tuple(args),
            str(tmp),
            input_names=list(spec.input_names),
            output_names=list(spec.output_names),
            dynamic_axes={k: dict(v) for k, v in spec.dynamic_axes.items()},
            opset_version=OPSET,
            dynamo=False,
        )
    tmp.replace(path)
    log.info("exported %s to %s (%.1f MB)", spec.name, path, path.stat().st_size / 1e6)
    return path


def cached_export(
    module: torch.nn.Module,
    args: Sequence[torch.Tensor],
    spec: GraphSpec,
    model: str,
    sha256: str,
    cache_dir: Path | None = None,
) -> Path:
    """Return the cached graph for this checkpoint, exporting it first if needed."""
    path = cache_path(model, sha256, spec, cache_dir)
    if path.exists():
        log.info("using cached %s graph %s", spec.name, path)
        return path
    return export_graph(module, args, spec, path)

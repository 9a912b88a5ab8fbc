"""The one ONNX Runtime prompt decoder the SAM-family backends share.

SAM (ViT-B/L/H, MobileSAM) and SAM 2.1 / EdgeTAM export the same three graphs: a multimask and a
single-mask decoder (prompt tokens + image features -> masks at the original resolution, predicted
IoUs, low-res logits) and a mask-prompt graph (low-res logits -> dense prompt). Everything around
them is the same too: refuse another backend's embedding, choose the graph, name the three
granularities, open the sessions on the right provider. What differs is only how a prompt and an
embedding become graph inputs (SAM pads and crops the 1024 frame and appends a padding point only
without a box; SAM 2 resizes without padding and always appends one), which each backend gives as
its `feeds` method.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.interfaces import ImageEmbedding, MaskPrediction, ModelError, PromptInput
from models.onnx.export import GraphSpec
from models.onnx.runtime import OnnxSession, SessionConfig

MULTIMASK_NAMES = ("part", "object", "region")
_TAP_AXES = {"row_idx": {1: "H"}, "row_w": {1: "H"}, "col_idx": {1: "W"}, "col_w": {1: "W"}}


def decoder_spec(multimask: bool, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> GraphSpec:
    """The export spec of a decoder graph: N prompt points and an H x W answer vary per call."""
    return GraphSpec(
        name="decoder_multi" if multimask else "decoder_single",
        version=1,
        input_names=inputs,
        output_names=outputs,
        dynamic_axes={
            "point_coords": {1: "N"},
            "point_labels": {1: "N"},
            **_TAP_AXES,
            "masks": {0: "K", 1: "H", 2: "W"},
        },
    )


def runtime_device(device: str) -> str:
    """Map a torch device string to an ONNX Runtime device choice ("cuda:N" keeps its GPU index)."""
    if device == "cpu":
        return "cpu"
    return device if device.startswith("cuda:") else "cuda"


@dataclass(frozen=True)
class DecoderSessions:
    """The three ONNX graphs of one SAM-family decoder and the model constants they share.

    Attributes:
        no_mask: (1, C, 1, 1) float32, the prompt encoder's no-mask embedding.
        low_res_side: side of the low-res mask logits (256).
        input_size: side of the model's square input (1024).
    """

    multi: OnnxSession
    single: OnnxSession
    mask_prompt: OnnxSession
    no_mask: np.ndarray
    low_res_side: int = 256
    input_size: int = 1024


def open_sessions(
    paths: Mapping[str, Path],
    model: str,
    device: str,
    no_mask: np.ndarray,
    low_res_side: int = 256,
    input_size: int = 1024,
) -> DecoderSessions:
    """Open the exported graphs {decoder_multi, decoder_single, mask_prompt: path} for `device`."""
    config = SessionConfig(device=runtime_device(device), trt_fp16=os.environ.get("XRSEG_TRT_FP16") == "1")
    return DecoderSessions(
        multi=OnnxSession(paths["decoder_multi"], config, f"{model}/decoder_multi"),
        single=OnnxSession(paths["decoder_single"], config, f"{model}/decoder_single"),
        mask_prompt=OnnxSession(paths["mask_prompt"], config, f"{model}/mask_prompt"),
        no_mask=no_mask,
        low_res_side=low_res_side,
        input_size=input_size,
    )


class OnnxPromptDecoder(ABC):
    """Light half of a SAM-family backend: embedding + prompt -> masks at the original resolution.

    Subclasses implement `feeds(embedding, prompt)`: the decoder graph's inputs by name. The graph
    answers masks (K, H, W) bool, iou (K,) float32, low_res (K, s, s) float32 (and SAM 2 an
    object score, not part of `MaskPrediction`).
    """

    def __init__(self, name: str, sessions: DecoderSessions) -> None:
        self.name = name
        self.sessions = sessions

    @abstractmethod
    def feeds(self, embedding: ImageEmbedding, prompt: PromptInput) -> dict[str, np.ndarray]:
        """The decoder graph's inputs by name for this embedding and prompt."""

    def predict(self, embedding: ImageEmbedding, prompt: PromptInput) -> MaskPrediction:
        if embedding.backend != self.name:
            raise ModelError(f"decoder {self.name!r} got an embedding from {embedding.backend!r}")
        session = self.sessions.multi if prompt.multimask else self.sessions.single
        masks, iou, low_res, *_ = session.run(self.feeds(embedding, prompt))
        names = MULTIMASK_NAMES if prompt.multimask and len(iou) == len(MULTIMASK_NAMES) else ()
        return MaskPrediction(
            masks=masks, scores=iou.astype(np.float32), granularity=names, low_res_logits=low_res
        )

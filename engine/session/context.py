"""What every session of one engine shares, and the counters of one session."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from engine.capture.store import CaptureStore
from engine.config import EngineConfig
from engine.pipeline import Pipeline
from engine.scheduler import KeyframeEncoder
from engine.text_answer import TextRanker
from models.interfaces import SegmentationModel


@dataclass(frozen=True)
class SessionContext:
    """What every session of one engine shares: read-only model, worker pool, settings, encoder.

    encoder: the engine's keyframe encoder; None encodes on the prompt path (as EVERY_FRAME).
    pipeline: built from model and config when not given.
    text: the CLIP ranking of text prompts; None answers them with unsupported_prompt.
    capture_store: opens (once) the engine's capture store; None turns 3D capture off.
    """

    model: SegmentationModel
    executor: Executor
    config: EngineConfig
    encoder: KeyframeEncoder | None = None
    pipeline: Pipeline | None = None
    text: TextRanker | None = None
    capture_store: Callable[[], Awaitable[CaptureStore]] | None = None

    def __post_init__(self) -> None:
        if self.pipeline is None:
            c = self.config
            pipeline = Pipeline(self.model, c.lift, c.mask_clean, c.mapping, c.everything, c.clean_masks)
            object.__setattr__(self, "pipeline", pipeline)


@dataclass
class Counters:
    """The session's counters that no part owns (the window and the queue count their own)."""

    prompts_answered: int = 0
    prompts_dropped: int = 0  # beyond the queue's own drops: superseded gaze prompts
    errors_sent: int = 0
    keyframes_encoded: int = 0
    prompts_waited_for_encode: int = 0
    speculative_decodes: int = 0
    speculative_hits: int = 0
    dwell_selections: int = 0
    track_results: int = 0

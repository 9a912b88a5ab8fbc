"""Answering a voice-text prompt: candidate masks -> CLIP + gaze + IoU ranking -> the best one, lifted.

Why a file of its own: the session decides *which* candidates (it owns keyframes and waits for
encodes), engine/fusion/text.py decides *how* they rank (a pure function); this file joins the two
for one prompt and loads the CLIP model the engine was started with.

Candidates (ARCHITECTURE: "voice text -> CLIP -> ranking of candidate masks"):
- the prompt has a gaze, a click, a box or a mask: the decoder's multimask outputs for the prompt
  without its text (SAM's three granularities around the point); the gaze term is measured from
  the gaze point (the samples' confidence-weighted mean), else from the first positive click; a
  box or mask alone gets none;
- text alone: segment-everything over the frame (engine/everything.py), its `max_candidates` best
  masks by predicted IoU; no gaze term.

The session gets those candidates from the pipeline without a 3D lift, `TextRanker.rank` scores
them, marks the best and lifts only that one. The result keeps the candidates' order (the model's
order, so tracking and decoder indices still agree) and `best` points at the highest score; every
candidate carries its `MaskRanking` (docs/protocol.md: `masks[i].ranking`). The CLIP work (the
phrase, cached; all crops in one batch) runs on the worker thread, between the `decode` and the
`lift` timestamps.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.core import Prompt, RGBDFrame
from engine.errors import BadPrompt, UnsupportedPrompt
from engine.fusion.gaze import GazeGeometry
from engine.fusion.text import TextRankConfig, rank_by_text
from engine.pipeline import Answer, Pipeline, anchor_of
from models.interfaces import ModelError, PromptInput, TextImageEncoder
from models.registry import ModelSpec, build_text_encoder

NO_TEXT_ENCODER = (
    "text prompts need a CLIP model, and this engine was started without one: restart it with "
    "--clip-checkpoint PATH (an open_clip folder with open_clip_config.json and weights, or a weights "
    "file plus --clip-arch ARCH), or send a point, box, mask or gaze instead"
)


def load_clip_encoder(checkpoint: Path, arch: str | None = None, device: str = "cpu") -> TextImageEncoder:
    """The CLIP text + image encoder from a local checkpoint (models.registry.build_text_encoder).

    Raises:
        ModelError / CheckpointError: missing or bad checkpoint (the message says what to get), or a
            text encoder without an image side, which cannot rank masks.
    """
    encoder = build_text_encoder(ModelSpec(f"clip:{arch}" if arch else "clip", checkpoint, device))
    if not isinstance(encoder, TextImageEncoder):
        raise ModelError(
            f"text encoder {encoder.name!r} cannot embed images, so it cannot rank masks; "
            "use a CLIP checkpoint"
        )
    return encoder


def spatial_part(prompt: Prompt) -> Prompt:
    """The prompt without its text: what the decoder sees (empty for text alone)."""
    return replace(prompt, text=None)


def attention_point(prompt: Prompt, request: PromptInput) -> tuple[float, float] | None:
    """Where the user looked or pointed, in the frame's pixels: the gaze point (appended last by
    `Prompt.anchor_points`), else the first positive click, else None (a box or mask alone says
    where the object is, not a point on it, so it gets no gaze term)."""
    if prompt.gaze:
        x, y = request.point_coords[-1]
        return float(x), float(y)
    positives = request.point_coords[request.point_labels == 1]
    return (float(positives[0, 0]), float(positives[0, 1])) if len(positives) else None


@dataclass(frozen=True)
class TextRanker:
    """The engine's CLIP model and ranking settings, shared by every session and worker thread.

    The encoder's phrase cache is an LRU dict that a lookup reorders, so phrase lookups are
    serialised by a lock (a cached phrase takes microseconds); crops run without it.
    """

    encoder: TextImageEncoder
    config: TextRankConfig = TextRankConfig()
    _phrase_lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def rank(
        self,
        pipeline: Pipeline,
        answer: Answer,
        frame: RGBDFrame,
        prompt: Prompt,
        request: PromptInput | None,
    ) -> Answer:
        """Rank an unlifted answer's candidates by `prompt.text` and lift the winner (worker thread).

        Args:
            answer: the pipeline's candidates in `frame`'s pixels, computed with want_3d False.
            request: the decoder prompt the candidates came from (`prompt_input(spatial_part(prompt))`,
                in `frame`'s pixels), or None for segment-everything: gives the gaze term's point
                (`attention_point`) and the lift's anchor.
        """
        point = attention_point(prompt, request) if request is not None else None
        anchor = anchor_of(request) if request is not None else None
        result = answer.result
        candidates = result.masks[: self.config.max_candidates]
        if not candidates:
            raise BadPrompt(
                f"no mask in frame {frame.frame_id} to match {prompt.text!r} against; "
                "look at or point to the object",
                prompt.prompt_id,
            )
        masks = [c.mask.decode() for c in candidates]
        with self._phrase_lock:
            phrase = self.encoder.encode_text([prompt.text or ""])[0]
        geometry = GazeGeometry.from_intrinsics(frame.intrinsics) if point is not None else None
        ranking = rank_by_text(
            masks,
            [c.score for c in candidates],
            frame.rgb,
            phrase,
            self.encoder,
            point,
            geometry,
            self.config,
        )
        best = ranking.best
        ranked = tuple(replace(c, ranking=ranking.mask_ranking(k)) for k, c in enumerate(candidates))
        segment, stamps = pipeline.lift(masks[best], frame, anchor, prompt.want_3d, result.timestamps)
        out = replace(result, masks=ranked, best=best, segment=segment, timestamps=stamps)
        return Answer(out, masks[best], answer.mapping, answer.prediction)


def require_text_ranker(ranker: TextRanker | None, prompt: Prompt) -> TextRanker:
    """The ranker, or the UNSUPPORTED_PROMPT error that names the flag to pass."""
    if ranker is None:
        raise UnsupportedPrompt(NO_TEXT_ENCODER, prompt.prompt_id)
    return ranker

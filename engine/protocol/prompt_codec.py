"""Prompt messages: encode_prompt and the decoder of each prompt item type (point, box, mask,
text, gaze, everything), one function per item in a table.

Every item is bounded as it is parsed (counts, lengths, coordinate ranges), so a prompt of 10**6
points is refused at the first point over the limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from engine.core import BoxPrompt, GazeSample, MaskPrompt, PointPrompt, Prompt
from engine.protocol import payloads as pl
from engine.protocol.envelope import Envelope, pack
from engine.protocol.errors import ErrorCode, ProtocolError
from engine.protocol.fields import bounded as _bounded
from engine.protocol.fields import field as _field
from engine.protocol.fields import floats as _floats
from engine.protocol.messages import AnswerMode, EverythingRequest, Limits, MessageType, PromptMessage

MAX_PIXEL = 1e5  # point, box and gaze coordinates in pixels (outside the image is checked later)


def encode_prompt(
    prompt: Prompt,
    track: bool = False,
    answer: AnswerMode = AnswerMode.NOW,
    everything: EverythingRequest | None = None,
) -> bytes:
    """A prompt message; track / answer / everything are written only when not their v1 default."""
    items: list[dict[str, Any]] = [
        {"type": "point", "x": p.x, "y": p.y, "label": p.label} for p in prompt.points
    ]
    payloads: list[tuple[str, str, bytes]] = []
    if prompt.box is not None:
        items.append({"type": "box", **asdict(prompt.box)})
    if prompt.mask is not None:
        from engine.core import RLEMask

        rle = RLEMask.encode(prompt.mask.mask)
        payloads.append(("mask", "rle32", pl.encode_rle(rle)))
        items.append({"type": "mask", "payload": "mask", "height": rle.height, "width": rle.width})
    if prompt.text:
        items.append({"type": "text", "text": prompt.text})
    if prompt.gaze:
        items.append({"type": "gaze", "samples": [[g.t, g.x, g.y, g.confidence] for g in prompt.gaze]})
    if everything is not None:
        items.append({"type": "everything", **{k: v for k, v in asdict(everything).items() if v is not None}})
    header = {
        "type": MessageType.PROMPT,
        "prompt_id": prompt.prompt_id,
        "frame_id": prompt.frame_id,
        "multimask": prompt.multimask,
        "want_3d": prompt.want_3d,
        "items": items,
    }
    if track:
        header["track"] = True
    if answer is not AnswerMode.NOW:
        header["answer"] = str(answer)
    return pack(header, payloads)


def _decode_prompt(env: Envelope, limits: Limits) -> PromptMessage:
    h = env.header
    pid = _field(h, "prompt_id", int)
    parsed: dict[str, Any] = {"points": [], "gaze": []}
    for item in _field(h, "items", list, ref_id=pid):
        if not isinstance(item, dict):
            raise ProtocolError(ErrorCode.BAD_PROMPT, "each prompt item must be an object with a 'type'", pid)
        parser = _PROMPT_ITEMS.get(item.get("type"))  # type: ignore[arg-type]
        if parser is None:
            raise ProtocolError(
                ErrorCode.UNKNOWN_PROMPT,
                f"unknown prompt item type {item.get('type')!r}; v1 items: {', '.join(_PROMPT_ITEMS)}",
                pid,
            )
        parser(item, env, parsed, pid, limits)
    if len(parsed["points"]) > limits.max_points or len(parsed["gaze"]) > limits.max_gaze_samples:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"at most {limits.max_points} points and {limits.max_gaze_samples} gaze samples",
            pid,
        )
    prompt = Prompt(
        prompt_id=pid,
        frame_id=_field(h, "frame_id", int, ref_id=pid),
        points=tuple(parsed["points"]),
        box=parsed.get("box"),
        mask=parsed.get("mask"),
        text=parsed.get("text"),
        gaze=tuple(parsed["gaze"]),
        multimask=_field(h, "multimask", bool, default=True, ref_id=pid),
        want_3d=_field(h, "want_3d", bool, default=True, ref_id=pid),
    )
    everything = parsed.get("everything")
    if prompt.is_empty() and everything is None:
        raise ProtocolError(
            ErrorCode.BAD_PROMPT,
            "prompt has no items; send a point, box, mask, text, gaze or everything",
            pid,
        )
    answer = _field(h, "answer", str, default=str(AnswerMode.NOW), ref_id=pid)
    if answer not in AnswerMode.__members__.values():
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"field 'answer' must be one of {', '.join(AnswerMode)}, got {answer!r}",
            pid,
        )
    track = _field(h, "track", bool, default=False, ref_id=pid)
    if track and everything is not None:
        raise ProtocolError(
            ErrorCode.BAD_PROMPT,
            "an everything prompt cannot be tracked; track one of its masks with a mask prompt",
            pid,
        )
    return PromptMessage(prompt, track, AnswerMode(answer), everything)


def _item_point(item: dict, env: Envelope, out: dict, pid: int, limits: Limits) -> None:
    x, y = (_bounded(item, k, -MAX_PIXEL, MAX_PIXEL, ref_id=pid) for k in ("x", "y"))
    label = _field(item, "label", int, 1, pid)
    if label not in (0, 1):
        raise ProtocolError(
            ErrorCode.BAD_PROMPT, f"point label must be 1 (object) or 0 (background), got {label}", pid
        )
    out["points"].append(PointPrompt(x, y, label))
    if (
        len(out["points"]) > limits.max_points
    ):  # stop early: a list of 10**6 points is refused at the first extra one
        raise ProtocolError(ErrorCode.TOO_LARGE, f"at most {limits.max_points} points per prompt", pid)


def _item_box(item: dict, env: Envelope, out: dict, pid: int, limits: Limits) -> None:
    out["box"] = BoxPrompt(
        *(_bounded(item, k, -MAX_PIXEL, MAX_PIXEL, ref_id=pid) for k in ("x0", "y0", "x1", "y1"))
    )


def _item_mask(item: dict, env: Envelope, out: dict, pid: int, limits: Limits) -> None:
    name = _field(item, "payload", str, ref_id=pid)
    if name not in env.payloads:
        raise ProtocolError(
            ErrorCode.BAD_PROMPT, f"mask item names payload {name!r}, which the message lacks", pid
        )
    height, width = _field(item, "height", int, ref_id=pid), _field(item, "width", int, ref_id=pid)
    if not (0 < width <= limits.max_width and 0 < height <= limits.max_height):
        raise ProtocolError(ErrorCode.TOO_LARGE, f"mask {width}x{height} exceeds the frame limits", pid)
    try:
        out["mask"] = MaskPrompt(pl.decode_rle(env.payloads[name][1], height, width).decode())
    except ProtocolError as exc:
        raise ProtocolError(ErrorCode.BAD_PROMPT, f"mask prompt: {exc.message}", pid) from None


def _item_text(item: dict, env: Envelope, out: dict, pid: int, limits: Limits) -> None:
    text = _field(item, "text", str, ref_id=pid)
    if len(text) > 4 * limits.max_text_chars:  # before strip(): do not copy a huge string
        raise ProtocolError(
            ErrorCode.BAD_PROMPT, f"text must have 1..{limits.max_text_chars} characters", pid
        )
    text = text.strip()
    if not text or len(text) > limits.max_text_chars:
        raise ProtocolError(
            ErrorCode.BAD_PROMPT, f"text must have 1..{limits.max_text_chars} characters", pid
        )
    out["text"] = text


def _item_gaze(item: dict, env: Envelope, out: dict, pid: int, limits: Limits) -> None:
    samples = _field(item, "samples", list, ref_id=pid)
    if len(out["gaze"]) + len(samples) > limits.max_gaze_samples:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"at most {limits.max_gaze_samples} gaze samples per prompt", pid
        )
    for sample in samples:
        if not (isinstance(sample, list) and len(sample) in (3, 4)):
            raise ProtocolError(
                ErrorCode.BAD_PROMPT, "each gaze sample is [t, x, y] or [t, x, y, confidence]", pid
            )
        values = _floats({"s": sample}, "s", len(sample), pid)
        if np.any(np.abs(values[1:3]) > MAX_PIXEL):
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, f"gaze x, y must be pixel coordinates within +-{MAX_PIXEL:g}", pid
            )
        if len(values) == 4 and not 0.0 <= values[3] <= 1.0:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, f"gaze confidence must be in [0, 1], got {values[3]:g}", pid
            )
        out["gaze"].append(GazeSample(*(float(v) for v in values)))


def _item_everything(item: dict, env: Envelope, out: dict, pid: int, limits: Limits) -> None:
    side = _field(item, "points_per_side", int, default=32, ref_id=pid)
    if not 1 <= side <= 64:
        raise ProtocolError(
            ErrorCode.BAD_PROMPT, f"everything: points_per_side must be in 1..64, got {side}", pid
        )
    thresholds = {}
    for key in ("pred_iou_thresh", "stability_score_thresh"):
        value = _field(item, key, float, default=None, ref_id=pid)
        if value is not None and not 0.0 <= value <= 1.0:
            raise ProtocolError(
                ErrorCode.BAD_PROMPT, f"everything: {key} must be in [0, 1], got {value}", pid
            )
        thresholds[key] = value
    out["everything"] = EverythingRequest(side, **thresholds)


_PROMPT_ITEMS: dict[str, Callable[[dict, Envelope, dict, int, Limits], None]] = {
    "point": _item_point,
    "box": _item_box,
    "mask": _item_mask,
    "text": _item_text,
    "gaze": _item_gaze,
    "everything": _item_everything,
}

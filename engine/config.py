"""Engine settings, in one frozen dataclass the CLI fills from flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.admission import AdmissionConfig
from engine.anchor import AnchorConfig
from engine.capture.config import CaptureConfig
from engine.dwell import DwellConfig
from engine.everything import EverythingConfig
from engine.fusion.text import TextRankConfig
from engine.lift import LiftConfig
from engine.mapping import MappingConfig
from engine.masks import MaskCleanConfig
from engine.protocol import Limits
from engine.remote.config import RayBackendConfig
from engine.scheduler import KeyframeConfig
from engine.tracking import TrackingConfig


@dataclass(frozen=True)
class EngineConfig:
    """Everything an Engine needs to start.

    Attributes:
        tokens: legacy plain session tokens accepted in Hello (each one identity); with neither
            tokens nor token_secret any token is accepted (local demos only). engine/auth.py.
        token_secret: HMAC secret of signed, expiring tokens (`xrseg token`); the identity in a
            token owns the sessions it opens.
        admission: connection caps, message rates, reply queues, failed-auth limits
            (engine/admission.py).
        model: registry name of the segmentation backend (`xrseg models list`).
        checkpoint: weights file for backends that need one.
        workers: threads for image decode, prompt decode, mapping, cleaning and lift, shared by all
            sessions; keyframe encodes run on one more thread of their own (engine/scheduler.py).
        frame_window: frames a session keeps (undecoded) so prompts can refer to recent ones;
            newer frames push out older ones, and those never used are counted as dropped.
        prompt_queue: prompts a session may have waiting; the oldest is dropped (and reported)
            when a new one arrives on a full queue.
        reply_queue: replies a session may have waiting for its transport; a client that does not
            read loses the newest beyond it (counted in its stats as replies_dropped).
        session_linger_s: how long a disconnected session waits to be resumed before it is freed.
        keyframes: when frames are encoded and how the encoder batches (engine/scheduler.py).
        mapping: prompt and mask mapping between frames (engine/mapping.py).
        clean_masks: clean every decoded mask (islands, holes, depth edges) before the lift.
        mask_clean: the cleaning's settings (engine/masks/clean.py).
        everything: the point-grid automatic masks (engine/everything.py).
        gaze: fixation thresholds and speculative decoding (engine/dwell.py).
        tracking: tracked objects per session and when to distrust a decode (engine/tracking.py).
        anchor: how a held or tracked object's world anchor is fused over frames (engine/anchor.py).
        clip_checkpoint: CLIP weights for text prompts (an open_clip folder, or a weights file
            with clip_arch); None answers text prompts with unsupported_prompt.
        clip_arch: open_clip architecture of a weights-file clip_checkpoint (e.g. ViT-B-32).
        text_ranking: weights and crops of the text ranking (engine/fusion/text.py).
        capture: 3D object capture settings (voxel size, truncation, previews: engine/capture/config.py).
        capture_dir: the capture store's folder; None: $XRSEG_CAPTURES, else ~/.local/share/xrseg/captures.
        backend: where the models run: "local" (in this process, the default) or "ray" (Ray
            Serve deployments; engine/remote/, engine/backends.py).
        ray: the ray backend's cluster address, replicas, GPU fractions, batching, retries.
        warm_up: run one prompt end to end on a generated 640x480 frame at start
            (engine/pipeline.py warm_up) so the first user prompt pays no first-call costs.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    tokens: tuple[str, ...] = field(default=(), repr=False)
    token_secret: bytes | None = field(default=None, repr=False)
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    model: str = "geometric"
    checkpoint: Path | None = None
    device: str = "cpu"
    workers: int = 2
    frame_window: int = 4
    prompt_queue: int = 8
    reply_queue: int = 64
    session_linger_s: float = 30.0
    hello_timeout_s: float = 10.0
    limits: Limits = field(default_factory=Limits)
    lift: LiftConfig = field(default_factory=LiftConfig)
    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    clean_masks: bool = True
    mask_clean: MaskCleanConfig = field(default_factory=MaskCleanConfig)
    everything: EverythingConfig = field(default_factory=EverythingConfig)
    gaze: DwellConfig = field(default_factory=DwellConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    anchor: AnchorConfig = field(default_factory=AnchorConfig)
    clip_checkpoint: Path | None = None
    clip_arch: str | None = None
    text_ranking: TextRankConfig = field(default_factory=TextRankConfig)
    warm_up: bool = True
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    capture_dir: Path | None = None
    backend: str = "local"
    ray: RayBackendConfig = field(default_factory=RayBackendConfig)

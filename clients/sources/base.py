"""What every device source yields: typed frames with their camera, pose, device time and gaze.

Why: the streaming command, the demo and the benches must not care whether frames come from a
folder, a RealSense camera, a `.bag` recording, a webcam or a headset. A source is opened with
`start()`, read with blocking `read()` calls (cameras block; the streamer runs them in a
thread), and closed with `stop()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from engine.core import CameraIntrinsics, GazeSample, RGBDFrame


class SourceError(RuntimeError):
    """A source cannot start or read; the message says what is missing and what to do."""


class Clock(StrEnum):
    """Which clock a frame's device_ts is on."""

    HARDWARE = "hardware"  # the device's own counter (RealSense hardware_clock)
    SYSTEM = "system"  # this machine's time.time() (RealSense global/system time, OpenXR converted)
    RECORDING = "recording"  # the recording's own time line (folder timestamps, bag playback)


@dataclass(frozen=True, eq=False)
class SourceFrame:
    """One frame from a source.

    Attributes:
        frame: colour (H, W, 3) uint8 RGB, depth (H, W) uint16 registered to colour (or None),
            intrinsics, depth_scale (raw units per metre), pose (camera-to-world, OpenCV camera
            axes; None when the source does not track), capture_ts.
        device_ts: seconds on `clock` when the device captured the frame.
        clock: which clock device_ts is on.
        gaze: gaze samples in this frame's pixels, oldest first (empty when none are known); their
            t is on the same clock as device_ts.
    """

    frame: RGBDFrame
    device_ts: float
    clock: Clock
    gaze: tuple[GazeSample, ...] = ()


@dataclass(frozen=True)
class SourceInfo:
    """What a started source delivers. live: frames arrive in real time (do not pace them)."""

    name: str
    intrinsics: CameraIntrinsics
    depth_scale: float
    fps: float
    live: bool
    has_depth: bool = True
    has_pose: bool = False
    has_gaze: bool = False


@dataclass(frozen=True)
class DepthFilters:
    """RealSense depth post-processing (applied in the depth frame, before alignment to colour).

    Decimation is never applied: it changes the depth resolution, and the protocol's depth must
    match the colour image pixel for pixel.
    """

    spatial: bool = False
    temporal: bool = False
    hole_filling: bool = False


@dataclass(frozen=True)
class SourceOptions:
    """Everything `xrseg stream` can say about a source; each source reads what concerns it.

    Attributes:
        target: folder or recording path (folder, bag), camera serial (realsense) or index (webcam).
        width, height, fps: camera mode (live cameras); fps also paces recordings when given.
        filters: RealSense depth filters.
        align: align depth to colour (RealSense); False keeps depth as recorded.
        gaze_file: recorded gaze trace (CSV or JSON lines) replayed with the frames.
        calibration: camera-to-head calibration file (openxr+realsense).
        reference_space: OpenXR reference space of poses: "local" or "stage".
        max_frames: stop after this many frames.
    """

    target: str | None = None
    width: int = 640
    height: int = 480
    fps: float | None = None
    filters: DepthFilters = DepthFilters()
    align: bool = True
    gaze_file: Path | None = None
    calibration: Path | None = None
    reference_space: str = "local"
    max_frames: int | None = None


class Source(Protocol):
    """A device or recording that yields SourceFrames."""

    def start(self) -> SourceInfo:
        """Open the device or file. Raises SourceError with what to do when it cannot."""
        ...

    def read(self) -> SourceFrame | None:
        """The next frame (blocks for live devices); None at the end of a recording."""
        ...

    def stop(self) -> None:
        """Release the device (idempotent)."""
        ...

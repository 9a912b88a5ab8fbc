"""A webcam through OpenCV's VideoCapture: colour only, no depth, no pose.

Intrinsics: a webcam does not report them. Without a calibration, a pinhole with the principal
point at the image centre and a 60 degree horizontal field of view (typical of laptop and USB
webcams) is assumed and the log says so; give the real ones as an Open3D intrinsics JSON
(`--calibration intrinsics.json`, as written by OpenCV/Open3D calibration tools) when known.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import cv2

from clients.sources.base import Clock, SourceError, SourceFrame, SourceInfo, SourceOptions
from clients.sources.folder import SequenceError, read_open3d_intrinsics
from engine.core import CameraIntrinsics, RGBDFrame

log = logging.getLogger(__name__)

ASSUMED_HFOV_DEG = 60.0


def assumed_intrinsics(width: int, height: int, hfov_deg: float = ASSUMED_HFOV_DEG) -> CameraIntrinsics:
    """A centred pinhole with the given horizontal field of view and square pixels."""
    f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return CameraIntrinsics(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0)


class WebcamSource:
    """OpenCV camera `options.target` (an index, default 0, or a device path like /dev/video2)."""

    def __init__(self, options: SourceOptions) -> None:
        target = options.target or "0"
        self._device: int | str = int(target) if target.isdigit() else target
        self._options = options
        self._capture: cv2.VideoCapture | None = None
        self._info: SourceInfo | None = None
        self._count = 0

    def start(self) -> SourceInfo:
        capture = cv2.VideoCapture(self._device)
        if not capture.isOpened():
            capture.release()
            where = f"/dev/video{self._device}" if isinstance(self._device, int) else self._device
            raise SourceError(
                f"no webcam at {where} (OpenCV could not open camera {self._device!r}): plug one in, "
                "check `ls /dev/video*` and that this user may read it (group video), or pick "
                "another with `xrseg stream INDEX --source webcam`"
            )
        o = self._options
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, o.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, o.height)
        if o.fps:
            capture.set(cv2.CAP_PROP_FPS, o.fps)
        ok, image = capture.read()
        if not ok or image is None:
            capture.release()
            raise SourceError(
                f"webcam {self._device!r} opened but delivers no frames: is another program using it?"
            )
        height, width = image.shape[:2]
        k = self._intrinsics(width, height)
        self._capture = capture
        fps = float(capture.get(cv2.CAP_PROP_FPS) or o.fps or 30.0)
        self._info = SourceInfo(f"webcam {self._device}", k, 1000.0, fps, live=True, has_depth=False)
        return self._info

    def read(self) -> SourceFrame | None:
        if self._capture is None or self._info is None:
            raise SourceError("read() before start()")
        if self._options.max_frames is not None and self._count >= self._options.max_frames:
            return None
        ok, image = self._capture.read()
        if not ok or image is None:
            raise SourceError(f"webcam {self._device!r} stopped delivering frames (unplugged?)")
        now = time.time()
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        frame = RGBDFrame(self._count, rgb, None, self._info.intrinsics, 1000.0, None, now)
        self._count += 1
        return SourceFrame(frame, now, Clock.SYSTEM)

    def stop(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def _intrinsics(self, width: int, height: int) -> CameraIntrinsics:
        path = self._options.calibration
        if path is not None:
            try:
                k = read_open3d_intrinsics(Path(path))
            except SequenceError as exc:
                raise SourceError(str(exc)) from None
            if k is None:
                raise SourceError(f"intrinsics file {path} not found")
            if (k.width, k.height) != (width, height):
                raise SourceError(
                    f"{path} is for {k.width}x{k.height} but the webcam delivers {width}x{height}"
                )
            return k
        log.warning(
            "webcam: no --calibration intrinsics; assuming a %g degree horizontal field of view",
            ASSUMED_HFOV_DEG,
        )
        return assumed_intrinsics(width, height)

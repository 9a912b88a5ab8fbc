"""Intel RealSense cameras (live) and their recordings (`.bag`, `.db3`) through pyrealsense2.

Colour (rgb8) and depth (z16) are streamed together; depth is post-processed in its own frame
(spatial / temporal / hole-filling filters as chosen; decimation never, it would change the
resolution) and then aligned to colour with `rs.align`, so every depth pixel sits under the
colour pixel the protocol expects. When the depth stream is already registered to colour
(same intrinsics, identity extrinsics: a recording made that way), alignment is skipped: it
would only resample the same grid (rs.align's footprint splat changes ~5 % of pixels, at edges).

Intrinsics and the depth scale are read from the device (or the recording); frames carry the
device's timestamp and its clock domain. Recordings: librealsense >= 2.58 records ROS 2 `.db3`
files and still plays the older ROS 1 `.bag` files; both are accepted.

pyrealsense2 is an optional extra (`pip install xrseg[realsense]`): wheels exist only for some
platforms (x86-64 Linux and Windows), and most users of the engine have no RealSense camera.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from clients.sources.base import Clock, DepthFilters, SourceError, SourceFrame, SourceInfo, SourceOptions
from engine.core import CameraIntrinsics, RGBDFrame

log = logging.getLogger(__name__)

RECORDING_SUFFIXES = (".bag", ".db3")
LIVE_TIMEOUT_MS = 5000
PLAYBACK_POLL_MS = 500
PLAYBACK_STALL_MS = 60_000


def import_realsense() -> Any:
    """pyrealsense2, or a SourceError saying how to install it."""
    try:
        import pyrealsense2 as rs
    except ImportError:
        raise SourceError(
            "pyrealsense2 is not installed: pip install 'xrseg[realsense]' (wheels for x86-64 Linux "
            "and Windows; elsewhere build librealsense with its Python bindings)"
        ) from None
    return rs


def float32_value(value: float) -> float:
    """The shortest decimal librealsense's float32 `value` stands for (0.001, not 0.0010000000474974513)."""
    return float(np.format_float_positional(np.float32(value), unique=True, trim="-"))


def intrinsics_from_rs(intr: Any) -> CameraIntrinsics:
    """CameraIntrinsics from an rs.intrinsics (float32 fields, read as the decimals they store)."""
    coeffs = [float(c) for c in intr.coeffs]
    if any(abs(c) > 1e-6 for c in coeffs):
        log.warning(
            "colour stream has %s distortion %s; the protocol's camera is a pinhole, masks near "
            "the image border will be slightly off",
            intr.model,
            coeffs,
        )
    return CameraIntrinsics(
        int(intr.width),
        int(intr.height),
        float32_value(intr.fx),
        float32_value(intr.fy),
        float32_value(intr.ppx),
        float32_value(intr.ppy),
    )


class RealSenseSource:
    """A RealSense camera or recording as a Source. Build with `live(options)` or `playback(options)`."""

    def __init__(self, options: SourceOptions, recording: Path | None) -> None:
        self._options = options
        self._recording = recording
        self._rs: Any = None
        self._pipeline: Any = None
        self._align: Any = None
        self._filters: list[Any] = []
        self._playback: Any = None
        self._info: SourceInfo | None = None
        self._count = 0
        self._halves: dict[str, Any] = {}
        self.unpaired_dropped = 0

    @classmethod
    def live(cls, options: SourceOptions) -> RealSenseSource:
        """A connected camera; options.target picks one by serial number (default: the first)."""
        return cls(options, None)

    @classmethod
    def playback(cls, options: SourceOptions) -> RealSenseSource:
        """A `.bag` / `.db3` recording (options.target), played as fast as it is read."""
        if not options.target:
            raise SourceError("--source bag needs the recording: xrseg stream FILE.bag --source bag")
        return cls(options, Path(options.target))

    # -- Source ------------------------------------------------------------------------------

    def start(self) -> SourceInfo:
        rs = self._rs = import_realsense()
        config = rs.config()
        if self._recording is not None:
            self._check_recording(self._recording)
            config.enable_device_from_file(str(self._recording), repeat_playback=False)
            usb = None
        else:
            usb = self._choose_camera(config)
            o = self._options
            fps = int(o.fps or 30)
            config.enable_stream(rs.stream.depth, o.width, o.height, rs.format.z16, fps)
            config.enable_stream(rs.stream.color, o.width, o.height, rs.format.rgb8, fps)
        self._pipeline = rs.pipeline()
        try:
            if self._recording is not None:
                # Non-real-time before the first frame: started in real time, a playback pushes
                # frames that the pipeline drops before we read them. config caches the device
                # it resolves, so start() plays this same (now non-real-time) device.
                resolved = config.resolve(rs.pipeline_wrapper(self._pipeline))
                resolved.get_device().as_playback().set_real_time(False)
            profile = self._pipeline.start(config)
        except RuntimeError as exc:
            self._pipeline = None
            raise SourceError(self._start_failure(exc, usb)) from None
        device = profile.get_device()
        if self._recording is not None:
            self._playback = device.as_playback()
            if self._playback.is_real_time():  # every recorded frame, as fast as we read
                self._playback.set_real_time(False)
        color = profile.get_stream(rs.stream.color).as_video_stream_profile()
        depth = profile.get_stream(rs.stream.depth).as_video_stream_profile()
        scale_m = float32_value(device.first_depth_sensor().get_depth_scale())
        registered = _registered(depth, color)
        self._align = rs.align(rs.stream.color) if self._options.align and not registered else None
        self._filters = _depth_filters(rs, self._options.filters)
        k = intrinsics_from_rs(color.get_intrinsics())
        name = (
            f"realsense {self._recording}"
            if self._recording
            else f"realsense {device.get_info(rs.camera_info.name)}"
        )
        log.info(
            "%s: %dx%d @ %d fps, depth scale %g m, %s",
            name,
            k.width,
            k.height,
            color.fps(),
            scale_m,
            "depth already registered to colour" if registered else "depth aligned to colour",
        )
        self._info = SourceInfo(
            name, k, 1.0 / scale_m, float(self._options.fps or color.fps()), live=self._recording is None
        )
        return self._info

    def read(self) -> SourceFrame | None:
        rs, info = self._rs, self._info
        if self._pipeline is None or info is None:
            raise SourceError("read() before start()")
        if self._options.max_frames is not None and self._count >= self._options.max_frames:
            return None
        waited_ms = 0
        while True:
            timeout = LIVE_TIMEOUT_MS if info.live else PLAYBACK_POLL_MS
            ok, frames = self._pipeline.try_wait_for_frames(timeout)
            if not ok:
                if info.live:
                    raise SourceError(
                        f"no frames from the camera for {timeout / 1000:.0f} s: is it still "
                        "plugged in? A USB 2 link or hub may not carry this mode"
                    )
                if self._playback.current_status() == rs.playback_status.stopped:
                    return None  # end of the recording
                waited_ms += timeout  # a loaded machine can be slow to decode the next frame
                if waited_ms >= PLAYBACK_STALL_MS:
                    raise SourceError(f"{self._recording}: playback stalled for {waited_ms / 1000:.0f} s")
                continue
            for block in self._filters:
                frames = block.process(frames).as_frameset()
            if self._align is not None:
                frames = self._align.process(frames)
            depth, color = frames.get_depth_frame(), frames.get_color_frame()
            if depth and color:
                break
            paired = self._pair_halves(depth, color)
            if paired is not None:
                depth, color = paired
                break
        rgb = np.asanyarray(color.get_data()).copy()
        raw = np.asanyarray(depth.get_data()).copy()
        domain = color.get_frame_timestamp_domain()
        clock = (
            Clock.RECORDING
            if not info.live
            else (Clock.HARDWARE if domain == rs.timestamp_domain.hardware_clock else Clock.SYSTEM)
        )
        device_ts = color.get_timestamp() / 1000.0
        frame = RGBDFrame(self._count, rgb, raw, info.intrinsics, info.depth_scale, None, device_ts)
        self._count += 1
        return SourceFrame(frame, device_ts, clock)

    def stop(self) -> None:
        if self._pipeline is not None:
            pipeline, self._pipeline = self._pipeline, None
            pipeline.stop()

    # -- helpers -----------------------------------------------------------------------------

    def _pair_halves(self, depth: Any, color: Any) -> tuple[Any, Any] | None:
        """Pair a depth and a colour frame that the pipeline's syncer delivered apart.

        On a loaded machine the syncer stops waiting for the other stream and hands each frame
        on alone; frames with the same timestamp (within half a frame) still belong together.
        Such a pair cannot go through rs.align (it needs one frameset), so when alignment is
        needed it is dropped and counted instead.
        """
        single = depth or color
        if not single:
            return None
        single.keep()
        self._halves["depth" if depth else "color"] = single
        d, c = self._halves.get("depth"), self._halves.get("color")
        if d is None or c is None:
            return None
        if abs(d.get_timestamp() - c.get_timestamp()) > 500.0 / max(
            self._info.fps if self._info else 30.0, 1.0
        ):
            self._halves.pop("depth" if d.get_timestamp() < c.get_timestamp() else "color")
            return None
        self._halves.clear()
        if self._align is not None:
            self.unpaired_dropped += 1
            log.warning("%s: dropped a depth/colour pair the syncer split (cannot align it)", self._info)
            return None
        return d, c

    def _check_recording(self, path: Path) -> None:
        if not path.is_file():
            raise SourceError(
                f"recording {path} not found (give the .bag or .db3 file written by "
                "realsense-viewer, rs-record or clients.sources.realsense_record)"
            )
        if path.suffix.lower() not in RECORDING_SUFFIXES:
            raise SourceError(f"{path} is not a RealSense recording: expected a .bag or .db3 file")

    def _choose_camera(self, config: Any) -> str | None:
        """Pick the camera (by serial when given); returns its USB type ("3.2", "2.1") if known."""
        rs = self._rs
        devices = list(rs.context().query_devices())
        if not devices:
            raise SourceError(
                "no RealSense camera found: plug one into a USB 3 port (check `rs-enumerate-devices` "
                "or `lsusb`), or stream a recording with --source bag FILE"
            )
        serials = [d.get_info(rs.camera_info.serial_number) for d in devices]
        wanted = self._options.target or serials[0]
        if wanted not in serials:
            raise SourceError(f"no RealSense camera with serial {wanted}; connected: {', '.join(serials)}")
        device = devices[serials.index(wanted)]
        config.enable_device(wanted)
        if device.supports(rs.camera_info.usb_type_descriptor):
            return str(device.get_info(rs.camera_info.usb_type_descriptor))
        return None

    def _start_failure(self, exc: RuntimeError, usb: str | None) -> str:
        if self._recording is not None:
            return (
                f"cannot play {self._recording}: {exc} (is it a RealSense recording with colour and depth?)"
            )
        o = self._options
        mode = f"{o.width}x{o.height} at {int(o.fps or 30)} fps (colour rgb8 + depth z16)"
        if usb is not None and usb.startswith("2"):
            return (
                f"the camera is on a USB {usb} link, too slow for {mode}: use a USB 3 port and cable, or "
                f"a smaller mode (--width 640 --height 480 --fps 15). librealsense said: {exc}"
            )
        return f"the camera cannot stream {mode}: {exc}. Try --width 640 --height 480 --fps 30"


def _registered(depth: Any, color: Any) -> bool:
    """True when depth already lies on colour's pixel grid (same intrinsics, identity extrinsics)."""
    di, ci = depth.get_intrinsics(), color.get_intrinsics()
    same = (di.width, di.height, di.fx, di.fy, di.ppx, di.ppy) == (
        ci.width,
        ci.height,
        ci.fx,
        ci.fy,
        ci.ppx,
        ci.ppy,
    )
    try:
        extrinsics = depth.get_extrinsics_to(color)
    except RuntimeError:
        return False
    identity = np.allclose(np.reshape(extrinsics.rotation, (3, 3)), np.eye(3)) and not np.any(
        extrinsics.translation
    )
    return bool(same and identity)


def _depth_filters(rs: Any, filters: DepthFilters) -> list[Any]:
    """Processing blocks in librealsense's recommended order (disparity domain for spatial/temporal)."""
    blocks: list[Any] = []
    if filters.spatial or filters.temporal:
        blocks.append(rs.disparity_transform(True))
        if filters.spatial:
            blocks.append(rs.spatial_filter())
        if filters.temporal:
            blocks.append(rs.temporal_filter())
        blocks.append(rs.disparity_transform(False))
    if filters.hole_filling:
        blocks.append(rs.hole_filling_filter())
    return blocks

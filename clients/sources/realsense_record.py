"""Write RGB-D frames as a RealSense recording through pyrealsense2's software device.

Why: a recording made by the SDK itself (rs.software_device + rs.recorder) is what the `bag`
source plays, so a recorded sequence can be replayed through the exact RealSense code path
without a camera (the tests do this), and a folder can be converted for tools that read
RealSense recordings. Depth is written registered to colour (same intrinsics, identity
extrinsics), with the frame's depth scale as the sensor's depth units.

This pyrealsense2 build (2.59, rosbag2) records only ROS 2 `.db3` files: asked for `.bag`, its
recorder answers "Output file must have .db3 extension", which is raised as a SourceError.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from clients.sources.base import SourceError
from clients.sources.realsense import import_realsense
from engine.core import CameraIntrinsics, RGBDFrame


def record_frames(frames: Iterable[RGBDFrame], path: Path, fps: int = 30) -> int:
    """Record frames (uint16 depth, all with the first frame's intrinsics and depth scale) to path.

    Frame i gets frame number i and hardware timestamp i / fps seconds. Returns the number of
    frames written. Raises SourceError when the SDK cannot write path.
    """
    rs = import_realsense()
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None or first.depth is None or first.depth.dtype != np.uint16:
        raise SourceError("record_frames needs at least one frame with uint16 depth")
    k, units = first.intrinsics, 1.0 / first.depth_scale
    device = rs.software_device()
    depth_sensor, color_sensor = device.add_sensor("Depth"), device.add_sensor("Color")
    depth_profile = depth_sensor.add_video_stream(_stream(rs, rs.stream.depth, rs.format.z16, 2, 0, k, fps))
    color_profile = color_sensor.add_video_stream(_stream(rs, rs.stream.color, rs.format.rgb8, 3, 1, k, fps))
    depth_sensor.add_read_only_option(rs.option.depth_units, units)
    identity = rs.extrinsics()
    identity.rotation = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    identity.translation = [0.0, 0.0, 0.0]
    depth_profile.register_extrinsics_to(color_profile, identity)
    try:
        recorder = rs.recorder(str(path), device)
    except RuntimeError as exc:
        raise SourceError(f"pyrealsense2 {rs.__version__} cannot record {path}: {exc}") from None
    sink = rs.frame_queue(64)  # frames pass through the recorder; nobody reads them here
    depth_sensor.open(depth_profile)
    color_sensor.open(color_profile)
    depth_sensor.start(sink)
    color_sensor.start(sink)
    count = 0
    for index, frame in enumerate(_chain(first, iterator)):
        if frame.intrinsics != k or frame.depth is None or frame.depth.dtype != np.uint16:
            raise SourceError(f"frame {index}: every frame needs uint16 depth and intrinsics {k}")
        stamp_ms = 1000.0 * index / fps
        for sensor, profile, pixels, bpp in (
            (depth_sensor, depth_profile, frame.depth, 2),
            (color_sensor, color_profile, frame.rgb, 3),
        ):
            video = rs.software_video_frame()
            video.pixels = np.ascontiguousarray(pixels)
            video.stride, video.bpp = k.width * bpp, bpp
            video.timestamp, video.domain = stamp_ms, rs.timestamp_domain.hardware_clock
            video.frame_number = index
            video.profile = profile.as_video_stream_profile()
            if bpp == 2:
                video.depth_units = units
            sensor.on_video_frame(video)
        while sink.poll_for_frame():  # keep the sink from filling
            pass
        count += 1
    time.sleep(0.05)  # the recorder writes on the sensors' dispatch threads
    for sensor in (depth_sensor, color_sensor):
        sensor.stop()
        sensor.close()
    del recorder  # closing the recorder finishes the file
    return count


def _stream(rs, kind, fmt, bpp: int, uid: int, k: CameraIntrinsics, fps: int):  # type: ignore[no-untyped-def]
    intr = rs.intrinsics()
    intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy = k.width, k.height, k.fx, k.fy, k.cx, k.cy
    intr.model, intr.coeffs = rs.distortion.none, [0.0] * 5
    stream = rs.video_stream()
    stream.type, stream.index, stream.uid, stream.fmt, stream.bpp = kind, 0, uid, fmt, bpp
    stream.width, stream.height, stream.fps, stream.intrinsics = k.width, k.height, fps, intr
    return stream


def _chain(first: RGBDFrame, rest: Iterable[RGBDFrame]) -> Iterable[RGBDFrame]:
    yield first
    yield from rest


def main(argv: list[str] | None = None) -> int:
    """`python -m clients.sources.realsense_record FOLDER OUT.db3 [--max-frames N] [--fps 30]`."""
    import argparse

    from clients.sources.folder import SequenceError, open_sequence

    parser = argparse.ArgumentParser(
        description="Write an RGB-D folder as a RealSense recording (software device)."
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--fps", type=int, default=30)
    args = parser.parse_args(argv)
    try:
        seq = open_sequence(args.folder)
        n = len(seq) if args.max_frames is None else min(len(seq), args.max_frames)
        written = record_frames((seq[i] for i in range(n)), args.out, args.fps)
    except (SequenceError, SourceError) as exc:
        print(f"realsense_record: {exc}")
        return 2
    print(f"wrote {written} frames to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

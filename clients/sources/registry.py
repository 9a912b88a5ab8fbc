"""The one table of device sources: name -> builder, imported only when chosen.

Why lazy: pyrealsense2, pyopenxr and OpenCV's camera backends are heavy or absent on many
machines; choosing `--source folder` must not need any of them.
"""

from __future__ import annotations

import importlib

from clients.sources.base import Source, SourceError, SourceOptions

SOURCES: dict[str, str] = {
    "folder": "clients.sources.recorded:FolderSource",
    "realsense": "clients.sources.realsense:RealSenseSource.live",
    "bag": "clients.sources.realsense:RealSenseSource.playback",
    "openxr+realsense": "clients.sources.openxr:OpenXRCameraSource",
    "webcam": "clients.sources.webcam:WebcamSource",
}
"""Source name -> "module:builder" (a class or classmethod taking SourceOptions)."""


def build_source(name: str, options: SourceOptions) -> Source:
    """Build (not start) the source called `name`. Raises SourceError for an unknown name."""
    spec = SOURCES.get(name)
    if spec is None:
        raise SourceError(f"unknown source {name!r}; choose one of: {', '.join(SOURCES)}")
    module_name, _, attr = spec.partition(":")
    builder: object = importlib.import_module(module_name)
    for part in attr.split("."):
        builder = getattr(builder, part)
    source = builder(options)  # type: ignore[operator]
    source = _with_gaze_file(source, options)
    return source


def _with_gaze_file(source: Source, options: SourceOptions) -> Source:
    if options.gaze_file is None:
        return source
    from clients.sources.gaze_trace import GazeTraceSource, read_gaze_trace

    return GazeTraceSource(source, read_gaze_trace(options.gaze_file))

"""A recorded RGB-D folder (Redwood, TUM, slambook; see clients.sources.folder) as a Source."""

from __future__ import annotations

from pathlib import Path

from clients.sources.base import Clock, SourceError, SourceFrame, SourceInfo, SourceOptions
from clients.sources.folder import NOMINAL_FPS, RGBDSequence, SequenceError, open_sequence


class FolderSource:
    """Frames of a sequence folder in order, with the folder's poses and timestamps."""

    def __init__(self, options: SourceOptions) -> None:
        if not options.target:
            raise SourceError(
                "--source folder needs the sequence folder: xrseg stream FOLDER --source folder"
            )
        self._path = Path(options.target)
        self._max_frames = options.max_frames
        self._fps = options.fps
        self._sequence: RGBDSequence | None = None
        self._index = 0

    def start(self) -> SourceInfo:
        try:
            self._sequence = open_sequence(self._path)
        except SequenceError as exc:
            raise SourceError(str(exc)) from None
        seq = self._sequence
        return SourceInfo(
            f"folder {self._path}",
            seq.intrinsics,
            seq.depth_scale,
            self._fps or NOMINAL_FPS,
            live=False,
            has_pose=any(f.pose is not None for f in seq.files),
        )

    def read(self) -> SourceFrame | None:
        seq = self._sequence
        if seq is None:
            raise SourceError("read() before start()")
        limit = len(seq) if self._max_frames is None else min(len(seq), self._max_frames)
        if self._index >= limit:
            return None
        try:
            frame = seq[self._index]
        except SequenceError as exc:
            raise SourceError(str(exc)) from None
        self._index += 1
        return SourceFrame(frame, frame.capture_ts, Clock.RECORDING)

    def stop(self) -> None:
        self._sequence = None

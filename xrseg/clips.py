"""How `xrseg serve --clip FOLDER` becomes a clip on the engine's web page.

The engine's page streams clips it is given (engine/transport/web_clips.py: `Clip`, anything
with a length, intrinsics and indexable frames) and reads no folders itself; reading recorded
RGB-D folders (Redwood, TUM, slambook layouts) is the clients' job (clients/sources/folder.py).
The assembly joins the two here and hands `open_clip` to the engine's serve command.
"""

from __future__ import annotations

from pathlib import Path

from clients.sources.folder import SequenceError, open_sequence
from engine.transport.web_clips import Clip


def open_clip(folder: Path) -> Clip:
    """The folder as a clip named after it; ValueError (saying what a folder must hold) if unreadable."""
    try:
        return Clip(Path(folder).name, open_sequence(folder))
    except SequenceError as exc:
        raise ValueError(f"clip {folder}: {exc}") from None


def open_clips(folders: tuple[Path, ...]) -> tuple[Clip, ...]:
    return tuple(open_clip(folder) for folder in folders)

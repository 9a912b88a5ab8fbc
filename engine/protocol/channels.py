"""Wire constants of the WebRTC transport (docs/protocol.md): channel labels and the video clock.

They live in engine/protocol, with every other wire constant, so the engine's transport and the
clients import the same names.
"""

from __future__ import annotations

CONTROL_LABEL = "xrseg"
"""Reliable, ordered data channel: schema-v1 messages both ways, chunked (engine/protocol/chunking.py)."""
GAZE_LABEL = "gaze"
"""Unreliable, unordered data channel: prompt messages with raw gaze samples, one per message."""
VIDEO_CLOCK_HZ = 90_000
"""RTP clock of the video track; a frame's pts is frame_id * video_pts_per_frame on this clock."""

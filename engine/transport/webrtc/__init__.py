"""WebRTC transport (aiortc): colour on a video track, depth and messages on data channels.

Same schema-v1 messages and the same Session API as the WebSocket transport; see signalling.py
for the HTTP endpoints and peer.py for the channels.
"""

from engine.transport.webrtc.ice import IceServer
from engine.transport.webrtc.peer import CONTROL_LABEL, GAZE_LABEL, RtcPeer
from engine.transport.webrtc.settings import WebRTCConfig
from engine.transport.webrtc.signalling import WebRTCTransport

__all__ = ["CONTROL_LABEL", "GAZE_LABEL", "IceServer", "RtcPeer", "WebRTCConfig", "WebRTCTransport"]

"""A session: one client's stream, as a facade over parts that each do one job.

```
transport ──typed messages──▶ Session (session.py: attach/detach by lease, receive, close)
                                 ├── FrameWindow      frames.py: recent frames, undecoded until used
                                 ├── PromptQueue      prompt_queue.py: bounded; control overtakes data
                                 ├── KeyframeSource   keyframes.py: await keyframe_for(frame, use)
                                 └── HANDLERS[kind]   handlers/: spatial · gaze · text · everything;
                                                      BACKGROUND: gaze speculation · tracking
```
Handlers return replies and failures; the facade sends them. Domain errors become wire codes in
wire.py only.
"""

from engine.session.context import SessionContext
from engine.session.frames import FrameWindow, PendingFrame
from engine.session.lease import Lease
from engine.session.session import SendFn, Session

__all__ = ["FrameWindow", "Lease", "PendingFrame", "SendFn", "Session", "SessionContext"]

"""The remote model backend: the image encoder, the prompt decoder and CLIP as Ray Serve deployments.

Why: one GPU process is the unit of `--backend local`; when one machine is not enough, the heavy
parts (models) scale out on Ray Serve while transports and sessions stay on front-end processes.
The engine cannot tell: `RemoteImageEncoder`, `RemotePromptDecoder` and `RemoteTextEncoder`
(engine/remote/proxies.py) implement the interfaces of models/interfaces.py and call Serve
deployment handles (a point prompt goes straight to a decoder replica's actor instead:
engine/remote/direct.py). An embedding stays where the encoder replica put it (the Ray object store); the
engine holds only its ObjectRef, and the decoder replicas fetch it once and cache it.

Importing this package does not import Ray: `config.py` is plain dataclasses, the rest is loaded
by `engine.backends` only when `EngineConfig.backend == "ray"`.
"""

from engine.remote.config import DeploymentConfig, RayBackendConfig
from engine.remote.serve_env import apply_serve_env

apply_serve_env()  # before anything here imports ray.serve (engine/remote/serve_env.py says why)

__all__ = ["DeploymentConfig", "RayBackendConfig"]

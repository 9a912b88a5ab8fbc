"""Serve's throughput-optimised mode for the front-end and the replicas, set before `ray.serve` is
imported (Serve reads these variables at import): `engine/remote/__init__.py` applies it, so any
import of this package does it first.

Why: on our loopback measurement a handle call with Serve's defaults cost 7-9 ms p50 on a busy
2-core machine, with `RAY_SERVE_THROUGHPUT_OPTIMIZED=1` (gRPC between handle and replica, user
code on the replica's own loop) 3-4 ms; a prompt pays it once. The handle's router stays on a loop
of its own (`RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=1`) because the engine calls handles from
worker threads, not from an event loop. A value the operator set in the environment wins; the
replicas get the front-end's values (`replica_env`), since both ends must speak the same transport.

The replicas also get glibc malloc settings (`REPLICA_MALLOC_ENV`): see there.
"""

from __future__ import annotations

import os

SERVE_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "1"}


FRONT_END_ENV = {"RAY_DISABLE_FAILURE_SIGNAL_HANDLER": "1"}
"""The front-end handles SIGTERM itself (a clean shutdown, engine/app.py); Ray's failure signal
handler, installed by `ray.init`, would replace that with an abort."""


REPLICA_MALLOC_ENV = {
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=67108864"
}
"""Keep freed memory for reuse in the replicas, up to 32 MB per allocation and 64 MB per arena.

Why: a decoder replica answers each prompt on its user-code thread, whose malloc arena gave the
prompt's masks (a few 300 KB arrays) back to the kernel after every call, so the next prompt paid
~800 page faults for them: the geometric decode took 3.5-4.5 ms in the replica against 1.4 ms in
the front-end, most of the remote hop's added latency (bench.scale). With allocations up to 32 MB
served from the arena and freed memory kept, the replica decodes in 1.3-1.5 ms with no faults.
The cost: each arena of a replica may hold up to 64 MB it does not use at the moment. glibc reads
the variable at process start, so it goes in the replicas' runtime_env; other C libraries ignore it.
An operator's own GLIBC_TUNABLES wins."""


def apply_serve_env() -> None:
    for key, value in {**SERVE_ENV, **FRONT_END_ENV}.items():
        os.environ.setdefault(key, value)


def replica_env() -> dict[str, str]:
    """The variables as this process has them, for the replicas' runtime_env."""
    return {key: os.environ.get(key, value) for key, value in {**SERVE_ENV, **REPLICA_MALLOC_ENV}.items()}


"""Settings of the Ray Serve backend: where the cluster is, and per deployment replicas, GPU
fractions, batching and autoscaling bounds. Plain dataclasses: the local backend imports them
without Ray."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DeploymentConfig:
    """One Serve deployment (encoder, decoder or CLIP).

    Attributes:
        replicas: fixed number of replicas (ignored when autoscaling bounds are set).
        min_replicas, max_replicas: autoscaling bounds; both None means a fixed `replicas`.
        target_ongoing_requests: autoscaling target of requests in flight per replica.
        num_cpus: CPUs reserved per replica (logical, for Ray's scheduler).
        num_gpus: GPU fraction per replica, e.g. 0.25 puts four decoder replicas on one GPU.
        max_batch_size: most requests one @serve.batch call takes (images for the encoder, prompts
            for the decoder, phrase lists for CLIP).
        batch_wait_timeout_s: how long a replica waits for a batch to fill after its first request.
        max_ongoing_requests: requests a replica accepts at once (>= max_batch_size, or batches
            never fill).
    """

    replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float = 2.0
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_batch_size: int = 8
    batch_wait_timeout_s: float = 0.002
    max_ongoing_requests: int = 32

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"DeploymentConfig.replicas must be >= 1, got {self.replicas}")
        if (self.min_replicas is None) != (self.max_replicas is None):
            raise ValueError("give both min_replicas and max_replicas for autoscaling, or neither")
        if self.min_replicas is not None and not 0 <= self.min_replicas <= self.max_replicas:  # type: ignore[operator]
            raise ValueError(
                f"need 0 <= min_replicas <= max_replicas, got {self.min_replicas}, {self.max_replicas}"
            )
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError("num_cpus and num_gpus must be >= 0")
        if self.max_batch_size < 1 or self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(
                f"need 1 <= max_batch_size <= max_ongoing_requests, got {self.max_batch_size}, "
                f"{self.max_ongoing_requests}"
            )
        if not (math.isfinite(self.batch_wait_timeout_s) and self.batch_wait_timeout_s >= 0):
            raise ValueError(f"batch_wait_timeout_s must be >= 0, got {self.batch_wait_timeout_s}")

    def serve_options(self, name: str) -> dict[str, object]:
        """Keyword arguments of Serve's `Deployment.options` for this deployment."""
        options: dict[str, object] = {
            "name": name,
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
        }
        if self.min_replicas is None:
            options["num_replicas"] = self.replicas
        else:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "max_replicas": self.max_replicas,
                "initial_replicas": max(self.min_replicas, 1),
                "target_ongoing_requests": self.target_ongoing_requests,
            }
        return options


@dataclass(frozen=True)
class RayBackendConfig:
    """Where the Ray cluster is and how the model deployments run on it.

    Attributes:
        address: Ray cluster address ("127.0.0.1:6379", "auto", "ray://head:10001"); None starts a
            private single-machine Ray inside the front-end (for trying it out).
        app_name: Serve application of these deployments; front-ends with the same app_name and
            model share the deployments (the first one deploys, the others attach).
        namespace: Ray namespace of the front-end's driver.
        encoder, decoder, text: per-deployment settings. The encoder batches keyframes of many
            sessions (the scheduler already sends them together); the decoder batches prompts.
        retries: how many times a request whose replica died is sent again (to another replica).
        request_timeout_s: a request not answered in this time fails with `overloaded`.
        decoder_cache: embeddings a decoder replica keeps deserialized (LRU, by ObjectRef).
        direct_decode: send point prompts straight to the decoder replicas' actors, past Serve's
            router (engine/remote/direct.py: 5-6 ms less per prompt on loopback). Used only with a
            fixed number of decoder replicas: Serve's autoscaler does not see these calls.
        code_path: folder put on the replicas' PYTHONPATH so they import the same `engine` and
            `models` as the front-end; None: the folder this package was imported from.
        deploy_timeout_s: how long to wait for the deployments to become healthy at start.
    """

    address: str | None = None
    app_name: str = "xrseg"
    namespace: str = "xrseg"
    encoder: DeploymentConfig = field(
        default_factory=lambda: DeploymentConfig(
            max_batch_size=4, batch_wait_timeout_s=0.004, max_ongoing_requests=8
        )
    )
    decoder: DeploymentConfig = field(
        default_factory=lambda: DeploymentConfig(
            max_batch_size=16, batch_wait_timeout_s=0.0, max_ongoing_requests=64
        )
    )
    text: DeploymentConfig = field(
        default_factory=lambda: DeploymentConfig(max_batch_size=16, batch_wait_timeout_s=0.002)
    )
    retries: int = 1
    request_timeout_s: float = 30.0
    decoder_cache: int = 32
    direct_decode: bool = True
    code_path: str | None = None
    deploy_timeout_s: float = 180.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"RayBackendConfig.retries must be >= 0, got {self.retries}")
        if not self.request_timeout_s > 0 or not self.deploy_timeout_s > 0:
            raise ValueError("request_timeout_s and deploy_timeout_s must be > 0")
        if self.decoder_cache < 1:
            raise ValueError(f"RayBackendConfig.decoder_cache must be >= 1, got {self.decoder_cache}")

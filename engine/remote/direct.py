"""Point prompts straight to a decoder replica's actor, past Serve's router.

Why: a prompt's decode takes about a millisecond; a call through a Serve deployment handle costs
5-6 ms on our loopback measurement before any work (the router picks a replica, probes queue
lengths, tracks the request), a plain Ray actor call well under that. So the decoder's replicas
stay a Serve deployment (Serve starts, health-checks, replaces and counts them, and `predict_many`
and the NotReady/failure fallbacks still go through its handle), but `RemotePromptDecoder.predict`
calls a replica's actor itself: `__ray_call__` runs `deployments.direct_predict` there, which
finds the deployment object in Serve's replica context.

Which replica: the one whose name hashes highest with the embedding's key (rendezvous hashing),
so every prompt on a keyframe goes to the replica that already holds its embedding, from any
thread, and a replica joining or leaving moves only its own share of keyframes.
The replica set is read from the cluster's named actors (Serve names a replica's actor
`SERVE_REPLICA::APP#DEPLOYMENT#ID` in namespace `serve`), cached, and read again when a replica
fails (killed, crashed, node gone: the request goes once more to the next one) and every
`refresh_s` (new and replacement replicas join). When no replica is listed, or the ones tried
died, the prompt takes Serve's path, whose own retries and coded errors apply.

What it gives up: Serve's autoscaler and back pressure do not see these calls (connect_ray_backend
uses this path only for a fixed number of decoder replicas, `RayBackendConfig.direct_decode`).
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from dataclasses import dataclass, replace
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from engine.errors import BackendUnavailable
from engine.remote.deployments import direct_predict
from engine.remote.payloads import NotCached, NotReady, PackedPrediction, RemoteEmbedding
from models.interfaces import ImageEmbedding, PromptInput

log = logging.getLogger(__name__)

SERVE_NAMESPACE = "serve"


@dataclass(frozen=True)
class Replica:
    name: str
    actor: Any  # ray.actor.ActorHandle of Serve's replica actor


def _weight(key: str, name: str) -> int:
    return zlib.crc32(f"{key}|{name}".encode())


class DecoderReplicas:
    """The decoder deployment's replica actors as last read from the cluster.

    Worker threads share one instance: the set is an immutable tuple swapped under a lock, so a
    reader never sees it half-written; everything else here is read-only."""

    def __init__(self, app: str, deployment: str, refresh_s: float = 5.0) -> None:
        self._prefix = f"SERVE_REPLICA::{app}#{deployment}#"
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._replicas: tuple[Replica, ...] = ()
        self._read_at = float("-inf")

    def _read(self, known: dict[str, Replica]) -> tuple[Replica, ...]:
        found = []
        for entry in ray.util.list_named_actors(all_namespaces=True):
            name = entry["name"]
            if entry.get("namespace") != SERVE_NAMESPACE or not name.startswith(self._prefix):
                continue
            if name in known:
                found.append(known[name])
                continue
            try:
                found.append(Replica(name, ray.get_actor(name, namespace=SERVE_NAMESPACE)))
            except ValueError:  # gone between the listing and the lookup
                continue
        return tuple(sorted(found, key=lambda r: r.name))

    def current(self) -> tuple[Replica, ...]:
        """The set, read again when it is older than refresh_s (or was marked stale). One thread
        reads the cluster; the others go on with the set they have meanwhile."""
        with self._lock:
            replicas = self._replicas
            if time.monotonic() - self._read_at < self._refresh_s:
                return replicas
            self._read_at = time.monotonic()
        fresh = self._read({r.name: r for r in replicas})
        with self._lock:
            self._replicas = fresh
        return fresh

    def forget(self, replica: Replica) -> None:
        """A replica that failed: out of the set now, and the set is read again on the next call."""
        with self._lock:
            self._replicas = tuple(r for r in self._replicas if r.name != replica.name)
            self._read_at = float("-inf")

    def order(self, key: str) -> list[Replica]:
        """The replicas in the order a request for `key` tries them (highest weight first)."""
        return sorted(self.current(), key=lambda r: _weight(key, r.name), reverse=True)


class DirectDecoder:
    """`predict` over direct actor calls; None where the caller should take Serve's path instead."""

    def __init__(self, replicas: DecoderReplicas, retries: int, timeout_s: float) -> None:
        self.replicas = replicas
        self._retries = retries
        self._timeout_s = timeout_s

    def _call(self, replica: Replica, embedding: ImageEmbedding, prompt: PromptInput) -> Any:
        ref = replica.actor.__ray_call__.remote(direct_predict, embedding, prompt)
        try:
            return ray.get(ref, timeout=self._timeout_s)
        except GetTimeoutError:
            ray.cancel(ref)
            raise BackendUnavailable(
                f"decoder replica {replica.name} did not answer in {self._timeout_s:.0f} s; send it again"
            ) from None

    def predict(self, embedding: ImageEmbedding, prompt: PromptInput) -> PackedPrediction | Exception | None:
        """By key first; with the ref when the replica does not hold the embedding yet. A failure
        the replica reports comes back as an exception value (the caller raises it)."""
        remote: RemoteEmbedding = embedding.data
        keyed = replace(embedding, data=remote.by_key())
        tries = self.replicas.order(remote.key)[: self._retries + 1]
        for attempt, replica in enumerate(tries):
            try:
                answer = self._call(replica, keyed, prompt)
                if isinstance(answer, NotCached):
                    answer = self._call(replica, embedding, prompt)
            except RayActorError as exc:
                log.warning(
                    "decoder replica gone (%s, direct call to %s); attempt %d of %d",
                    type(exc).__name__, replica.name, attempt + 1, self._retries + 1,
                )  # fmt: skip
                self.replicas.forget(replica)
                continue
            if isinstance(answer, NotReady):
                return None
            if isinstance(answer, NotCached):  # only if the replica evicted it in between
                raise BackendUnavailable(
                    f"decoder replica {replica.name} lost embedding {answer.key} between two calls; "
                    "send it again"
                )
            return answer
        # No replica listed (yet), or those tried died: Serve's handle knows when replacements
        # are up (it waits for them, retries, and ends in a coded error if none comes).
        return None

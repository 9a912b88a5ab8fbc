"""The front-end side of the remote backend: the models' interfaces over Serve deployment handles.

The engine calls these exactly as it calls a local encoder or decoder, from its worker and
encoder threads (blocking calls; Serve's router runs on a loop of its own). What they add:
- an embedding is an ObjectRef (`RemoteEmbedding`), never the payload: `encode` returns as soon as
  the replica has put it into the object store, and each `predict` sends only the ref;
- a request whose replica died (RayActorError: killed, crashed, its node gone) is sent once more,
  to whichever replica Serve routes it to; after `retries` it fails with BackendUnavailable;
- the remote side's failures become the engine's own: a model's ModelError stays a ModelError,
  back pressure and timeouts become Overloaded / BackendUnavailable, so engine/session/wire.py
  maps them to wire codes as for the local backend.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import ray
from ray.exceptions import ObjectLostError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError

from engine.errors import BackendUnavailable, Overloaded
from engine.remote.deployments import embedding_ready
from engine.remote.direct import DirectDecoder
from engine.remote.payloads import ModelInfo, NotCached, RemoteEmbedding
from models.interfaces import ImageEmbedding, ImageInput, MaskPrediction, ModelError, PromptInput

log = logging.getLogger(__name__)

_REPLICA_GONE = (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError)


class RemoteCaller:
    """Sends one request to a deployment with the retry and error rules above (read-only state)."""

    def __init__(self, deployment: str, retries: int, timeout_s: float) -> None:
        self.deployment = deployment
        self.retries = retries
        self.timeout_s = timeout_s

    def call(self, send: Callable[[], Any]) -> Any:
        """`send()` returns a DeploymentResponse; its result, or the engine's error for its failure."""
        return self.collect([send], lambda _i: send)[0]

    def collect(
        self,
        sends: Sequence[Callable[[], Any]],
        again: Callable[[int], Callable[[], Any]],
        resolve: Callable[[Any], Any] | None = None,
    ) -> list[Any]:
        """Several requests in flight together (one batch on the replica), each retried on its own.

        resolve: response -> value (default: its result; blocks at most timeout_s)."""
        responses = [send() for send in sends]
        resolve = resolve or (lambda response: response.result(timeout_s=self.timeout_s))
        return [self._result(response, again(i), resolve) for i, response in enumerate(responses)]

    def _result(self, response: Any, send: Callable[[], Any], resolve: Callable[[Any], Any]) -> Any:
        for attempt in range(self.retries + 1):
            try:
                result = resolve(response)
            except _REPLICA_GONE as exc:
                log.warning(
                    "%s replica gone (%s); attempt %d of %d",
                    self.deployment, type(exc).__name__, attempt + 1, self.retries + 1,
                )  # fmt: skip
                if attempt < self.retries:
                    response = send()
                continue
            except BackPressureError:
                raise Overloaded(
                    f"the {self.deployment} deployment is at its request limit; send again"
                ) from None
            except TimeoutError:
                raise BackendUnavailable(
                    f"the {self.deployment} deployment did not answer in {self.timeout_s:.0f} s; send it again"
                ) from None
            except ObjectLostError:
                raise BackendUnavailable(
                    f"an object of the {self.deployment} deployment was lost with its node; send it again"
                ) from None
            return _raise_failure(self.deployment, result)
        raise BackendUnavailable(
            f"the {self.deployment} replica serving this request died, and so did the retry; send it again"
        )


def _raise_failure(deployment: str, result: Any) -> Any:
    """A per-request failure returned by a batched replica method becomes an exception here."""
    if isinstance(result, ObjectLostError):
        raise BackendUnavailable(
            "the keyframe's embedding was lost with the node that held it; send the prompt again"
        )
    if isinstance(result, ModelError):
        raise result
    if isinstance(result, Exception):
        raise ModelError(f"{deployment} failed: {result}")
    return result


class RemoteImageEncoder:
    """ImageEncoder + BatchImageEncoder over the encoder deployment."""

    def __init__(self, name: str, handle: Any, caller: RemoteCaller) -> None:
        self.name = name
        self._handle = handle
        self._caller = caller

    def encode(self, image: ImageInput) -> ImageEmbedding:
        return self.encode_batch([image])[0]

    def encode_batch(self, images: Sequence[ImageInput]) -> list[ImageEmbedding]:
        """Every image as its own request, all in flight at once: the replica's @serve.batch joins
        them (with other front-ends' keyframes) into one encoder call. What comes back is the
        embedding's ObjectRef (owned here), checked where it lies (`embedding_ready`), never fetched."""

        def send(i: int) -> Callable[[], Any]:
            return lambda: self._handle.encode.remote(images[i])

        def resolve(response: Any) -> RemoteEmbedding:
            ref = response._to_object_ref_sync(_timeout_s=self._caller.timeout_s)
            ray.get(embedding_ready.remote(ref), timeout=self._caller.timeout_s)
            return RemoteEmbedding([ref], ref.hex())

        remote = self._caller.collect([send(i) for i in range(len(images))], send, resolve)
        return [ImageEmbedding(self.name, image.size, r) for image, r in zip(images, remote, strict=True)]


class RemotePromptDecoder:
    """PromptDecoder + BatchPromptDecoder over the decoder deployment.

    direct: when given, `predict` calls a replica's actor past Serve's router (engine/remote/direct.py)
    and takes the handle's path only when that has no replica to offer."""

    def __init__(
        self,
        name: str,
        handle: Any,
        caller: RemoteCaller,
        info: ModelInfo,
        direct: DirectDecoder | None = None,
    ) -> None:
        self.name = name
        self._handle = handle
        self._caller = caller
        self.direct = direct
        if info.everything_iou_thresh is not None:  # engine/everything.py reads these off the decoder
            self.everything_iou_thresh = info.everything_iou_thresh
        if info.everything_min_area_px is not None:
            self.everything_min_area_px = info.everything_min_area_px

    def _check(self, embedding: ImageEmbedding) -> None:
        if not isinstance(embedding.data, RemoteEmbedding):
            raise ModelError(
                f"{self.name} (remote) got an embedding of {embedding.backend!r} that is not in the object store; "
                "embeddings must come from the same backend's encoder"
            )

    def predict(self, embedding: ImageEmbedding, prompt: PromptInput) -> MaskPrediction:
        """Straight to the replica holding the embedding when there is a direct path; else through
        Serve: by key first, with the ref when the replica Serve picked does not hold it yet."""
        self._check(embedding)
        if self.direct is not None:
            answer = self.direct.predict(embedding, prompt)
            if answer is not None:
                return _raise_failure(self._caller.deployment, answer).unpack()
        keyed = replace(embedding, data=embedding.data.by_key())
        packed = self._caller.call(lambda: self._handle.predict.remote((keyed, prompt)))
        if isinstance(packed, NotCached):
            packed = self._caller.call(lambda: self._handle.predict.remote((embedding, prompt)))
        if isinstance(packed, NotCached):  # only if the replica evicted it in between: a bug or a tiny cache
            raise ModelError(f"the decoder replica lost embedding {packed.key} between two calls; send it again")
        return packed.unpack()

    def predict_batch(
        self, embedding: ImageEmbedding, prompts: Sequence[PromptInput]
    ) -> list[MaskPrediction]:
        self._check(embedding)
        prompts = list(prompts)
        packed = self._caller.call(lambda: self._handle.predict_many.remote(embedding, prompts))
        return [p.unpack() for p in packed]


class RemoteTextEncoder:
    """TextImageEncoder over the CLIP deployment."""

    def __init__(self, name: str, handle: Any, caller: RemoteCaller) -> None:
        self.name = name
        self._handle = handle
        self._caller = caller

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return self._caller.call(lambda: self._handle.encode_text.remote(list(texts)))

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        crops = list(images)
        return self._caller.call(lambda: self._handle.encode_images.remote(crops))

"""The replica side of the remote backend: Ray Serve deployments around the models' interfaces.

- `ImageEncoderDeployment`: keyframe encodes, `@serve.batch`ed across sessions and front-ends into
  one `encode_images` call (one `encode_batch` for backends that have it). The embedding is the
  call's return value; the front-end keeps only its ObjectRef (`DeploymentResponse`'s
  `_to_object_ref_sync`), which it owns, so the embedding outlives the replica that made it and
  is freed when the front-end lets go of the keyframe.
- `PromptDecoderDeployment`: prompts, `@serve.batch`ed; the embedding is fetched from the object
  store once per replica and kept in a small LRU (a keyframe is reused by every prompt on it).
  A point prompt usually skips Serve's router: the front-end calls `direct_predict` on the
  replica's actor itself (engine/remote/direct.py says why and how).
- `TextEncoderDeployment`: CLIP phrases and image crops (engine/text_answer.py ranks with them).

A failure of one request comes back as that request's exception (one bad prompt does not fail the
batch it was in); the proxies (engine/remote/proxies.py) raise it on the front-end.
This module imports Ray: only `engine.remote.cluster` loads it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray import serve

from engine.remote.payloads import ModelInfo, NotCached, NotReady, PackedPrediction, RemoteEmbedding
from models.interfaces import (
    ImageEmbedding,
    ImageInput,
    ModelError,
    PromptInput,
    TextImageEncoder,
    encode_images,
    predict_prompts,
)
from models.registry import ModelSpec, build_model, build_text_encoder


@ray.remote(num_cpus=0)
def embedding_ready(payload: Any) -> None:
    """Raises what an encode failed with, else nothing (the front-end's check that an embedding is
    usable before it becomes a keyframe).

    Why a task: the front-end must learn that an encode failed (its replica died, the model raised)
    without fetching the embedding itself. Ray runs this where the object is (locality-aware
    scheduling), and an error stored in place of the object fails the task before it runs.
    """
    if isinstance(payload, Exception):
        raise payload


class _Miss(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _spec(model: str, checkpoint: str | None, device: str) -> ModelSpec:
    return ModelSpec(model, Path(checkpoint) if checkpoint else None, device)


@serve.deployment
class ImageEncoderDeployment:
    """The heavy image encoder; one replica per GPU (or a fraction of one)."""

    def __init__(
        self, model: str, checkpoint: str | None, device: str, max_batch_size: int, wait_s: float
    ) -> None:
        self._model = build_model(_spec(model, checkpoint, device))
        self.encode.set_max_batch_size(max_batch_size)
        self.encode.set_batch_wait_timeout_s(wait_s)

    def info(self) -> ModelInfo:
        decoder = self._model.decoder
        iou = getattr(decoder, "everything_iou_thresh", None)
        area = getattr(decoder, "everything_min_area_px", None)
        return ModelInfo(
            self._model.name,
            self._model.needs_depth,
            None if iou is None else float(iou),
            None if area is None else int(area),
        )

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.004)
    async def encode(self, images: list[ImageInput]) -> list[Any]:
        """Images of several sessions -> their embeddings' payloads (or the model's error)."""
        try:
            embeddings = await asyncio.to_thread(encode_images, self._model.encoder, images)
        except Exception as exc:  # noqa: BLE001 - every request of the batch gets the model's error
            return [exc] * len(images)
        return [embedding.data for embedding in embeddings]


@serve.deployment
class PromptDecoderDeployment:
    """The light prompt decoder; several replicas can share a GPU (num_gpus < 1)."""

    def __init__(
        self, model: str, checkpoint: str | None, device: str, max_batch_size: int, wait_s: float, cache: int
    ) -> None:
        self._decoder = build_model(_spec(model, checkpoint, device)).decoder
        # The loop Serve runs this object's methods on (it constructs it there): direct calls are
        # handed to it, so the decoder and the cache are only ever used from that one thread.
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # constructed off the loop (another Serve version): no direct calls
            self.loop = None
        self._cache: OrderedDict[str, ImageEmbedding] = OrderedDict()
        self._cache_size = cache
        self.predict.set_max_batch_size(max_batch_size)
        self.predict.set_batch_wait_timeout_s(wait_s)

    def ping(self) -> bool:
        """Nothing: the bare cost of the hop (bench.scale measures it beside a decode)."""
        return True

    def _cached(self, embedding: ImageEmbedding) -> ImageEmbedding | None:
        """The real embedding behind a remote one if the LRU holds it; raises _Miss when it does
        not and the request named it by key only."""
        remote = embedding.data
        if not isinstance(remote, RemoteEmbedding):
            raise ModelError(f"the remote decoder got a {type(remote).__name__}, not a remote embedding")
        found = self._cache.get(remote.key)
        if found is not None:
            self._cache.move_to_end(remote.key)
            return found
        if not remote.refs:
            raise _Miss(remote.key)
        return None

    def _keep(self, embedding: ImageEmbedding, payload: Any) -> ImageEmbedding:
        if isinstance(payload, Exception):  # the encode failed (the front-end's check missed it)
            raise payload
        found = ImageEmbedding(embedding.backend, embedding.original_size, payload)
        self._cache[embedding.data.key] = found
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return found

    async def _resolve(self, embedding: ImageEmbedding) -> ImageEmbedding:
        """The real embedding behind a remote one: from the LRU, else fetched from the object store."""
        found = self._cached(embedding)
        return found if found is not None else self._keep(embedding, await embedding.data.refs[0])

    async def predict_direct(
        self, embedding: ImageEmbedding, prompt: PromptInput
    ) -> PackedPrediction | Exception | NotCached:
        """One prompt sent past Serve's router (`direct_predict`); the same answers as `predict`."""
        try:
            found = await self._resolve(embedding)
        except _Miss as miss:
            return NotCached(miss.key)
        except Exception as exc:  # noqa: BLE001 - this request's failure (a lost object)
            return exc
        return self._decode_all([(found, prompt)])[0]

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def predict(
        self, requests: list[tuple[ImageEmbedding, PromptInput]]
    ) -> list[PackedPrediction | Exception | NotCached]:
        """Prompts of any sessions, on any embeddings. An embedding named by key only
        (`RemoteEmbedding.by_key`) that this replica does not hold is answered `NotCached`."""
        resolved: list[ImageEmbedding | Exception | NotCached] = []
        for embedding, _ in requests:
            try:
                resolved.append(await self._resolve(embedding))
            except _Miss as miss:
                resolved.append(NotCached(miss.key))
            except Exception as exc:  # noqa: BLE001 - this request's failure (a lost object), not the batch's
                resolved.append(exc)
        # Decoded right here: a prompt's decode takes about a millisecond, less than a thread hop
        # costs on a busy machine, and Serve runs this user code on a thread of its own anyway.
        return self._decode_all([(e, p) for e, (_, p) in zip(resolved, requests, strict=True)])

    def _decode_all(
        self, work: list[tuple[ImageEmbedding | Exception | NotCached, PromptInput]]
    ) -> list[PackedPrediction | Exception | NotCached]:
        out: list[PackedPrediction | Exception | NotCached] = []
        for embedding, prompt in work:
            if not isinstance(embedding, ImageEmbedding):
                out.append(embedding)
                continue
            try:
                out.append(PackedPrediction.pack(self._decoder.predict(embedding, prompt)))
            except Exception as exc:  # noqa: BLE001 - reported to this request only
                out.append(exc)
        return out

    async def predict_many(
        self, embedding: ImageEmbedding, prompts: Sequence[PromptInput]
    ) -> list[PackedPrediction]:
        """Many prompts on one embedding (segment everything's point grid): one request."""
        real = await self._resolve(embedding)
        predictions = await asyncio.to_thread(predict_prompts, self._decoder, real, list(prompts))
        return [PackedPrediction.pack(p) for p in predictions]


def direct_predict(
    _replica_actor: Any, embedding: ImageEmbedding, prompt: PromptInput
) -> PackedPrediction | Exception | NotCached | NotReady:
    """Run by `__ray_call__` on a decoder replica's actor: `predict_direct` of the deployment object
    that replica serves. Ray's `__ray_call__` runs a function on any actor's instance, and Serve's
    replica context holds the user object (`servable_object`), so the deployment needs no actor
    method of its own for the front-end to reach it without a Serve handle.

    Ray runs this on a thread of its own (not the replica's event loop, and with a stack too small
    for the decoder's compiled kernels: they crash there), so the work is handed to the loop the
    deployment object lives on, and this thread only waits for it."""
    context = serve.get_replica_context()
    decoder = context.servable_object
    loop = getattr(decoder, "loop", None)
    if loop is None or not hasattr(decoder, "predict_direct"):
        return NotReady(str(context.replica_id))
    return asyncio.run_coroutine_threadsafe(decoder.predict_direct(embedding, prompt), loop).result()


@serve.deployment
class TextEncoderDeployment:
    """CLIP: phrases and image crops into one space (voice-text prompts rank masks with it)."""

    def __init__(self, name: str, checkpoint: str, device: str, max_batch_size: int, wait_s: float) -> None:
        encoder = build_text_encoder(_spec(name, checkpoint, device))
        if not isinstance(encoder, TextImageEncoder):
            raise ModelError(f"text encoder {encoder.name!r} cannot embed images, so it cannot rank masks")
        self._encoder = encoder
        self.encode_text.set_max_batch_size(max_batch_size)
        self.encode_text.set_batch_wait_timeout_s(wait_s)

    def name(self) -> str:
        return self._encoder.name

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def encode_text(self, requests: list[list[str]]) -> list[np.ndarray | Exception]:
        """Phrase lists of several sessions: one forward pass over all their phrases."""
        flat = [text for texts in requests for text in texts]
        try:
            embedded = await asyncio.to_thread(self._encoder.encode_text, flat)
        except Exception as exc:  # noqa: BLE001
            return [exc] * len(requests)
        out: list[np.ndarray | Exception] = []
        start = 0
        for texts in requests:
            out.append(embedded[start : start + len(texts)])
            start += len(texts)
        return out

    async def encode_images(self, images: list[np.ndarray]) -> np.ndarray:
        """Masked crops of one prompt (already one batch)."""
        return await asyncio.to_thread(self._encoder.encode_images, images)

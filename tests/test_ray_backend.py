"""The engine on the ray backend: a real local Ray cluster (`ray start --head`, CPU only), one
encoder replica and two decoder replicas, and the engine's WebSocket front-end on loopback.

The WebSocket end-to-end tests of tests/test_websocket_engine.py (and the everything test) run
here unchanged against it: this module's `live_engine` fixture replaces conftest's. Then a
decoder replica is killed in the middle of requests: every prompt is answered (retried once on
the other replica) or gets a coded error, and the sessions keep answering.

One Ray head for the module (about 30-60 s to start it and deploy the replicas on 2 busy cores).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray", reason="the ray backend needs the `ray` extra: pip install 'xrseg[ray]'")

import ray  # noqa: E402

from clients.ws_client import EngineError, XrsegClient  # noqa: E402
from engine.config import EngineConfig  # noqa: E402
from engine.core import PointPrompt, Prompt  # noqa: E402
from engine.everything import EverythingConfig  # noqa: E402
from engine.masks.metrics import mask_iou  # noqa: E402
from engine.protocol import ErrorCode, EverythingRequest, ImageCodec, Limits  # noqa: E402
from engine.remote.config import DeploymentConfig, RayBackendConfig  # noqa: E402
from engine.remote.local_cluster import LocalRayHead  # noqa: E402
from tests.conftest import TOKEN, LiveEngine, block_frame, serve_live  # noqa: E402

# The same end-to-end tests, collected again here, against the ray backend.
from tests.test_everything import scene_view, test_everything_over_websocket  # noqa: E402, F401
from tests.test_websocket_engine import (  # noqa: E402, F401
    test_bad_input_gets_coded_errors_while_another_session_keeps_working,
    test_box_prompt_and_embedding_reuse,
    test_newest_frame_wins,
    test_point_prompt_returns_masks_and_a_3d_segment,
    test_resume_after_disconnect_then_reap,
    test_wrong_token_is_refused_and_other_sessions_unaffected,
)

APP = "xrseg-test"


def ray_backend(address: str) -> RayBackendConfig:
    """1 encoder, 2 decoders; a decoder replica takes one request at a time, so two requests in
    flight are on two replicas (the kill test relies on it)."""
    decoder = DeploymentConfig(replicas=2, num_cpus=0.5, max_batch_size=1, max_ongoing_requests=1)
    encoder = DeploymentConfig(replicas=1, num_cpus=0.5, max_batch_size=4, max_ongoing_requests=8)
    return RayBackendConfig(address=address, app_name=APP, encoder=encoder, decoder=decoder)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    head = LocalRayHead(num_cpus=4)
    head.start()
    try:
        yield head.address
    finally:
        ray.shutdown()  # the driver first: a driver whose cluster vanishes is terminated by Ray
        head.stop()


def _engine_config(address: str, **overrides: object) -> EngineConfig:
    return EngineConfig(
        port=0, tokens=(TOKEN,), limits=Limits(max_message_bytes=1 << 20), session_linger_s=60.0,
        backend="ray", ray=ray_backend(address), workers=4, **overrides,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture
async def live_engine(ray_head: str) -> AsyncIterator[LiveEngine]:
    async with serve_live(_engine_config(ray_head)) as live:
        yield live


async def test_the_engine_runs_on_the_remote_backend(live_engine: LiveEngine) -> None:
    """Not a local model in disguise: the encoder and decoder are proxies over Serve handles, and
    an embedding is an ObjectRef in the object store."""
    from engine.remote.payloads import RemoteEmbedding
    from engine.remote.proxies import RemotePromptDecoder

    model = live_engine.engine.model
    assert isinstance(model.decoder, RemotePromptDecoder) and model.needs_depth
    frame, _ = block_frame()
    async with XrsegClient.connect(live_engine.url, TOKEN) as client:
        await client.send_frame(frame, ImageCodec.PNG)
        await client.prompt(Prompt(1, frame.frame_id, points=(PointPrompt(60, 60),)))
        session = live_engine.engine.sessions[client.session_id]
        keyframe = session.keyframe
    assert keyframe is not None
    assert isinstance(keyframe.embedding.data, RemoteEmbedding)
    assert isinstance(keyframe.embedding.data.refs[0], ray.ObjectRef)


def _decoder_replicas() -> list[str]:
    return sorted(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"SERVE_REPLICA::{APP}-decoder#")
    )


async def _answer_or_code(future: asyncio.Future) -> str:  # type: ignore[type-arg]
    """'result', or the coded error's code; anything else (a hang, a dropped connection) fails."""
    try:
        await asyncio.wait_for(future, 180)
    except EngineError as exc:
        return str(exc.code)
    return "result"


async def _until_answered(client: XrsegClient, frame_id: int, first_id: int) -> int:
    """Point prompts until one is answered (replicas restart after the kill); how many it took."""
    for attempt in range(60):
        try:
            await client.prompt(
                Prompt(first_id + attempt, frame_id, points=(PointPrompt(60, 60),)), timeout=180
            )
            return attempt + 1
        except EngineError as exc:
            assert exc.code == ErrorCode.OVERLOADED, exc  # only the coded, transient error
            await asyncio.sleep(1.0)
    raise AssertionError("the session never answered again after the replica was killed")


async def test_a_decoder_replica_killed_mid_request(ray_head: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="engine.remote.proxies")
    # Segment everything as one decoder request of 1024 points: it holds a replica for seconds.
    config = _engine_config(ray_head, everything=EverythingConfig(points_per_batch=1024))
    frame, block = block_frame(1, h=240, w=320)
    async with (
        serve_live(config) as live,
        XrsegClient.connect(live.url, TOKEN) as a,
        XrsegClient.connect(live.url, TOKEN) as b,
    ):
        for client in (a, b):
            await client.send_frame(frame, ImageCodec.PNG)
            result = await client.prompt(Prompt(1, frame.frame_id, points=(PointPrompt(120, 120),)))
            assert mask_iou(result.masks[result.best].mask.decode(), block) > 0.9
        replicas = _decoder_replicas()
        assert len(replicas) == 2
        # Two everything prompts: one long decoder request from each session, one request per
        # replica at a time (max_ongoing_requests=1), so both replicas are busy when one dies.
        grid = EverythingRequest(32, 0.0, 0.0)
        futures = [c.prompt_nowait(Prompt(2, frame.frame_id, want_3d=False), everything=grid) for c in (a, b)]
        await asyncio.sleep(0.5)
        assert not any(f.done() for f in futures), (
            "the everything prompts ended before the kill; make them longer"
        )
        ray.kill(ray.get_actor(replicas[0], namespace="serve"), no_restart=True)
        outcomes = [await _answer_or_code(f) for f in futures]
        assert set(outcomes) <= {"result", str(ErrorCode.OVERLOADED)}, outcomes
        # The request on the killed replica failed there and was sent again:
        assert any("decoder replica gone" in r.getMessage() for r in caplog.records)
        # Both sessions go on answering (Serve replaces the killed replica meanwhile).
        for client in (a, b):
            await _until_answered(client, frame.frame_id, 10)
            assert (await client.stats()).prompts_answered >= 2


def _replica_holds(replica: object, key: str) -> bool:
    """Whether the decoder replica behind `replica` (a direct route's entry) has embedding `key`."""

    def holds(_actor: object, k: str) -> bool:
        from ray import serve

        return k in serve.get_replica_context().servable_object._cache

    return bool(ray.get(replica.actor.__ray_call__.remote(holds, key), timeout=30))  # type: ignore[attr-defined]


async def test_point_prompts_go_straight_to_the_replica_holding_the_keyframe(
    live_engine: LiveEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """A point prompt skips Serve's router (engine/remote/direct.py): it goes to one decoder
    replica, the same for every prompt on a keyframe, which alone fetches the embedding. When that
    replica is killed, the next prompt goes to the other one, and the dead one leaves the set."""
    from engine.remote.direct import DirectDecoder

    caplog.set_level(logging.WARNING, logger="engine.remote.direct")
    decoder = live_engine.engine.model.decoder
    assert isinstance(decoder.direct, DirectDecoder)
    frame, block = block_frame(7, h=240, w=320)
    # An earlier test of this module kills a replica: wait until Serve's replacement is listed (the
    # set is read again every 5 s) before the prompts choose their replica.
    for _ in range(120):
        if len(await asyncio.to_thread(decoder.direct.replicas.current)) >= 2:
            break
        await asyncio.sleep(1.0)
    async with XrsegClient.connect(live_engine.url, TOKEN) as client:
        await client.send_frame(frame, ImageCodec.PNG)
        for prompt_id in (1, 2):
            await client.prompt(Prompt(prompt_id, frame.frame_id, points=(PointPrompt(120, 120),)))
        keyframe = live_engine.engine.sessions[client.session_id].keyframe
        assert keyframe is not None
        key = keyframe.embedding.data.key
        chosen, other = await asyncio.to_thread(decoder.direct.replicas.order, key)
        assert await asyncio.to_thread(_replica_holds, chosen, key)
        assert not await asyncio.to_thread(_replica_holds, other, key)

        ray.kill(chosen.actor, no_restart=True)
        result = await client.prompt(Prompt(3, frame.frame_id, points=(PointPrompt(120, 120),)), timeout=120)
        assert mask_iou(result.masks[result.best].mask.decode(), block) > 0.9
        assert any(f"direct call to {chosen.name}" in r.getMessage() for r in caplog.records)
        assert chosen.name not in [r.name for r in decoder.direct.replicas.current()]
        assert await asyncio.to_thread(_replica_holds, other, key)


def _page_faults_per_decode(replica: object, embedding: object, prompt: object, calls: int) -> float:
    """Minor page faults per call of the replica's direct decode, counted in the replica's process."""

    def count(actor: object, emb: object, pr: object, n: int) -> float:
        import resource

        from engine.remote.deployments import direct_predict

        direct_predict(actor, emb, pr)  # the first call may grow the arena
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(n):
            direct_predict(actor, emb, pr)
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / n

    ref = replica.actor.__ray_call__.remote(count, embedding, prompt, calls)  # type: ignore[attr-defined]
    return float(ray.get(ref, timeout=60))


async def test_a_decoder_replica_reuses_its_memory_from_prompt_to_prompt(live_engine: LiveEngine) -> None:
    """A replica's prompts do not fault their masks' pages in again on every call
    (serve_env.REPLICA_MALLOC_ENV): with glibc's defaults, the replica's decode thread returned
    them to the kernel after each call, about 800 page faults per 640x480 prompt."""
    from models.interfaces import PromptInput

    decoder = live_engine.engine.model.decoder
    frame, _ = block_frame(3, h=480, w=640)
    async with XrsegClient.connect(live_engine.url, TOKEN) as client:
        await client.send_frame(frame, ImageCodec.PNG)
        await client.prompt(Prompt(1, frame.frame_id, points=(PointPrompt(240, 240),)), timeout=120)
        keyframe = live_engine.engine.sessions[client.session_id].keyframe
        assert keyframe is not None
        embedding = keyframe.embedding
        replica = (await asyncio.to_thread(decoder.direct.replicas.order, embedding.data.key))[0]
        prompt = PromptInput(np.array([[240.0, 240.0]], np.float32), np.ones(1, np.int32))
        faults = await asyncio.to_thread(_page_faults_per_decode, replica, embedding, prompt, 30)
    assert faults < 100, f"{faults:.0f} page faults per decode in the replica"


async def test_sessions_resume_by_token_on_a_restarted_front_end(ray_head: str) -> None:
    """The front-end stops (a restart, or a roll to a new version); the client reconnects with its
    session id and token to the next front-end and keeps its session (empty: frames are gone)."""
    config = _engine_config(ray_head)
    frame, block = block_frame(5)
    point = (PointPrompt(60, 60),)
    async with serve_live(config) as first:
        client = await XrsegClient.connect(first.url, TOKEN)
        await client.send_frame(frame, ImageCodec.PNG)
        await client.prompt(Prompt(1, 5, points=point))
        session_id = client.session_id
        await client.close(bye=False)  # the connection drops with the front-end
    async with serve_live(config) as second:
        async with XrsegClient.connect(second.url, TOKEN, session_id=session_id) as again:
            assert again.session_id == session_id
            with pytest.raises(EngineError) as info:
                await again.prompt(Prompt(2, 5, points=point))
            assert info.value.code == ErrorCode.NO_FRAME  # resumed, but the old process's frames are gone
            await again.send_frame(frame, ImageCodec.PNG)
            result = await again.prompt(Prompt(3, 5, points=point))
            assert mask_iou(result.masks[result.best].mask.decode(), block) > 0.9
        # leaving with a bye ends the session for good: no front-end resumes it
        with pytest.raises(EngineError) as info:
            await XrsegClient.connect(second.url, TOKEN, session_id=session_id)
        assert info.value.code == ErrorCode.UNAUTHORIZED
    async with serve_live(config) as third:
        with pytest.raises(EngineError) as info:
            await XrsegClient.connect(third.url, TOKEN, session_id=session_id)
        assert info.value.code == ErrorCode.UNAUTHORIZED


async def test_xrseg_serve_with_the_ray_backend_is_a_second_front_end(ray_head: str, tmp_path: Path) -> None:
    """`xrseg serve --backend ray --ray-address ...` as a user runs it: its own process, attached to
    the deployments this module's engines use (same --ray-app), answering over WebSocket."""
    from tests.test_serve_cli import _one_prompt, serving

    with serving(tmp_path, "--backend", "ray", "--ray-address", ray_head, "--ray-app", APP) as url:
        assert await _one_prompt(url) == ("geometric", 3)

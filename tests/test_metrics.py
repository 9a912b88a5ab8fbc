"""Prometheus metrics over both transports: counted where things happen, one registry per Engine,
behind a bearer token (or on the admin bind), and never a session id."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from clients.ws_client import XrsegClient
from engine.app import ServeConfig, XrsegServer
from engine.config import EngineConfig
from engine.core import PointPrompt, Prompt
from engine.protocol import ErrorCode, ImageCodec
from engine.transport.webrtc import WebRTCConfig
from tests.conftest import TOKEN, block_frame


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_count_frames_prompts_errors_and_stages_without_session_ids() -> None:
    config = ServeConfig(EngineConfig(port=0, tokens=(TOKEN,)), webrtc=WebRTCConfig(port=0), admin_port=0)
    frame, _ = block_frame()
    async with XrsegServer(config) as server, XrsegServer(config) as other:
        assert server.websocket is not None and server.webrtc is not None and server.admin_url is not None
        async with XrsegClient.connect(server.websocket.url, TOKEN) as client:
            await client.send_frame(frame, ImageCodec.PNG)
            for pid in (1, 2):
                await client.prompt(Prompt(pid, frame.frame_id, points=(PointPrompt(60, 60),)))
            await client.send_raw(b"\x00garbage")
            assert (await client.next_error()).code == ErrorCode.MALFORMED
            session_id = client.session_id
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{server.webrtc.url}/metrics") as response:
                    assert response.status == 401 and session_id not in await response.text()
                auth = {"Authorization": f"Bearer {TOKEN}"}
                async with http.get(f"{server.webrtc.url}/metrics", headers=auth) as response:
                    text = await response.text()
                async with http.get(f"{server.admin_url}/metrics") as response:  # admin bind: no token
                    assert response.status == 200 and "xrseg_sessions" in await response.text()
        samples = _samples(text)
        assert session_id not in text
        assert samples[("xrseg_frames_received_total", ())] == 1
        assert samples[("xrseg_prompts_answered_total", ())] == 2
        assert samples[("xrseg_errors_sent_total", (("code", "malformed"),))] == 1
        assert samples[("xrseg_results_sent_total", (("kind", "answer"),))] == 2
        assert samples[("xrseg_stage_seconds_count", (("stage", "decode"),))] == 2
        assert samples[("xrseg_sessions", (("state", "attached"),))] == 1
        assert samples[("xrseg_connections", (("transport", "websocket"),))] == 1
        assert ("xrseg_encoder_queue_depth", ()) in samples
        # counters survive the session's end (the client said bye); the other engine's registry saw nothing
        assert server.engine.sessions == {}
        after = _samples(server.engine.metrics.exposition().decode())
        assert (
            after[("xrseg_prompts_answered_total", ())] == 2
            and after[("xrseg_sessions", (("state", "attached"),))] == 0
        )
        assert _samples(other.engine.metrics.exposition().decode())[("xrseg_prompts_answered_total", ())] == 0

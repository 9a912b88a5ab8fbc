"""Prometheus metrics of one Engine (prometheus_client), one CollectorRegistry per Engine.

Two kinds of numbers:
- events counted where they happen, on the event loop: connections, messages refused, replies
  dropped, errors sent by code, results sent, per-stage latency (from the timestamps every
  result carries), auth failures;
- session counters (frames in/dropped/decoded, prompts answered/superseded, ...) read from the
  sessions at scrape time by a custom collector: live sessions plus the final counts of closed
  ones, so the totals only grow. Nothing here names a session: no session id is ever a label.

Served at /metrics (behind a bearer token, or without one on the admin bind: engine/app.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.protocol import ErrorMessage, Message, ResultMessage, SessionStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)

# SessionStats field -> (metric name, help). prompts_dropped are prompts superseded by newer ones.
_SESSION_COUNTERS = {
    "frames_received": ("xrseg_frames_received", "Frames received by sessions."),
    "frames_dropped": (
        "xrseg_frames_dropped",
        "Frames pushed out of a session's window unused (newest wins).",
    ),
    "frames_decoded": ("xrseg_frames_decoded", "Frames whose pixels were decoded."),
    "prompts_received": ("xrseg_prompts_received", "Prompts received by sessions."),
    "prompts_answered": ("xrseg_prompts_answered", "Prompts answered with a result."),
    "prompts_dropped": (
        "xrseg_prompts_superseded",
        "Prompts dropped from a full queue by newer ones (each reported).",
    ),
    "errors_sent": ("xrseg_session_errors", "Errors reported by sessions to their clients."),
    "keyframes_encoded": ("xrseg_keyframes_encoded", "Keyframes encoded."),
    "speculative_decodes": ("xrseg_speculative_decodes", "Decodes at a gaze fixation before anyone asked."),
    "dwell_selections": ("xrseg_dwell_selections", "Gaze dwell selections."),
    "track_results": ("xrseg_track_results", "Results of tracked objects."),
}


class EngineMetrics:
    """The engine's registry and the instruments transports and the engine update."""

    def __init__(self, sessions: Callable[[], Iterable[Any]], encoder: Callable[[], Any | None]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("xrseg_connections", "Open client connections.", ["transport"], registry=r)
        self.connections_refused = Counter(
            "xrseg_connections_refused", "Connections refused at a cap.", ["transport", "reason"], registry=r
        )
        self.hello_timeouts = Counter(
            "xrseg_hello_timeouts", "Connections closed for sending no hello.", ["transport"], registry=r
        )
        self.messages = Counter(
            "xrseg_messages_received", "Messages received from clients.", ["transport"], registry=r
        )
        self.messages_refused = Counter(
            "xrseg_messages_refused",
            "Inbound messages dropped (rate limit, full inbox).",
            ["transport", "reason"],
            registry=r,
        )
        self.replies_dropped = Counter(
            "xrseg_replies_dropped",
            "Replies dropped because the client did not read them.",
            ["transport"],
            registry=r,
        )
        self.errors = Counter("xrseg_errors_sent", "Errors sent to clients, by code.", ["code"], registry=r)
        self.results = Counter(
            "xrseg_results_sent", "Results sent to clients, by kind.", ["kind"], registry=r
        )
        self.handler_failures = Counter(
            "xrseg_handler_failures",
            "Messages whose handling raised an unexpected exception (a bug).",
            ["transport"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            "xrseg_stage_seconds", "Per-stage latency of answered prompts (from result timestamps).", ["stage"],
            buckets=STAGE_BUCKETS, registry=r,
        )  # fmt: skip
        self.auth_failures = Counter(
            "xrseg_auth_failures", "Failed authentications, by reason.", ["reason"], registry=r
        )
        self._sessions_collector = _SessionCollector(sessions, encoder)
        r.register(self._sessions_collector)

    def retire(self, stats: SessionStats) -> None:
        """A session closed: keep its final counters in the totals."""
        self._sessions_collector.retire(stats)

    def on_reply(self, msg: Message) -> None:
        """Count a reply that was queued for a client (errors by code, results, stage latency)."""
        if isinstance(msg, ErrorMessage):
            self.errors.labels(str(msg.code)).inc()
        elif isinstance(msg, ResultMessage):
            self.results.labels(str(msg.kind)).inc()
            ts = msg.result.timestamps
            for stage, ms in ts.durations_ms().items():
                self.stage_seconds.labels(stage).observe(ms / 1000.0)
            if ts.receive is not None and ts.send is not None and ts.send >= ts.receive:
                self.stage_seconds.labels("receive_to_send").observe(ts.send - ts.receive)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _SessionCollector(Collector):
    """Sums SessionStats over live sessions plus the retired totals, at scrape time."""

    def __init__(self, sessions: Callable[[], Iterable[Any]], encoder: Callable[[], Any | None]) -> None:
        self._sessions = sessions
        self._encoder = encoder
        self._retired = {f.name: 0 for f in fields(SessionStats)}

    def retire(self, stats: SessionStats) -> None:
        for name in self._retired:
            self._retired[name] += getattr(stats, name)

    def collect(self) -> Iterator[Any]:
        totals = dict(self._retired)
        attached = detached = 0
        for session in list(self._sessions()):
            stats = session.stats
            for name in totals:
                totals[name] += getattr(stats, name)
            if getattr(session, "detached_at", None) is None:
                attached += 1
            else:
                detached += 1
        for key, (name, help_text) in _SESSION_COUNTERS.items():
            yield CounterMetricFamily(name, help_text, value=totals[key])
        sessions = GaugeMetricFamily("xrseg_sessions", "Live sessions.", labels=["state"])
        sessions.add_metric(["attached"], attached)
        sessions.add_metric(["detached"], detached)
        yield sessions
        encoder = self._encoder()
        if encoder is not None:
            stats = encoder.stats
            yield GaugeMetricFamily(
                "xrseg_encoder_queue_depth", "Keyframe encodes waiting (one per session at most).",
                value=encoder.queue_depth,
            )  # fmt: skip
            yield CounterMetricFamily(
                "xrseg_encoder_frames", "Frames encoded as keyframes.", value=stats.frames
            )
            yield CounterMetricFamily("xrseg_encoder_batches", "Encoder calls.", value=stats.batches)
            yield CounterMetricFamily(
                "xrseg_encoder_superseded",
                "Encode requests replaced by a newer frame.",
                value=stats.superseded,
            )
            yield CounterMetricFamily(
                "xrseg_encoder_failed", "Frames that could not be encoded.", value=stats.failed
            )
            yield CounterMetricFamily(
                "xrseg_encoder_busy_seconds", "Time the encoder spent encoding.", value=stats.busy_s
            )

"""What the engine lets in: connection caps, per-connection message rates, failed-auth limits.

Why here and not in each transport: a hostile client must meet the same bounds whichever
transport it uses, and every bound needs one number in one place (README "Limits and
guarantees"). Everything is O(1) per message and bounded in memory: per-address state lives in
an LRU of at most `max_addresses` entries.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class AdmissionConfig:
    """Bounds on what one client (or one address) can make the engine hold or do.

    Attributes:
        max_connections: open connections (WebSocket + WebRTC peers) engine-wide; more are refused.
        max_pending_per_address: connections from one address that have not yet said hello
            (each waits at most EngineConfig.hello_timeout_s); more are refused at once.
        messages_per_s, message_burst: per-connection token bucket for inbound messages; those
            over it are dropped and counted, and the client gets an `overloaded` error at most
            once per `notice_interval_s`.
        outbox_messages, outbox_bytes: replies queued per connection for a client that does not
            read; beyond either, replies are dropped and counted.
        auth_failures_burst, auth_failures_per_s: failed hellos / offers / bearer checks allowed
            per address (token bucket); once spent, that address is refused without checking.
        max_addresses: addresses remembered for the failed-auth limit (least recent forgotten).
    """

    max_connections: int = 512
    max_pending_per_address: int = 32
    messages_per_s: float = 400.0
    message_burst: int = 800
    notice_interval_s: float = 1.0
    outbox_messages: int = 64
    outbox_bytes: int = 32 * 1024 * 1024
    auth_failures_burst: int = 10
    auth_failures_per_s: float = 0.5
    max_addresses: int = 10_000


class TokenBucket:
    """Classic token bucket: `capacity` tokens, refilled at `rate` per second."""

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, capacity: float, rate: float, now: float | None = None) -> None:
        self.capacity = capacity
        self.rate = rate
        self.tokens = float(capacity)
        self.updated = time.monotonic() if now is None else now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self, now: float | None = None, n: float = 1.0) -> bool:
        """Spend n tokens if there are that many; False (nothing spent) otherwise."""
        self._refill(time.monotonic() if now is None else now)
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def available(self, now: float | None = None) -> bool:
        self._refill(time.monotonic() if now is None else now)
        return self.tokens >= 1.0

    def wait_s(self) -> float:
        """Seconds until one token is back."""
        return max(0.0, (1.0 - self.tokens) / self.rate) if self.rate > 0 else float("inf")


class FailedAuthLimiter:
    """Per-address token buckets for failed authentication (bounded LRU of addresses)."""

    def __init__(self, burst: int, per_s: float, max_addresses: int) -> None:
        self._burst, self._per_s, self._max = burst, per_s, max_addresses
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def blocked_for(self, address: str, now: float | None = None) -> float:
        """0.0 if the address may try now; else seconds until it may."""
        bucket = self._buckets.get(address)
        if bucket is None or bucket.available(now):
            return 0.0
        return bucket.wait_s()

    def failed(self, address: str, now: float | None = None) -> None:
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = TokenBucket(self._burst, self._per_s, now)
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(address)
        bucket.take(now)


class ConnectionGate:
    """Counts open and not-yet-greeted connections; refuses those over the caps.

    admit() -> (ok, reason); every admitted connection must call greeted() once (hello done or
    given up) and closed() once when it ends.
    """

    def __init__(self, config: AdmissionConfig) -> None:
        self._config = config
        self.open = 0
        self._pending: dict[str, int] = {}

    def admit(self, address: str) -> str | None:
        """None when admitted, else the reason it is refused."""
        if self.open >= self._config.max_connections:
            return "max_connections"
        if self._pending.get(address, 0) >= self._config.max_pending_per_address:
            return "pending_per_address"
        self.open += 1
        self._pending[address] = self._pending.get(address, 0) + 1
        return None

    def greeted(self, address: str) -> None:
        left = self._pending.get(address, 0) - 1
        if left > 0:
            self._pending[address] = left
        else:
            self._pending.pop(address, None)

    def closed(self) -> None:
        self.open -= 1

    def pending(self) -> int:
        return sum(self._pending.values())

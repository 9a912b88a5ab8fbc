"""Which connection receives a session's replies: leases, so a stale connection cannot silence a new one.

Why: a client that reconnects (new WebSocket, new peer) resumes its session while the old
connection may still be closing. If the old connection's close simply detached "the" connection,
it would silence the one that just resumed. Each attach grants a new lease and revokes the last;
a detach with a revoked lease changes nothing.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass(frozen=True, eq=False)
class Lease:
    """The right of one connection to receive this session's replies; a newer attach revokes it."""

    session_id: str
    serial: int


class Leases:
    """The current lease of one session (None while detached)."""

    def __init__(self, session_id: str) -> None:
        self._session_id = session_id
        self._serials = itertools.count(1)
        self.current: Lease | None = None

    def grant(self) -> Lease:
        """A new lease; the previous one is revoked."""
        self.current = Lease(self._session_id, next(self._serials))
        return self.current

    def release(self, lease: Lease) -> bool:
        """End `lease` if it is the current one; returns whether it was (a stale one changes nothing)."""
        if lease is not self.current:
            return False
        self.current = None
        return True

    def revoke(self) -> None:
        """No connection may receive replies any more (the session is closing)."""
        self.current = None

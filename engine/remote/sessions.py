"""Which identity owns which session, kept in the Ray cluster so a front-end restart does not
orphan its sessions: a client reconnecting with its session id (to the restarted front-end, or
to another one of the same app) resumes it, by the same identity only.

What survives is the session's id and owner, not its state: frames, keyframes and tracked
objects lived in the old front-end's memory, so the resumed session starts empty (the client's
next prompt without a new frame gets `no_frame`). Entries are written when a session opens and
removed when it is closed by a bye or reaped after its linger time; a front-end that stops (or
dies) leaves its sessions' entries for the next one. The table is a detached named actor, one per
Serve app name, bounded to `max_entries` (the oldest go first).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

import ray

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0, max_restarts=-1)
class SessionTable:
    """session id -> identity name; bounded, oldest first out."""

    def __init__(self, max_entries: int) -> None:
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._max = max_entries

    def record(self, session_id: str, identity: str) -> None:
        self._owners[session_id] = identity
        self._owners.move_to_end(session_id)
        while len(self._owners) > self._max:
            self._owners.popitem(last=False)

    def forget(self, session_id: str) -> None:
        self._owners.pop(session_id, None)

    def owner(self, session_id: str) -> str | None:
        return self._owners.get(session_id)


class SessionDirectory:
    """The front-end's view of the cluster's session table (engine/server.py asks it on a resume
    of a session id it does not hold)."""

    def __init__(self, app_name: str, namespace: str, timeout_s: float = 2.0, max_entries: int = 100_000) -> None:
        self._table: Any = SessionTable.options(
            name=f"{app_name}-sessions", namespace=namespace, lifetime="detached", get_if_exists=True
        ).remote(max_entries)
        self._timeout_s = timeout_s

    def record(self, session_id: str, identity: str) -> None:
        self._table.record.remote(session_id, identity)  # not awaited: the table is not on the hot path

    def forget(self, session_id: str) -> None:
        self._table.forget.remote(session_id)

    def owner(self, session_id: str) -> str | None:
        """The identity that opened it, or None (unknown, or the table did not answer in time)."""
        try:
            return ray.get(self._table.owner.remote(session_id), timeout=self._timeout_s)
        except Exception as exc:  # noqa: BLE001 - a resume that cannot be checked is refused
            log.warning("session table did not answer (%s); refusing the resume", exc)
            return None

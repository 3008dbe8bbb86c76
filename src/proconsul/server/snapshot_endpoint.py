"""Snapshot save and restore on the server (Consul's agent/consul/snapshot_endpoint.go).

Save takes a consistent copy of the FSM and wraps it in Consul's archive layout; restore checks
the whole archive (sums, metadata, and that the state loads) before anything is replaced, then
hands the state to Raft, which records it durably before swapping it in.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from proconsul.errors import RPCError, SnapshotError
from proconsul.snapshot.archive import read_archive, write_archive

if TYPE_CHECKING:
    from proconsul.server.server import Server


class SnapshotCapable(Protocol):
    """What an Applier offers when it can save and restore whole-state snapshots."""

    term: int
    applied: int

    async def restore(self, state: bytes) -> int: ...


class SnapshotEndpoint:
    def __init__(self, server: Server) -> None:
        self._srv = server

    def _raft(self) -> SnapshotCapable:
        applier: Any = self._srv.applier
        if not hasattr(applier, "restore"):
            raise RPCError("Snapshots are not supported by this server")
        return applier  # type: ignore[no-any-return]

    async def save(self) -> tuple[int, bytes]:
        """(index, archive bytes) of the state as of now."""
        raft = self._raft()
        index, term = raft.applied, raft.term
        state = self._srv.applier.fsm.snapshot()
        meta = {
            "Version": 1,
            "ID": f"{term}-{index}-{int(time.time() * 1000)}",
            "Index": index,
            "Term": term,
            "Peers": None,
            "Configuration": getattr(raft, "configuration", None),
            "ConfigurationIndex": getattr(raft, "configuration_index", 0),
            "Size": len(state),
        }
        return index, write_archive(meta, state)

    async def restore(self, archive: bytes) -> int:
        """Verify `archive` completely, then restore it; returns the index it was recorded at."""
        raft = self._raft()
        try:
            _, state = read_archive(archive)
            self._srv.applier.fsm.check_snapshot(state)
        except SnapshotError as err:
            raise RPCError(f"Error restoring snapshot: {err}") from None
        index = await raft.restore(state)
        self._srv.session.initialize_timers()
        return index

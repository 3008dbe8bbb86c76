"""The seam between endpoints and consensus: something that commits a command and answers
with the FSM's result.

`DevApplier` commits in memory at the next index (the -dev agent, a single in-memory server);
the Raft node implements the same Protocol for durable and replicated servers.
"""

from __future__ import annotations

from typing import Any, Protocol

from proconsul.server.fsm import FSM


class Applier(Protocol):
    fsm: FSM

    async def apply(self, command: bytes) -> Any:
        """Commit `command`, apply it to the FSM, and return the FSM's result."""
        ...

    def is_leader(self) -> bool: ...

    def leader_address(self) -> str:
        """`ip:port` of the current leader, or "" when none is known."""
        ...

    def last_contact_ms(self) -> int: ...

    def last_index(self) -> int: ...

    def peers(self) -> list[str]: ...

    async def verify_leader(self) -> None:
        """Confirm leadership with a quorum (raises NoLeader when it cannot)."""
        ...

    def stats(self) -> dict[str, str]:
        """The `raft` section of `/v1/agent/self` Stats."""
        ...


class DevApplier:
    """A single in-memory voter that is always the leader."""

    def __init__(self, fsm: FSM, address: str, server_id: str) -> None:
        self.fsm = fsm
        self.address = address
        self.server_id = server_id
        self._index = 1  # Raft's first entry is the configuration; commands start after it

    async def apply(self, command: bytes) -> Any:
        self._index += 1
        return self.fsm.apply(self._index, command)

    def is_leader(self) -> bool:
        return True

    def leader_address(self) -> str:
        return self.address

    def last_contact_ms(self) -> int:
        return 0

    def last_index(self) -> int:
        return self._index

    def peers(self) -> list[str]:
        return [self.address]

    async def verify_leader(self) -> None:
        return None

    def stats(self) -> dict[str, str]:
        idx = str(self._index)
        return {
            "applied_index": idx, "commit_index": idx, "fsm_pending": "0",
            "last_contact": "0", "last_log_index": idx, "last_log_term": "2",
            "last_snapshot_index": "0", "last_snapshot_term": "0",
            "latest_configuration": (
                f"[{{Suffrage:Voter ID:{self.server_id} Address:{self.address}}}]"
            ),
            "latest_configuration_index": "0", "num_peers": "0",
            "protocol_version": "3", "protocol_version_max": "3", "protocol_version_min": "0",
            "snapshot_version_max": "1", "snapshot_version_min": "0", "state": "Leader",
            "term": "2",
        }

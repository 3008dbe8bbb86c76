"""The seam between endpoints and consensus: something that commits a command and answers
with the FSM's result.

The Raft server (raft/cluster.py) implements it, on file stores for servers and on their
in-memory twins for -dev.
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

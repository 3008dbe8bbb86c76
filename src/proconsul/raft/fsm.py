"""The state machine Raft feeds committed commands to (hashicorp/raft fsm.go), in the shape the
server's FSM already has: commands as bytes, snapshots as one byte string."""

from __future__ import annotations

from typing import Any, Protocol


class FSM(Protocol):
    def apply(self, index: int, command: bytes) -> Any:
        """Apply one committed command; the result goes back to whoever applied it. An
        exception fails that caller only: the entry stays committed."""
        ...

    def snapshot(self) -> bytes:
        """A consistent copy of the state, taken between two applies."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot's."""
        ...

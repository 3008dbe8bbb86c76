"""The SnapshotStore seam (hashicorp/raft snapshot.go): create, list and open point-in-time
copies of the FSM, keeping the newest few."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol


@dataclass(slots=True, frozen=True)
class SnapshotMeta:
    id: str
    index: int
    term: int
    size: int
    version: int = 1
    #: the Raft configuration at `index`, as plain data (servers with ID, Address, Suffrage)
    configuration: Any = None
    configuration_index: int = 0


class SnapshotSink(Protocol):
    """Where a snapshot is written; nothing is visible to list/open until close()."""

    @property
    def id(self) -> str: ...

    def write(self, data: bytes) -> int: ...

    def close(self) -> None:
        """Make the snapshot durable and visible, then drop snapshots beyond the retain count."""
        ...

    def cancel(self) -> None:
        """Throw the partial snapshot away."""
        ...


class SnapshotStore(Protocol):
    def create(
        self, version: int, index: int, term: int, configuration: Any, configuration_index: int
    ) -> SnapshotSink: ...

    def list(self) -> list[SnapshotMeta]:
        """Complete snapshots, newest first (damaged ones are skipped)."""
        ...

    def open(self, snapshot_id: str) -> tuple[SnapshotMeta, BinaryIO]:
        """The metadata and a reader of the snapshot's bytes, verified against its checksum
        (raises SnapshotError when they do not match)."""
        ...

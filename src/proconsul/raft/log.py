"""Log entries and the LogStore seam (hashicorp/raft log.go).

A LogStore is what Raft appends to. Reads are synchronous (served from memory or one pread);
appends are coroutines that return only once the entries are durable, so the event loop never
waits on a disk and a caller is never answered before its entry survives a crash.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class LogType(enum.IntEnum):
    """hashicorp/raft's LogType numbering; append-only."""

    COMMAND = 0
    NOOP = 1
    ADD_PEER_DEPRECATED = 2
    REMOVE_PEER_DEPRECATED = 3
    BARRIER = 4
    CONFIGURATION = 5


@dataclass(slots=True, frozen=True)
class Log:
    index: int
    term: int
    type: int
    data: bytes


class LogStore(Protocol):
    def first_index(self) -> int:
        """Index of the oldest entry kept, or 0 when the store is empty."""
        ...

    def last_index(self) -> int:
        """Index of the newest entry, or 0 when the store is empty."""
        ...

    def get_log(self, index: int) -> Log:
        """The entry at `index`; raises LogNotFound when it is not kept."""
        ...

    async def store_logs(self, logs: Sequence[Log]) -> None:
        """Append entries with consecutive indexes after last_index(); returns once they are
        durable. Concurrent calls are made durable together (group commit). Raises DiskFull or
        StorageError, in which case none of `logs` is kept."""
        ...

    async def delete_range(self, lo: int, hi: int) -> None:
        """Remove entries lo..hi inclusive: a prefix (compaction after a snapshot) or a suffix
        (truncation after a conflict). Durable when it returns."""
        ...

    async def close(self) -> None: ...

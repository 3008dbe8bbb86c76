"""Snapshot archives: the file `consul snapshot save` writes and `consul snapshot restore` reads.

Kept apart from `raft/` (which stores its own snapshots on disk) because the archive is an
interchange format: the HTTP endpoint produces and accepts it, and the CLI verifies and inspects
it without an agent, so it must depend on nothing but the codec.
"""

from proconsul.snapshot.archive import (
    check_meta,
    inspect_archive,
    inspect_state,
    read_archive,
    write_archive,
)

__all__ = ["check_meta", "inspect_archive", "inspect_state", "read_archive", "write_archive"]

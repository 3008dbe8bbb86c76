"""The StableStore seam (hashicorp/raft stable.go): current term and vote, replaced atomically."""

from __future__ import annotations

from typing import Protocol

from proconsul.errors import StorageError

KEY_CURRENT_TERM = b"CurrentTerm"
KEY_LAST_VOTE_TERM = b"LastVoteTerm"
KEY_LAST_VOTE_CAND = b"LastVoteCand"


def encode_uint64(value: int) -> bytes:
    """uint64 values are stored big-endian like raft-boltdb's, so a hex dump reads the same."""
    return value.to_bytes(8, "big")


def decode_uint64(raw: bytes, where: str, key: bytes) -> int:
    """0 for a key never set; an error naming the store when the value is not 8 bytes."""
    if not raw:
        return 0
    if len(raw) != 8:
        raise StorageError(f"{where}: {key!r} does not hold a uint64")
    return int.from_bytes(raw, "big")


class StableStore(Protocol):
    def set(self, key: bytes, value: bytes) -> None:
        """Durable (and atomic with respect to crashes) when it returns."""
        ...

    def get(self, key: bytes) -> bytes:
        """The value, or b"" when the key was never set."""
        ...

    def set_uint64(self, key: bytes, value: int) -> None: ...

    def get_uint64(self, key: bytes) -> int:
        """The value, or 0 when the key was never set."""
        ...

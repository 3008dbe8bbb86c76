"""The StableStore seam (hashicorp/raft stable.go): current term and vote, replaced atomically."""

from __future__ import annotations

from typing import Protocol

KEY_CURRENT_TERM = b"CurrentTerm"
KEY_LAST_VOTE_TERM = b"LastVoteTerm"
KEY_LAST_VOTE_CAND = b"LastVoteCand"


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

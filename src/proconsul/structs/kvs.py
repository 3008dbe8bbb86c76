"""KV records and the verbs that change them (Consul's structs.DirEntry and api.KVOp)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

#: KV verbs, as named on the wire (api.KVOp); append-only.
KV_SET = "set"
KV_DELETE = "delete"
KV_DELETE_CAS = "delete-cas"
KV_DELETE_TREE = "delete-tree"
KV_CAS = "cas"
KV_LOCK = "lock"
KV_UNLOCK = "unlock"
KV_GET = "get"
KV_GET_OR_EMPTY = "get-or-empty"
KV_GET_TREE = "get-tree"
KV_CHECK_SESSION = "check-session"
KV_CHECK_INDEX = "check-index"
KV_CHECK_NOT_EXISTS = "check-not-exists"

KV_WRITE_VERBS = frozenset(
    {KV_SET, KV_DELETE, KV_DELETE_CAS, KV_DELETE_TREE, KV_CAS, KV_LOCK, KV_UNLOCK}
)
KV_VERBS = KV_WRITE_VERBS | {
    KV_GET, KV_GET_OR_EMPTY, KV_GET_TREE, KV_CHECK_SESSION, KV_CHECK_INDEX, KV_CHECK_NOT_EXISTS,
}


@dataclass(slots=True, frozen=True)
class KVEntry:
    """One key. Frozen: the store replaces entries, so a reader's copy never changes under it."""

    key: str
    value: bytes | None = None
    flags: int = 0
    session: str = ""
    lock_index: int = 0
    create_index: int = 0
    modify_index: int = 0

    def same_content(self, other: KVEntry) -> bool:
        """True when a write of `other` would change nothing a reader can see (a no-op write)."""
        return (
            self.key == other.key
            and self.flags == other.flags
            and (self.value or b"") == (other.value or b"")
            and self.session == other.session
            and self.lock_index == other.lock_index
        )

    def to_api(self, with_value: bool = True) -> dict[str, Any]:
        """The JSON object Consul answers with (KVPair); `Session` only when held."""
        out: dict[str, Any] = {
            "LockIndex": self.lock_index,
            "Key": self.key,
            "Flags": self.flags,
            "Value": (
                base64.b64encode(self.value).decode("ascii")
                if with_value and self.value
                else None
            ),
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }
        if self.session:
            out["Session"] = self.session
        return out

    def to_wire(self) -> dict[str, Any]:
        """The msgpack map carried in FSM commands (Go field names, raw bytes)."""
        return {
            "Key": self.key,
            "Value": self.value,
            "Flags": self.flags,
            "Session": self.session,
            "LockIndex": self.lock_index,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> KVEntry:
        value = m.get("Value")
        return cls(
            key=m["Key"],
            value=bytes(value) if value is not None else None,
            flags=int(m.get("Flags") or 0),
            session=m.get("Session") or "",
            lock_index=int(m.get("LockIndex") or 0),
            create_index=int(m.get("CreateIndex") or 0),
            modify_index=int(m.get("ModifyIndex") or 0),
        )

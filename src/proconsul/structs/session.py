"""Session records (Consul's structs.Session)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BEHAVIOR_RELEASE = "release"
BEHAVIOR_DELETE = "delete"
SESSION_BEHAVIORS = (BEHAVIOR_RELEASE, BEHAVIOR_DELETE)

SERF_CHECK_ID = "serfHealth"
SERF_CHECK_NAME = "Serf Health Status"

#: Default lock-delay (Consul's structs.DefaultLockDelay).
DEFAULT_LOCK_DELAY_NS = 15_000_000_000
#: Longest TTL a session may ask for (structs.SessionTTLMax).
SESSION_TTL_MAX_S = 86400.0
#: The leader waits this many TTLs before invalidating (structs.SessionTTLMultiplier).
SESSION_TTL_MULTIPLIER = 2


@dataclass(slots=True, frozen=True)
class ServiceCheck:
    id: str
    namespace: str = ""


@dataclass(slots=True, frozen=True)
class Session:
    """A session; frozen so readers can hold it while the store moves on."""

    id: str
    node: str
    name: str = ""
    node_checks: tuple[str, ...] = (SERF_CHECK_ID,)
    service_checks: tuple[ServiceCheck, ...] = field(default_factory=tuple)
    lock_delay_ns: int = DEFAULT_LOCK_DELAY_NS
    behavior: str = BEHAVIOR_RELEASE
    ttl: str = ""
    create_index: int = 0
    modify_index: int = 0

    def check_ids(self) -> list[str]:
        return [*self.node_checks, *(c.id for c in self.service_checks)]

    def to_api(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Name": self.name,
            "Node": self.node,
            "LockDelay": self.lock_delay_ns,
            "Behavior": self.behavior,
            "TTL": self.ttl,
            "NodeChecks": list(self.node_checks),
            "ServiceChecks": (
                [{"ID": c.id, "Namespace": c.namespace} for c in self.service_checks]
                if self.service_checks
                else None
            ),
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }

    def to_wire(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Name": self.name,
            "Node": self.node,
            "NodeChecks": list(self.node_checks),
            "ServiceChecks": [{"ID": c.id, "Namespace": c.namespace} for c in self.service_checks],
            "LockDelay": self.lock_delay_ns,
            "Behavior": self.behavior,
            "TTL": self.ttl,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> Session:
        return cls(
            id=m["ID"],
            node=m.get("Node") or "",
            name=m.get("Name") or "",
            node_checks=tuple(m.get("NodeChecks") or ()),
            service_checks=tuple(
                ServiceCheck(c.get("ID", ""), c.get("Namespace", ""))
                for c in (m.get("ServiceChecks") or ())
            ),
            lock_delay_ns=int(m.get("LockDelay") or 0),
            behavior=m.get("Behavior") or BEHAVIOR_RELEASE,
            ttl=m.get("TTL") or "",
            create_index=int(m.get("CreateIndex") or 0),
            modify_index=int(m.get("ModifyIndex") or 0),
        )

"""Catalog records needed by sessions: nodes and their health checks (Consul's structs.Node and
structs.HealthCheck). The full service catalog extends these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HEALTH_PASSING = "passing"
HEALTH_WARNING = "warning"
HEALTH_CRITICAL = "critical"
HEALTH_STATUSES = (HEALTH_PASSING, HEALTH_WARNING, HEALTH_CRITICAL)


@dataclass(slots=True, frozen=True)
class Node:
    node: str
    address: str
    id: str = ""
    datacenter: str = ""
    tagged_addresses: dict[str, str] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0

    def to_api(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Node": self.node,
            "Address": self.address,
            "Datacenter": self.datacenter,
            "TaggedAddresses": dict(self.tagged_addresses),
            "Meta": dict(self.meta),
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }

    def to_wire(self) -> dict[str, Any]:
        return {
            "ID": self.id, "Node": self.node, "Address": self.address,
            "Datacenter": self.datacenter, "TaggedAddresses": dict(self.tagged_addresses),
            "Meta": dict(self.meta),
        }

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> Node:
        return cls(
            node=m["Node"], address=m.get("Address") or "", id=m.get("ID") or "",
            datacenter=m.get("Datacenter") or "",
            tagged_addresses=dict(m.get("TaggedAddresses") or {}),
            meta=dict(m.get("Meta") or {}),
        )


@dataclass(slots=True, frozen=True)
class HealthCheck:
    node: str
    check_id: str
    name: str = ""
    status: str = HEALTH_CRITICAL
    notes: str = ""
    output: str = ""
    service_id: str = ""
    service_name: str = ""
    type: str = ""
    create_index: int = 0
    modify_index: int = 0

    def to_api(self) -> dict[str, Any]:
        return {
            "Node": self.node, "CheckID": self.check_id, "Name": self.name,
            "Status": self.status, "Notes": self.notes, "Output": self.output,
            "ServiceID": self.service_id, "ServiceName": self.service_name,
            "ServiceTags": [], "Type": self.type, "Interval": "", "Timeout": "",
            "ExposedPort": 0, "Definition": {},
            "CreateIndex": self.create_index, "ModifyIndex": self.modify_index,
        }

    def to_wire(self) -> dict[str, Any]:
        return {
            "Node": self.node, "CheckID": self.check_id, "Name": self.name,
            "Status": self.status, "Notes": self.notes, "Output": self.output,
            "ServiceID": self.service_id, "ServiceName": self.service_name, "Type": self.type,
        }

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> HealthCheck:
        return cls(
            node=m["Node"], check_id=m["CheckID"], name=m.get("Name") or "",
            status=m.get("Status") or HEALTH_CRITICAL, notes=m.get("Notes") or "",
            output=m.get("Output") or "", service_id=m.get("ServiceID") or "",
            service_name=m.get("ServiceName") or "", type=m.get("Type") or "",
        )

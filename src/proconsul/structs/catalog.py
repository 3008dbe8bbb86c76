"""Catalog records: nodes, service instances and health checks (Consul's structs.Node,
structs.NodeService and structs.HealthCheck).

Each record has three shapes: the dataclass the store keeps, `to_wire` (what FSM commands and
snapshots carry) and `to_api` (the JSON the HTTP API answers with, in Go's field order). Mesh
fields (`Proxy`, `Connect`) and a check's `Definition` are kept as opaque maps: the catalog only
stores and returns them, it never interprets them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HEALTH_PASSING = "passing"
HEALTH_WARNING = "warning"
HEALTH_CRITICAL = "critical"
HEALTH_STATUSES = (HEALTH_PASSING, HEALTH_WARNING, HEALTH_CRITICAL)

#: Top-level `?filter=` selectors of each answer shape (the Go fields go-bexpr can see; the
#: Raft indexes and a check's Definition are hidden from it).
NODE_FIELDS = ("ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta", "PeerName")
SERVICE_FIELDS = (
    "Kind", "ID", "Service", "Tags", "Address", "TaggedAddresses", "Meta", "Port",
    "SocketPath", "Weights", "EnableTagOverride", "Proxy", "Connect", "PeerName", "Locality",
)
CATALOG_SERVICE_FIELDS = (
    "ID", "Node", "Address", "Datacenter", "TaggedAddresses", "NodeMeta", "ServiceKind",
    "ServiceID", "ServiceName", "ServiceTags", "ServiceAddress", "ServiceTaggedAddresses",
    "ServiceWeights", "ServiceMeta", "ServicePort", "ServiceSocketPath",
    "ServiceEnableTagOverride", "ServiceProxy", "ServiceConnect", "ServiceLocality", "PeerName",
)
CHECK_FIELDS = (
    "Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "ServiceName",
    "ServiceTags", "Type", "Interval", "Timeout", "ExposedPort", "PeerName",
)
ENTRY_FIELDS = ("Node", "Service", "Checks")


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
    service_tags: tuple[str, ...] = ()
    type: str = ""
    interval: str = ""
    timeout: str = ""
    exposed_port: int = 0
    definition: dict[str, Any] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0

    def to_api(self) -> dict[str, Any]:
        return {
            "Node": self.node, "CheckID": self.check_id, "Name": self.name,
            "Status": self.status, "Notes": self.notes, "Output": self.output,
            "ServiceID": self.service_id, "ServiceName": self.service_name,
            "ServiceTags": list(self.service_tags), "Type": self.type,
            "Interval": self.interval, "Timeout": self.timeout,
            "ExposedPort": self.exposed_port, "Definition": dict(self.definition),
            "CreateIndex": self.create_index, "ModifyIndex": self.modify_index,
        }

    def to_wire(self) -> dict[str, Any]:
        return {
            "Node": self.node, "CheckID": self.check_id, "Name": self.name,
            "Status": self.status, "Notes": self.notes, "Output": self.output,
            "ServiceID": self.service_id, "ServiceName": self.service_name,
            "ServiceTags": list(self.service_tags), "Type": self.type,
            "Interval": self.interval, "Timeout": self.timeout,
            "ExposedPort": self.exposed_port, "Definition": dict(self.definition),
        }

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> HealthCheck:
        return cls(
            node=m["Node"], check_id=m["CheckID"], name=m.get("Name") or "",
            status=m.get("Status") or HEALTH_CRITICAL, notes=m.get("Notes") or "",
            output=m.get("Output") or "", service_id=m.get("ServiceID") or "",
            service_name=m.get("ServiceName") or "",
            service_tags=tuple(m.get("ServiceTags") or ()), type=m.get("Type") or "",
            interval=_text(m.get("Interval")), timeout=_text(m.get("Timeout")),
            exposed_port=int(m.get("ExposedPort") or 0),
            definition=dict(m.get("Definition") or {}),
        )


def _text(value: Any) -> str:
    """Durations arrive as Go strings or as integer nanoseconds; the catalog keeps the text."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


DEFAULT_WEIGHTS = {"Passing": 1, "Warning": 1}


@dataclass(slots=True, frozen=True)
class NodeService:
    """One service instance on one node; `id` is unique per node, `service` is the name."""

    node: str
    id: str
    service: str
    kind: str = ""
    tags: tuple[str, ...] = ()
    address: str = ""
    tagged_addresses: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    port: int = 0
    socket_path: str = ""
    weights: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    enable_tag_override: bool = False
    proxy: dict[str, Any] = field(default_factory=dict)
    connect: dict[str, Any] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0

    def to_api(self) -> dict[str, Any]:
        """The AgentService shape of catalog node views and health entries."""
        out: dict[str, Any] = {}
        if self.kind:
            out["Kind"] = self.kind
        out["ID"] = self.id
        out["Service"] = self.service
        out["Tags"] = list(self.tags)
        out["Address"] = self.address
        if self.tagged_addresses:
            out["TaggedAddresses"] = dict(self.tagged_addresses)
        out["Meta"] = dict(self.meta)
        out["Port"] = self.port
        if self.socket_path:
            out["SocketPath"] = self.socket_path
        out["Weights"] = dict(self.weights)
        out["EnableTagOverride"] = self.enable_tag_override
        out["Proxy"] = _proxy(self.proxy)
        out["Connect"] = dict(self.connect)
        out["CreateIndex"] = self.create_index
        out["ModifyIndex"] = self.modify_index
        return out

    def to_catalog_api(self, node: Node) -> dict[str, Any]:
        """The flattened CatalogService shape of `/v1/catalog/service/:name`."""
        return {
            "ID": node.id, "Node": node.node, "Address": node.address,
            "Datacenter": node.datacenter, "TaggedAddresses": dict(node.tagged_addresses),
            "NodeMeta": dict(node.meta), "ServiceKind": self.kind, "ServiceID": self.id,
            "ServiceName": self.service, "ServiceTags": list(self.tags),
            "ServiceAddress": self.address,
            "ServiceTaggedAddresses": dict(self.tagged_addresses),
            "ServiceWeights": dict(self.weights), "ServiceMeta": dict(self.meta),
            "ServicePort": self.port, "ServiceSocketPath": self.socket_path,
            "ServiceEnableTagOverride": self.enable_tag_override,
            "ServiceProxy": _proxy(self.proxy), "ServiceConnect": dict(self.connect),
            "CreateIndex": self.create_index, "ModifyIndex": self.modify_index,
        }

    def to_wire(self) -> dict[str, Any]:
        return {
            "Node": self.node, "ID": self.id, "Service": self.service, "Kind": self.kind,
            "Tags": list(self.tags), "Address": self.address,
            "TaggedAddresses": dict(self.tagged_addresses), "Meta": dict(self.meta),
            "Port": self.port, "SocketPath": self.socket_path, "Weights": dict(self.weights),
            "EnableTagOverride": self.enable_tag_override, "Proxy": dict(self.proxy),
            "Connect": dict(self.connect),
        }

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> NodeService:
        return cls(
            node=m.get("Node") or "", id=m.get("ID") or "", service=m.get("Service") or "",
            kind=m.get("Kind") or "", tags=tuple(m.get("Tags") or ()),
            address=m.get("Address") or "",
            tagged_addresses=dict(m.get("TaggedAddresses") or {}),
            meta=dict(m.get("Meta") or {}), port=int(m.get("Port") or 0),
            socket_path=m.get("SocketPath") or "",
            weights=dict(m.get("Weights") or DEFAULT_WEIGHTS),
            enable_tag_override=bool(m.get("EnableTagOverride")),
            proxy=dict(m.get("Proxy") or {}), connect=dict(m.get("Connect") or {}),
        )


def _proxy(proxy: dict[str, Any]) -> dict[str, Any]:
    """Consul always writes the proxy's gateway and expose sub-objects, even when unset."""
    return {"MeshGateway": {}, "Expose": {}, **proxy}

"""Records as they travel in RPC arguments and replies (Consul's msgpack shapes of its structs).

The records' own `to_wire` forms are what FSM commands and snapshots carry, which leave out the
Raft indexes the state store assigns; an RPC reply must carry them, because the HTTP answer a
client agent builds from it shows CreateIndex and ModifyIndex. So each record here travels as
its `to_wire` map plus its indexes (Consul's embedded RaftIndex, flattened as go-msgpack does).

Query options and metadata follow Consul's structs.QueryOptions and structs.QueryMeta: embedded
in the request or reply struct, hence flattened into the same map, with durations as integer
nanoseconds (Go's time.Duration).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from proconsul.state.catalog import HealthEntry, MetaFilter
from proconsul.state.coordinate import CoordinateEntry, DatacenterMap
from proconsul.structs.catalog import DEFAULT_WEIGHTS, HealthCheck, Node, NodeService
from proconsul.structs.kvs import KVEntry
from proconsul.structs.query import QueryMeta, QueryOptions
from proconsul.structs.session import Session

_NS = 1_000_000_000


def _int(value: Any) -> int:
    return int(value or 0)


def _created(m: Mapping[str, Any]) -> int:
    return _int(m.get("CreateIndex"))


def _modified(m: Mapping[str, Any]) -> int:
    return _int(m.get("ModifyIndex"))


# -- query options and metadata -----------------------------------------------------------------


def query_to_wire(opts: QueryOptions) -> dict[str, Any]:
    """The QueryOptions fields of a read request, with its Datacenter."""
    return {
        "Datacenter": opts.datacenter,
        "Token": opts.token,
        "MinQueryIndex": opts.min_query_index,
        "MaxQueryTime": round(opts.max_query_time * _NS),
        "AllowStale": opts.allow_stale,
        "RequireConsistent": opts.require_consistent,
        "MaxStaleDuration": round(opts.max_stale * _NS),
        "Filter": opts.filter,
    }


def query_from_wire(m: Mapping[str, Any]) -> QueryOptions:
    return QueryOptions(
        datacenter=m.get("Datacenter") or "",
        token=m.get("Token") or "",
        min_query_index=_int(m.get("MinQueryIndex")),
        max_query_time=_int(m.get("MaxQueryTime")) / _NS,
        allow_stale=bool(m.get("AllowStale")),
        require_consistent=bool(m.get("RequireConsistent")),
        max_stale=_int(m.get("MaxStaleDuration")) / _NS,
        filter=m.get("Filter") or "",
    )


def meta_to_wire(meta: QueryMeta) -> dict[str, Any]:
    """QueryMeta as Consul replies carry it (LastContact in nanoseconds; Backend 0 is the
    blocking-query backend)."""
    return {
        "Index": meta.index,
        "LastContact": meta.last_contact_ms * 1_000_000,
        "KnownLeader": meta.known_leader,
        "ConsistencyLevel": meta.consistency_level,
        "NotModified": False,
        "Backend": 0,
    }


def meta_from_wire(m: Mapping[str, Any]) -> QueryMeta:
    return QueryMeta(
        index=_int(m.get("Index")),
        last_contact_ms=_int(m.get("LastContact")) // 1_000_000,
        known_leader=bool(m.get("KnownLeader")),
        consistency_level=m.get("ConsistencyLevel") or "",
    )


def source_to_wire(datacenter: str, near: str, source_ip: str) -> dict[str, Any]:
    """structs.QuerySource: the node `?near=` sorts from (`_ip`: the node at `Ip`)."""
    return {"Datacenter": datacenter, "Segment": "", "Node": near, "Ip": source_ip}


def source_from_wire(m: Mapping[str, Any] | None) -> tuple[str, str]:
    """(near, source_ip) of a QuerySource."""
    if not m:
        return "", ""
    return m.get("Node") or "", m.get("Ip") or ""


def meta_filter_to_wire(node_meta: MetaFilter) -> dict[str, str] | None:
    return dict(node_meta) if node_meta else None


def meta_filter_from_wire(value: Any) -> MetaFilter:
    return {str(k): str(v) for k, v in value.items()} if value else None


# -- records ------------------------------------------------------------------------------------


def kv_to_wire(entry: KVEntry) -> dict[str, Any]:
    return entry.to_wire()


def kv_from_wire(m: Mapping[str, Any]) -> KVEntry:
    return KVEntry.from_wire(dict(m))


def node_to_wire(node: Node) -> dict[str, Any]:
    return {**node.to_wire(), "CreateIndex": node.create_index, "ModifyIndex": node.modify_index}


def node_from_wire(m: Mapping[str, Any]) -> Node:
    return replace(Node.from_wire(dict(m)), create_index=_created(m),
                   modify_index=_modified(m))


def service_to_wire(svc: NodeService) -> dict[str, Any]:
    return {**svc.to_wire(), "CreateIndex": svc.create_index, "ModifyIndex": svc.modify_index}


def service_from_wire(m: Mapping[str, Any]) -> NodeService:
    return replace(NodeService.from_wire(dict(m)), create_index=_created(m),
                   modify_index=_modified(m))


def check_to_wire(check: HealthCheck) -> dict[str, Any]:
    return {**check.to_wire(), "CreateIndex": check.create_index,
            "ModifyIndex": check.modify_index}


def check_from_wire(m: Mapping[str, Any]) -> HealthCheck:
    return replace(HealthCheck.from_wire(dict(m)), create_index=_created(m),
                   modify_index=_modified(m))


def session_to_wire(sess: Session) -> dict[str, Any]:
    return sess.to_wire()


def session_from_wire(m: Mapping[str, Any]) -> Session:
    return Session.from_wire(dict(m))


def service_node_to_wire(node: Node, svc: NodeService) -> dict[str, Any]:
    """structs.ServiceNode: the node and one of its instances flattened into one map, the
    instance's indexes standing for the pair's."""
    return {
        "ID": node.id, "Node": node.node, "Address": node.address,
        "Datacenter": node.datacenter, "TaggedAddresses": dict(node.tagged_addresses),
        "NodeMeta": dict(node.meta), "ServiceKind": svc.kind, "ServiceID": svc.id,
        "ServiceName": svc.service, "ServiceTags": list(svc.tags),
        "ServiceAddress": svc.address, "ServiceTaggedAddresses": dict(svc.tagged_addresses),
        "ServiceWeights": dict(svc.weights), "ServiceMeta": dict(svc.meta),
        "ServicePort": svc.port, "ServiceSocketPath": svc.socket_path,
        "ServiceEnableTagOverride": svc.enable_tag_override,
        "ServiceProxy": dict(svc.proxy), "ServiceConnect": dict(svc.connect),
        "CreateIndex": svc.create_index, "ModifyIndex": svc.modify_index,
    }


def service_node_from_wire(m: Mapping[str, Any]) -> tuple[Node, NodeService]:
    node = Node(
        node=m.get("Node") or "", address=m.get("Address") or "", id=m.get("ID") or "",
        datacenter=m.get("Datacenter") or "",
        tagged_addresses=dict(m.get("TaggedAddresses") or {}),
        meta=dict(m.get("NodeMeta") or {}),
    )
    svc = NodeService(
        node=node.node, id=m.get("ServiceID") or "", service=m.get("ServiceName") or "",
        kind=m.get("ServiceKind") or "", tags=tuple(m.get("ServiceTags") or ()),
        address=m.get("ServiceAddress") or "",
        tagged_addresses=dict(m.get("ServiceTaggedAddresses") or {}),
        meta=dict(m.get("ServiceMeta") or {}), port=_int(m.get("ServicePort")),
        socket_path=m.get("ServiceSocketPath") or "",
        weights=dict(m.get("ServiceWeights") or DEFAULT_WEIGHTS),
        enable_tag_override=bool(m.get("ServiceEnableTagOverride")),
        proxy=dict(m.get("ServiceProxy") or {}), connect=dict(m.get("ServiceConnect") or {}),
        create_index=_created(m), modify_index=_modified(m),
    )
    return node, svc


def health_entry_to_wire(entry: HealthEntry) -> dict[str, Any]:
    """structs.CheckServiceNode."""
    node, svc, checks = entry
    return {"Node": node_to_wire(node), "Service": service_to_wire(svc),
            "Checks": [check_to_wire(c) for c in checks]}


def health_entry_from_wire(m: Mapping[str, Any]) -> HealthEntry:
    return (node_from_wire(m["Node"]), service_from_wire(m["Service"]),
            [check_from_wire(c) for c in m.get("Checks") or ()])


def node_services_to_wire(node: Node | None, services: list[NodeService]
                          ) -> dict[str, Any] | None:
    """structs.NodeServices (nil for an unknown node): services keyed by ID, in the order the
    store gave them."""
    if node is None:
        return None
    return {"Node": node_to_wire(node),
            "Services": {s.id: service_to_wire(s) for s in services}}


def node_services_from_wire(m: Mapping[str, Any] | None
                            ) -> tuple[Node | None, list[NodeService]]:
    if not m:
        return None, []
    return (node_from_wire(m["Node"]),
            [service_from_wire(s) for s in (m.get("Services") or {}).values()])


def coordinate_to_wire(entry: CoordinateEntry) -> dict[str, Any]:
    return entry.to_wire()


def coordinate_from_wire(m: Mapping[str, Any]) -> CoordinateEntry:
    return CoordinateEntry.from_wire(m)


def datacenter_map_to_wire(dc: DatacenterMap) -> dict[str, Any]:
    return dc.to_api()


def datacenter_map_from_wire(m: Mapping[str, Any]) -> DatacenterMap:
    return DatacenterMap(
        m.get("Datacenter") or "", m.get("AreaID") or "",
        tuple(coordinate_from_wire(c) for c in m.get("Coordinates") or ()),
    )


def txn_ops_to_wire(ops: list[tuple[str, KVEntry]]) -> list[dict[str, Any]]:
    """structs.TxnOps of KV operations."""
    return [{"KV": {"Verb": verb, "DirEnt": e.to_wire()}} for verb, e in ops]


def txn_ops_from_wire(ops: Any) -> list[tuple[str, KVEntry]]:
    out: list[tuple[str, KVEntry]] = []
    for op in ops or ():
        kv = op.get("KV") or {}
        out.append((kv.get("Verb") or "", kv_from_wire(kv.get("DirEnt") or {"Key": ""})))
    return out


def txn_results_to_wire(results: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """structs.TxnResults: each {"KV": entry}."""
    if results is None:
        return None
    return [{"KV": kv_to_wire(r["KV"])} for r in results]


def txn_results_from_wire(results: Any) -> list[dict[str, Any]] | None:
    if results is None:
        return None
    return [{"KV": kv_from_wire(r["KV"])} for r in results]


def txn_errors_from_wire(errors: Any) -> list[dict[str, Any]] | None:
    """structs.TxnErrors: {"OpIndex", "What"} each."""
    if errors is None:
        return None
    return [{"OpIndex": _int(e.get("OpIndex")), "What": e.get("What") or ""} for e in errors]

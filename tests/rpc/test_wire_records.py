"""Records, query options and metadata through Consul's msgpack shapes and back, as RPC
arguments and replies carry them; and remote error texts back to the exceptions the HTTP
layer maps to statuses."""

from __future__ import annotations

from typing import Any

import msgpack

from proconsul.errors import Forbidden, HTTPError, NoLeader, RPCError
from proconsul.gossip.serf.coordinate import Coordinate
from proconsul.rpc.codec import pack
from proconsul.rpc.error_kinds import TooManyRequests, from_remote, translate
from proconsul.rpc.errors import CallFailed, RemoteError
from proconsul.state.coordinate import CoordinateEntry, DatacenterMap
from proconsul.structs import wire as W
from proconsul.structs.catalog import HealthCheck, Node, NodeService
from proconsul.structs.kvs import KVEntry
from proconsul.structs.query import QueryMeta, QueryOptions
from proconsul.structs.session import ServiceCheck, Session


def over_the_wire(obj: Any) -> Any:
    return msgpack.unpackb(pack(obj), raw=False, strict_map_key=False)


NODE = Node("web1", "10.0.0.2", id="0b0c9d6e-0f4e-4f0a-9d6a-6c6f0f6b6a01", datacenter="dc1",
            tagged_addresses={"lan": "10.0.0.2"}, meta={"rack": "r1"}, create_index=5,
            modify_index=9)
SERVICE = NodeService("web1", "web-1", "web", kind="", tags=("a", "b"), address="10.0.0.3",
                      tagged_addresses={"lan_ipv4": {"Address": "10.0.0.3", "Port": 80}},
                      meta={"v": "1"}, port=80, weights={"Passing": 3, "Warning": 1},
                      enable_tag_override=True, proxy={"DestinationServiceName": "x"},
                      connect={"Native": True}, create_index=6, modify_index=11)
CHECK = HealthCheck("web1", "service:web-1", name="web", status="passing", notes="n",
                    output="ok", service_id="web-1", service_name="web", service_tags=("a",),
                    type="http", interval="10s", timeout="1s", exposed_port=0,
                    definition={"HTTP": "http://x"}, create_index=7, modify_index=12)


def test_records_round_trip_with_their_indexes() -> None:
    assert W.node_from_wire(over_the_wire(W.node_to_wire(NODE))) == NODE
    assert W.service_from_wire(over_the_wire(W.service_to_wire(SERVICE))) == SERVICE
    assert W.check_from_wire(over_the_wire(W.check_to_wire(CHECK))) == CHECK
    entry = (NODE, SERVICE, [CHECK])
    assert W.health_entry_from_wire(over_the_wire(W.health_entry_to_wire(entry))) == entry
    kv = KVEntry("a/b", b"\x00\xffbin", flags=42, session="s", lock_index=2, create_index=3,
                 modify_index=4)
    assert W.kv_from_wire(over_the_wire(W.kv_to_wire(kv))) == kv
    assert W.kv_from_wire(over_the_wire(W.kv_to_wire(KVEntry("k")))) == KVEntry("k")
    sess = Session("9d3c1e2a-0000-4000-8000-000000000001", "web1", name="lock",
                   node_checks=("serfHealth",), service_checks=(ServiceCheck("c1", ""),),
                   lock_delay_ns=5_000_000_000, behavior="delete", ttl="30s", create_index=8,
                   modify_index=8)
    assert W.session_from_wire(over_the_wire(W.session_to_wire(sess))) == sess
    coord = CoordinateEntry("web1", "", Coordinate([0.1] * 8, 0.5, 0.01, 1e-5))
    assert W.coordinate_from_wire(over_the_wire(W.coordinate_to_wire(coord))) == coord
    dcmap = DatacenterMap("dc1", "wan", (coord,))
    assert W.datacenter_map_from_wire(over_the_wire(W.datacenter_map_to_wire(dcmap))) == dcmap


def test_service_node_is_flattened_and_keeps_what_the_api_shows() -> None:
    wire = over_the_wire(W.service_node_to_wire(NODE, SERVICE))
    assert wire["ServiceID"] == "web-1" and wire["NodeMeta"] == {"rack": "r1"}
    assert wire["ModifyIndex"] == 11
    node, svc = W.service_node_from_wire(wire)
    assert svc == SERVICE
    assert svc.to_catalog_api(node) == SERVICE.to_catalog_api(NODE)


def test_node_services_keep_order_and_none_for_unknown_node() -> None:
    other = NodeService("web1", "a-first", "a", create_index=1, modify_index=1)
    wire = over_the_wire(W.node_services_to_wire(NODE, [SERVICE, other]))
    assert list(wire["Services"]) == ["web-1", "a-first"]
    assert W.node_services_from_wire(wire) == (NODE, [SERVICE, other])
    assert W.node_services_to_wire(None, []) is None
    assert W.node_services_from_wire(None) == (None, [])


def test_query_options_use_consul_names_and_nanoseconds() -> None:
    opts = QueryOptions(datacenter="dc1", token="t", min_query_index=17, max_query_time=2.5,
                        allow_stale=True, require_consistent=False, max_stale=0.25,
                        filter='Node == "x"')
    wire = over_the_wire(W.query_to_wire(opts))
    assert wire["MaxQueryTime"] == 2_500_000_000 and wire["MinQueryIndex"] == 17
    assert wire["MaxStaleDuration"] == 250_000_000 and wire["AllowStale"] is True
    assert W.query_from_wire(wire) == opts
    assert W.query_from_wire({}) == QueryOptions()


def test_query_meta_round_trips() -> None:
    meta = QueryMeta(index=99, last_contact_ms=12, known_leader=False,
                     consistency_level="stale")
    wire = over_the_wire(W.meta_to_wire(meta))
    assert wire["LastContact"] == 12_000_000
    assert W.meta_from_wire(wire) == meta


def test_txn_shapes_round_trip() -> None:
    ops = [("set", KVEntry("a", b"1")), ("get", KVEntry("b"))]
    assert W.txn_ops_from_wire(over_the_wire(W.txn_ops_to_wire(ops))) == ops
    results = [{"KV": KVEntry("a", None, create_index=3, modify_index=3)}]
    assert W.txn_results_from_wire(over_the_wire(W.txn_results_to_wire(results))) == results
    assert W.txn_results_to_wire(None) is None and W.txn_results_from_wire(None) is None
    errors = [{"OpIndex": 1, "What": 'key "b" doesn\'t exist'}]
    assert W.txn_errors_from_wire(over_the_wire(errors)) == errors


def test_remote_errors_become_the_classes_the_http_layer_maps() -> None:
    assert isinstance(from_remote("No cluster leader"), NoLeader)
    denied = from_remote("Permission denied: token lacks permission 'key:write' on \"k\"")
    assert isinstance(denied, Forbidden) and denied.status == 403
    assert str(denied) == "Permission denied: token lacks permission 'key:write' on \"k\""
    assert from_remote("ACL not found").status == 403
    limited = from_remote("rpc error: rate limit exceeded, try again later")
    assert isinstance(limited, TooManyRequests) and limited.status == 429
    other = from_remote('raft apply failed: invalid session "x"')
    assert isinstance(other, RPCError) and other.status == 500
    assert str(other) == 'raft apply failed: invalid session "x"'
    assert isinstance(translate(RemoteError("No cluster leader")), NoLeader)
    broken = CallFailed("rpc error making call: EOF")
    assert translate(broken) is broken
    assert isinstance(translate(RemoteError("x")), HTTPError)

"""Catalog tables: per-service indexes that never go backwards, watches that wake only the
readers of what changed, health entries, and rollback of multi-table writes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from proconsul.errors import StateError
from proconsul.state import Store, WatchSet
from proconsul.state.txn import WriteTxn
from proconsul.structs.catalog import HealthCheck, Node, NodeService
from proconsul.structs.session import Session


def do(s: Store, idx: int, fn: Callable[[WriteTxn], object]) -> None:
    txn = s.write(idx)
    fn(txn)
    txn.commit()


def node(s: Store, idx: int, name: str, **meta: str) -> None:
    do(s, idx, lambda t: s.ensure_node(t, Node(node=name, address="10.0.0.1", meta=meta)))


def svc(s: Store, idx: int, n: str, name: str, sid: str = "", *tags: str) -> None:
    do(s, idx, lambda t: s.ensure_service(
        t, NodeService(node=n, id=sid or name, service=name, tags=tags)))


def check(s: Store, idx: int, n: str, cid: str, status: str = "passing", sid: str = "") -> None:
    do(s, idx, lambda t: s.ensure_check(
        t, HealthCheck(node=n, check_id=cid, status=status, service_id=sid)))


def populated() -> Store:
    s = Store()
    node(s, 1, "n1", rack="r1")
    node(s, 2, "n2", rack="r2")
    check(s, 3, "n1", "serfHealth")
    svc(s, 4, "n1", "web", "web1", "v1", "primary")
    svc(s, 5, "n2", "web", "web2", "v2")
    svc(s, 6, "n1", "db", "", "pg")
    check(s, 7, "n1", "web-check", "passing", "web1")
    check(s, 8, "n1", "db-check", "critical", "db")
    return s


def test_reads_and_service_index() -> None:
    s = populated()
    idx, services = s.catalog_services(None)
    assert services == {"db": ["pg"], "web": ["primary", "v1", "v2"]}
    assert idx == 6
    idx, pairs = s.service_nodes(None, "web")
    assert [(n.node, v.id) for n, v in pairs] == [("n1", "web1"), ("n2", "web2")]
    assert idx == 7  # the web check at 7 is web's latest change; db's check at 8 is not
    _, pairs = s.service_nodes(None, "web", ["PRIMARY", "v1"])
    assert [v.id for _, v in pairs] == ["web1"]
    _, pairs = s.service_nodes(None, "web", node_meta={"rack": "r2"})
    assert [v.id for _, v in pairs] == ["web2"]
    assert s.checks[("n1", "web-check")].service_name == "web"
    assert s.checks[("n1", "web-check")].service_tags == ("v1", "primary")


def test_health_entries_hold_node_checks_and_own_checks_only() -> None:
    s = populated()
    _, entries = s.health_service_nodes(None, "web")
    assert [[c.check_id for c in e[2]] for e in entries] == [["serfHealth", "web-check"], []]
    _, entries = s.health_service_nodes(None, "db")
    assert [c.check_id for c in entries[0][2]] == ["db-check", "serfHealth"]


def test_state_and_node_reads() -> None:
    s = populated()
    _, crit = s.checks_in_state(None, "critical")
    assert [c.check_id for c in crit] == ["db-check"]
    _, every = s.checks_in_state(None, "any")
    assert len(every) == 3
    _, checks = s.service_checks(None, "web")
    assert [c.check_id for c in checks] == ["web-check"]
    _, n, services = s.node_services(None, "n1")
    assert n is not None and [v.id for v in services] == ["db", "web1"]
    assert s.node_services(None, "ghost")[1] is None


def test_service_index_never_goes_back_after_delete() -> None:
    s = populated()
    do(s, 9, lambda t: s.delete_service(t, "n1", "db"))
    assert ("n1", "db-check") not in s.checks
    idx, pairs = s.service_nodes(None, "db")
    assert pairs == [] and idx == 9
    node(s, 10, "n3")
    assert s.service_nodes(None, "db")[0] == 9
    do(s, 11, lambda t: s.delete_node(t, "n2"))
    assert s.service_nodes(None, "web")[0] == 11
    assert [v.id for _, v in s.service_nodes(None, "web")[1]] == ["web1"]


def test_node_level_check_touches_every_service_on_the_node() -> None:
    s = populated()
    check(s, 9, "n1", "serfHealth", "warning")
    assert s.service_index("web") == 9 and s.service_index("db") == 9


def test_missing_node_or_service_is_refused() -> None:
    s = Store()
    txn = s.write(1)
    with pytest.raises(StateError, match="Missing node registration"):
        s.ensure_service(txn, NodeService(node="x", id="a", service="a"))
    s.ensure_node(txn, Node(node="x", address="1.2.3.4"))
    with pytest.raises(StateError, match="Missing service registration"):
        s.ensure_check(txn, HealthCheck(node="x", check_id="c", service_id="nope"))


def test_abort_restores_services_and_checks() -> None:
    s = populated()
    before = (dict(s.services), dict(s.checks), dict(s.nodes),
              {k: set(v) for k, v in s.checks_by_service.items()})
    txn = s.write(9)
    s.delete_node(txn, "n1")
    svc_new = NodeService(node="n2", id="web2", service="renamed")
    s.ensure_service(txn, svc_new)
    txn.abort()
    assert (dict(s.services), dict(s.checks), dict(s.nodes),
            {k: set(v) for k, v in s.checks_by_service.items()}) == before
    assert s.services_by_name["web"] == {("n1", "web1"), ("n2", "web2")}


def test_deleting_a_check_invalidates_its_sessions() -> None:
    s = populated()
    do(s, 9, lambda t: s.session_create(t, Session(id="s1", node="n1",
                                                   node_checks=("serfHealth", "web-check"))))
    do(s, 10, lambda t: s.delete_service(t, "n1", "web1"))
    assert "s1" not in s.sessions


def test_snapshot_round_trip_keeps_services_and_indexes() -> None:
    s = populated()
    t = Store.load(s.dump())
    assert t.services == s.services and t.checks == s.checks
    assert t.services_by_name == s.services_by_name
    assert t.checks_by_service == s.checks_by_service
    assert t.service_index("web") == s.service_index("web")


def test_watch_of_service_a_is_not_woken_by_service_b() -> None:
    async def run() -> None:
        s = populated()
        ws_web, ws_db = WatchSet(), WatchSet()
        s.service_nodes(ws_web, "web")
        s.health_service_nodes(ws_db, "db")
        svc(s, 9, "n2", "db", "db2")
        assert await ws_db.wait(0.05) is True
        assert await ws_web.wait(0.05) is False
        ws_db = WatchSet()
        s.health_service_nodes(ws_db, "db")
        check(s, 10, "n2", "web-only", "critical", "web2")
        assert await ws_web.wait(0.05) is True
        assert await ws_db.wait(0.05) is False
        ws_web, ws_db = WatchSet(), WatchSet()
        s.service_nodes(ws_web, "web")
        s.service_nodes(ws_db, "db")
        check(s, 11, "n1", "serfHealth", "critical")  # n1 hosts web1 and db
        assert await ws_web.wait(0.05) is True
        assert await ws_db.wait(0.05) is True

    asyncio.run(run())

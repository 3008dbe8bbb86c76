"""Local state flags, output deferral, the registry's reload that keeps unchanged checks, and
anti-entropy against an in-memory catalog: partial pushes, full-sync repair and removal of
entries the agent does not own (but never the server's own)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from proconsul.agent.ae import StateSyncer, scale_factor
from proconsul.agent.checks.base import CheckDefinition, CheckStatusSink
from proconsul.agent.local_state import LocalState, truncate_output
from proconsul.agent.registry import Registry
from proconsul.errors import NotFound, ProconsulError, RPCError
from proconsul.structs.catalog import HealthCheck, NodeService


class FakeCatalog:
    """A catalog of one node, recording every write."""

    def __init__(self) -> None:
        self.services: dict[str, NodeService] = {}
        self.checks: dict[str, HealthCheck] = {}
        self.writes: list[tuple[str, str]] = []

    async def register(self, body: dict[str, Any]) -> None:
        if body.get("Service"):
            svc = NodeService.from_wire({**body["Service"], "Node": body["Node"]})
            self.services[svc.id] = svc
            self.writes.append(("service", svc.id))
        for c in [*body.get("Checks", ()), *([body["Check"]] if body.get("Check") else [])]:
            chk = HealthCheck.from_wire(c)
            self.checks[chk.check_id] = chk
            self.writes.append(("check", chk.check_id))

    async def deregister(self, body: dict[str, Any]) -> None:
        if body.get("ServiceID"):
            self.services.pop(body["ServiceID"], None)
            self.checks = {k: c for k, c in self.checks.items()
                           if c.service_id != body["ServiceID"]}
            self.writes.append(("-service", body["ServiceID"]))
        if body.get("CheckID"):
            self.checks.pop(body["CheckID"], None)
            self.writes.append(("-check", body["CheckID"]))

    async def node_services(self, node: str) -> list[NodeService]:
        return list(self.services.values())

    async def node_checks(self, node: str) -> list[HealthCheck]:
        return list(self.checks.values())


class FakeRunner:
    def __init__(self, defn: CheckDefinition, sink: CheckStatusSink) -> None:
        self.defn, self.sink, self.running = defn, sink, False

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False

    def set_status(self, status: str, output: str) -> str:
        self.sink.update_check(self.defn.check_id, status, output)
        return output


def fake_factory(runners: list[FakeRunner]) -> Any:
    def make(defn: CheckDefinition, sink: CheckStatusSink, *, enable_script_checks: bool
             ) -> FakeRunner:
        runner = FakeRunner(defn, sink)
        runners.append(runner)
        return runner
    return make


def in_loop(fn: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test on a fresh event loop (the suite has no async plugin)."""
    @functools.wraps(fn)
    def run() -> None:
        asyncio.run(fn())
    return run


def node_info() -> dict[str, Any]:
    return {"Node": "n1", "Address": "127.0.0.1", "SkipNodeUpdate": True}


def svc(sid: str, tags: tuple[str, ...] = (), override: bool = False) -> NodeService:
    return NodeService(node="n1", id=sid, service=sid, tags=tags, enable_tag_override=override)


def test_scale_factor() -> None:
    assert [scale_factor(n) for n in (1, 128, 129, 256, 257, 1024, 1025, 8192)] == [
        1, 1, 2, 2, 3, 4, 5, 7]


def test_truncate_output() -> None:
    assert truncate_output("abc", 10) == "abc"
    assert truncate_output("abcdef", 3) == "abc ... (captured 3 of 6 bytes)"


@in_loop
async def test_partial_and_full_sync() -> None:
    state = LocalState("n1", check_update_interval=0)
    cat = FakeCatalog()
    syncer = StateSyncer(state, cat, node_info)
    state.add_service(svc("web"))
    state.add_check(HealthCheck(node="n1", check_id="c1", name="c1", service_id="web"))
    await syncer.sync_changes()
    assert set(cat.services) == {"web"} and cat.checks["c1"].service_name == "web"
    assert not state.pending()

    # nothing out of sync: a partial sync writes nothing
    cat.writes.clear()
    await syncer.sync_changes()
    assert cat.writes == []

    # catalog-side drift and foreign entries are repaired by a full sync only
    cat.services["web"] = svc("web", ("drift",))
    cat.services["intruder"] = svc("intruder")
    cat.services["consul"] = svc("consul")
    cat.checks["serfHealth"] = HealthCheck(node="n1", check_id="serfHealth", status="passing")
    cat.checks["stray"] = HealthCheck(node="n1", check_id="stray")
    await syncer.sync_changes()
    assert "intruder" in cat.services
    await syncer.sync_full()
    assert set(cat.services) == {"web", "consul"}
    assert cat.services["web"].tags == ()
    assert set(cat.checks) == {"c1", "serfHealth"}

    state.remove_service("web")
    assert state.service("web") is None and state.check("c1") is None
    await syncer.sync_changes()
    assert set(cat.services) == {"consul"} and "c1" not in cat.checks
    assert "web" not in state.services and "c1" not in state.checks


@in_loop
async def test_enable_tag_override_adopts_catalog_tags() -> None:
    state = LocalState("n1")
    cat = FakeCatalog()
    syncer = StateSyncer(state, cat, node_info)
    state.add_service(svc("web", ("a",), override=True))
    await syncer.sync_changes()
    cat.services["web"] = svc("web", ("b",), override=True)
    await syncer.sync_full()
    assert state.service("web") == svc("web", ("b",), override=True)
    assert cat.services["web"].tags == ("b",)


@in_loop
async def test_output_only_changes_are_deferred() -> None:
    state = LocalState("n1", check_update_interval=0.05)
    cat = FakeCatalog()
    syncer = StateSyncer(state, cat, node_info)
    state.add_check(HealthCheck(node="n1", check_id="c1", name="c1"))
    await syncer.sync_changes()
    state.update_check("c1", "critical", "new output")
    assert state.check("c1") is not None and state.check("c1").output == "new output"
    await syncer.sync_changes()
    assert cat.checks["c1"].output == ""
    await asyncio.sleep(0.1)
    await syncer.sync_changes()
    assert cat.checks["c1"].output == "new output"
    # a status change goes out at once
    state.update_check("c1", "passing", "new output")
    await syncer.sync_changes()
    assert cat.checks["c1"].status == "passing"


@in_loop
async def test_syncer_loop_pushes_on_change() -> None:
    state = LocalState("n1")
    cat = FakeCatalog()
    syncer = StateSyncer(state, cat, node_info, interval=60.0)
    syncer.start()
    try:
        state.add_service(svc("web"))
        for _ in range(100):
            if "web" in cat.services:
                break
            await asyncio.sleep(0.01)
        assert "web" in cat.services
    finally:
        await syncer.stop()


@in_loop
async def test_registry_reload_keeps_unchanged_checks() -> None:
    runners: list[FakeRunner] = []
    state = LocalState("n1")
    reg = Registry(state, make_runner=fake_factory(runners))
    services = [{"name": "alpha", "checks": [{"id": "a-ttl", "ttl": "1m"}]},
                {"name": "beta", "check": {"ttl": "1m"}}]
    reg.load_config(services, [{"name": "node-ttl", "ttl": "1m"}])
    assert set(state.list_services()) == {"alpha", "beta"}
    assert set(state.list_checks()) == {"a-ttl", "service:beta", "node-ttl"}
    reg.update_ttl("a-ttl", "passing", "ok")
    first = reg.runners["a-ttl"]

    reg.load_config([services[0], {"name": "gamma"}], [])
    assert set(state.list_services()) == {"alpha", "gamma"}
    assert set(state.list_checks()) == {"a-ttl"}
    assert reg.runners["a-ttl"] is first and first.running
    check = state.check("a-ttl")
    assert check is not None and (check.status, check.output) == ("passing", "ok")
    assert not any(r.running for r in runners if r is not first)

    # a bad definition changes nothing
    with pytest.raises(ProconsulError, match=r"services\[1\]: Missing service name"):
        reg.load_config([services[0], {"port": 1}], [])
    assert set(state.list_services()) == {"alpha", "gamma"}

    # API-registered services survive reloads
    reg.add_service(reg.decode_service({"Name": "api"}))
    reg.load_config([], [])
    assert set(state.list_services()) == {"api"}


@in_loop
async def test_registry_errors_and_maintenance() -> None:
    state = LocalState("n1")
    reg = Registry(state)
    with pytest.raises(NotFound):
        reg.remove_service("nope")
    with pytest.raises(NotFound):
        reg.update_ttl("nope", "passing", "")
    reg.enable_node_maintenance("")
    with pytest.raises(RPCError, match='CheckID "_node_maintenance" does not have associated'):
        reg.update_ttl("_node_maintenance", "passing", "")
    reg.add_service(reg.decode_service({"Name": "web"}))
    reg.enable_service_maintenance("web", "why")
    maint = state.check("_service_maintenance:web")
    assert maint is not None and (maint.notes, maint.service_name) == ("why", "web")
    reg.remove_service("web")
    assert state.check("_service_maintenance:web") is None
    reg.disable_node_maintenance()
    assert state.list_checks() == {}


@in_loop
async def test_reap_deregisters_services_critical_too_long() -> None:
    state = LocalState("n1")
    reg = Registry(state)
    reg.add_service(reg.decode_service({
        "Name": "web", "Check": {"TTL": "1m", "DeregisterCriticalServiceAfter": "90s"}}))
    reg.add_service(reg.decode_service({"Name": "db", "Check": {"TTL": "1m"}}))
    cs = state.check_state("service:web")
    assert cs is not None and cs.critical_since is not None
    start = cs.critical_since
    assert reg.reap(start + 60) == []
    reg.update_ttl("service:web", "passing", "")
    assert cs.critical_since is None and reg.reap(start + 1000) == []
    reg.update_ttl("service:web", "critical", "")
    assert cs.critical_since is not None
    assert reg.reap(cs.critical_since + 91) == ["web"]
    assert set(state.list_services()) == {"db"}


def test_script_checks_gated_by_source() -> None:
    from proconsul.agent.registry import SCRIPTS_DISABLED_LOCAL, SCRIPTS_DISABLED_REMOTE
    from proconsul.errors import HTTPError

    script = {"Name": "s", "Args": ["/bin/true"], "Interval": "10s"}
    reg = Registry(LocalState("n1"), enable_local_script_checks=True)
    with pytest.raises(HTTPError) as info:
        reg.add_check(reg.decode_check(script))
    assert (info.value.status, str(info.value)) == (500, SCRIPTS_DISABLED_REMOTE)
    reg.add_check(reg.decode_check(script), local=True)
    assert reg.state.check("s") is not None
    reg = Registry(LocalState("n1"))
    with pytest.raises(ProconsulError, match=r"checks\[0\]: " + SCRIPTS_DISABLED_LOCAL[:30]):
        reg.load_config([], [script])
    reg = Registry(LocalState("n1"), enable_script_checks=True)
    reg.add_check(reg.decode_check(script))
    assert reg.state.check("s") is not None


def test_service_reregistration_keeps_check_status() -> None:
    reg = Registry(LocalState("n1"))
    body = {"Name": "web", "Check": {"TTL": "1m"}}
    reg.add_service(reg.decode_service(body))
    reg.update_ttl("service:web", "passing", "fine")
    reg.add_service(reg.decode_service({**body, "Tags": ["new"]}))
    check = reg.state.check("service:web")
    assert check is not None
    assert (check.status, check.output, check.service_tags) == ("passing", "fine", ("new",))
    # a stand-alone check registration starts from its own initial status
    reg.add_check(reg.decode_check({"Name": "n", "TTL": "1m"}))
    reg.update_ttl("n", "passing", "")
    reg.add_check(reg.decode_check({"Name": "n", "TTL": "1m"}))
    assert reg.state.check("n") is not None and reg.state.check("n").status == "critical"

"""Alias checks: Consul's aggregation and output texts, the local runner reacting to local
state changes through the registry, and the remote runner's blocking loop, error reporting
and missing-service detection."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proconsul.agent.checks import CheckDefinition, UnsupportedCheckTypeError, make_runner
from proconsul.agent.checks.alias import AliasCheck, aggregate
from proconsul.agent.local_state import LocalState
from proconsul.agent.registry import Registry
from proconsul.errors import BadRequest
from proconsul.structs.catalog import HealthCheck, NodeService


class Recorder:
    def __init__(self) -> None:
        self.results: list[tuple[str, str, str]] = []

    def update_check(self, check_id: str, status: str, output: str) -> None:
        self.results.append((check_id, status, output))


def chk(cid: str, status: str, service_id: str = "", output: str = "",
        node: str = "n1") -> HealthCheck:
    return HealthCheck(node=node, check_id=cid, name=f"name-{cid}", status=status,
                       output=output, service_id=service_id)


def yes() -> bool:
    return True


def no() -> bool:
    return False


def test_aggregate_outputs() -> None:
    assert aggregate([], "db", "", yes) == ("passing", "No checks found.")
    assert aggregate([], "db", "", no) == (
        "critical", "Service db could not be found on node ")
    assert aggregate([], "db", "n2", no) == (
        "critical", "Service db could not be found on node n2")
    assert aggregate([chk("a", "passing", "db")], "db", "", no) == (
        "passing", "All checks passing.")
    warned = [chk("a", "passing", "db"), chk("b", "warning", "db", "slow"),
              chk("c", "passing", "db")]
    assert aggregate(warned, "db", "", no) == ("warning", 'Aliased check "name-b" failing: slow')
    crit = [chk("a", "warning", "db", "w"), chk("b", "critical", "db", "down"),
            chk("c", "warning", "db", "w2")]
    assert aggregate(crit, "db", "", no) == ("critical", 'Aliased check "name-b" failing: down')


def test_aggregate_includes_node_checks_and_skips_others() -> None:
    checks = [chk("serfHealth", "critical", output="agent dead"),
              chk("svc", "passing", "db"), chk("other", "critical", "web")]
    assert aggregate(checks, "db", "", yes) == (
        "critical", 'Aliased check "name-serfHealth" failing: agent dead')
    # a remote alias ignores checks of other nodes
    remote = [chk("n", "critical", node="n1"), chk("svc", "passing", "db", node="n2")]
    assert aggregate(remote, "db", "n2", no) == ("passing", "All checks passing.")
    # node checks alone do not prove the service exists
    assert aggregate([chk("n", "passing")], "db", "", no)[0] == "critical"
    assert aggregate([chk("n", "passing")], "db", "", yes) == ("passing", "All checks passing.")


def test_factory_needs_the_source_it_reads() -> None:
    rec = Recorder()
    state = LocalState("n1")
    with pytest.raises(UnsupportedCheckTypeError):
        make_runner(CheckDefinition("a", "a", alias_service="db"), rec,
                    enable_script_checks=True)
    with pytest.raises(UnsupportedCheckTypeError):
        make_runner(CheckDefinition("a", "a", alias_service="db", alias_node="n2"), rec,
                    enable_script_checks=True, local_checks=state)
    runner = make_runner(CheckDefinition("a", "a", alias_service="db"), rec,
                         enable_script_checks=True, local_checks=state)
    assert isinstance(runner, AliasCheck) and runner.sink is rec


def alias_body(**extra: Any) -> dict[str, Any]:
    return {"ID": "alias", "Name": "alias", "ServiceID": "web", "AliasService": "db", **extra}


def test_local_alias_follows_local_state() -> None:
    async def main() -> None:
        from proconsul.agent.checks.factory import make_runner as factory

        state = LocalState("n1", check_update_interval=0)
        reg = Registry(state, make_runner=factory)
        reg.add_service(reg.decode_service({"ID": "db", "Name": "db",
                                            "Check": {"TTL": "30s"}}))
        reg.add_service(reg.decode_service({"ID": "web", "Name": "web"}))
        reg.add_check(reg.decode_check(alias_body()))

        async def settled() -> tuple[str, str]:
            for _ in range(5):
                await asyncio.sleep(0)
            got = state.check("alias")
            assert got is not None
            return got.status, got.output

        assert await settled() == ("critical", 'Aliased check "Service \'db\' check" failing: ')
        reg.update_ttl("service:db", "passing", "ok")
        assert await settled() == ("passing", "All checks passing.")
        reg.update_ttl("service:db", "warning", "meh")
        assert await settled() == ("warning", 'Aliased check "Service \'db\' check" failing: meh')
        # a failing node-level check fails the alias too
        reg.add_check(reg.decode_check({"ID": "disk", "Name": "disk", "TTL": "30s"}))
        assert await settled() == ("critical", 'Aliased check "disk" failing: ')
        reg.remove_check("disk")
        reg.update_ttl("service:db", "passing", "ok")
        assert await settled() == ("passing", "All checks passing.")
        reg.remove_check("service:db")
        assert await settled() == ("passing", "No checks found.")
        reg.remove_service("db")
        assert await settled() == ("critical", "Service db could not be found on node ")
        reg.add_service(reg.decode_service({"ID": "db", "Name": "db"}))
        assert await settled() == ("passing", "No checks found.")
        reg.stop_all()

    asyncio.run(main())


def test_node_level_alias_ignores_itself() -> None:
    async def main() -> None:
        from proconsul.agent.checks.factory import make_runner as factory

        state = LocalState("n1", check_update_interval=0)
        reg = Registry(state, make_runner=factory)
        state.add_service(NodeService(node="n1", id="db", service="db"))
        reg.add_check(reg.decode_check({"ID": "alias", "Name": "alias", "AliasService": "db"}))
        for _ in range(5):
            await asyncio.sleep(0)
        got = state.check("alias")
        assert got is not None and (got.status, got.output) == ("passing", "No checks found.")
        reg.stop_all()

    asyncio.run(main())


def test_registry_refuses_remote_alias_without_catalog() -> None:
    from proconsul.agent.checks.factory import make_runner as factory

    reg = Registry(LocalState("n1"), make_runner=factory)
    with pytest.raises(BadRequest, match=r"^Invalid check: "):
        reg.add_check(reg.decode_check({"Name": "a", "AliasService": "db",
                                        "AliasNode": "n2"}))


class FakeRemote:
    """Answers each blocking read from a script of results (or exceptions)."""

    def __init__(self, answers: list[Any], services: set[str] | Exception) -> None:
        self.answers = answers
        self.services = services
        self.indexes: list[int] = []
        self.done = asyncio.Event()

    async def node_checks(self, node: str, min_index: int,
                          wait: float) -> tuple[int, list[HealthCheck]]:
        self.indexes.append(min_index)
        if not self.answers:
            self.done.set()
            await asyncio.sleep(3600)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, tuple)
        return answer

    async def node_service_ids(self, node: str) -> set[str]:
        if isinstance(self.services, Exception):
            raise self.services
        return self.services


def run_remote(answers: list[Any], services: set[str] | Exception,
               monkeypatch: pytest.MonkeyPatch) -> tuple[Recorder, FakeRemote]:
    async def no_sleep(_: float) -> None:
        await asyncio.sleep(0)

    async def main() -> tuple[Recorder, FakeRemote]:
        rec = Recorder()
        remote = FakeRemote(answers, services)
        defn = CheckDefinition("a", "a", alias_service="db", alias_node="n2")
        runner = AliasCheck(defn, rec, remote=remote)
        monkeypatch.setattr("proconsul.agent.checks.alias.retry_sleep", no_sleep)
        runner.start()
        await asyncio.wait_for(remote.done.wait(), 5)
        runner.stop()
        return rec, remote

    return asyncio.run(main())


def test_remote_alias_blocks_on_index(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [
        (0, [chk("s", "passing", "db", node="n2")]),
        (7, [chk("s", "critical", "db", "down", node="n2")]),
        (9, [chk("serf", "passing", node="n2")]),
    ]
    rec, remote = run_remote(answers, set(), monkeypatch)
    assert remote.indexes == [0, 1, 7, 9]
    assert [r[1:] for r in rec.results] == [
        ("passing", "All checks passing."),
        ("critical", 'Aliased check "name-s" failing: down'),
        ("critical", "Service db could not be found on node n2"),
    ]


def test_remote_alias_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[Any] = [RuntimeError("no leader"), RuntimeError("still none"),
                          (3, [chk("serf", "passing", node="n2")])]
    # a lookup that keeps failing cannot prove the service missing
    rec, _ = run_remote(answers, RuntimeError("down"), monkeypatch)
    assert [r[1:] for r in rec.results] == [
        ("critical", "Failure checking aliased node or service: still none"),
        ("passing", "All checks passing."),
    ]

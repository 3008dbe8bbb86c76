"""Client agents: a server and two clients, real processes on 127.0.0.1, joined by
`-retry-join` on the LAN pool. Clients hold no state: every HTTP and DNS answer comes from the
server over the RPC port, anti-entropy registers their services there, and the leader's
reconciliation puts the client nodes in the catalog with a serfHealth check that follows
gossip."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import consul
import dns.resolver
import pytest

from tests.serf_support import wait_for
from tests.support import AgentProcess, run_cli


def client(agent: AgentProcess) -> consul.Consul:
    return consul.Consul(host="127.0.0.1", port=agent.http_port)


@pytest.fixture
def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    started: list[AgentProcess] = []
    try:
        server = AgentProcess(tmp_path, [
            "-server", "-bootstrap-expect=1", f"-data-dir={tmp_path / 'srv'}",
            "-bind=127.0.0.1", "-node=srv"], dev=False).start()
        started.append(server)
        join = f"-retry-join=127.0.0.1:{server.serf_lan_port}"
        for name, dns_on in (("c1", False), ("c2", True)):
            started.append(AgentProcess(tmp_path, [
                f"-data-dir={tmp_path / name}", "-bind=127.0.0.1", f"-node={name}", join,
                "-retry-interval=1s"], dev=False, dns=dns_on).start(timeout=40))
        yield started
    finally:
        for agent in started:
            agent.stop()


def test_clients_forward_everything_to_the_server(cluster: list[AgentProcess]) -> None:
    server, c1, c2 = cluster
    # the leader is known through every agent
    for agent in cluster:
        assert client(agent).status.leader() == f"127.0.0.1:{server.server_port}"

    # a write through one client is read through the other client and the server
    assert client(c1).kv.put("app/config", "v1") is True
    for agent in cluster:
        _, entry = client(agent).kv.get("app/config")
        assert entry is not None and entry["Value"] == b"v1"

    # a blocking read on c2 is released by a write through c1
    index, _ = client(c2).kv.get("app/config")
    got: list[bytes] = []

    def block() -> None:
        _, e = client(c2).kv.get("app/config", index=index, wait="20s")
        got.append(e["Value"])

    waiter = threading.Thread(target=block)
    waiter.start()
    assert client(c1).kv.put("app/config", "v2")
    waiter.join(30)
    assert got == [b"v2"]

    # the clients are catalog nodes with a passing serfHealth, from the leader's reconcile
    def nodes() -> set[str]:
        return {n["Node"] for n in client(server).catalog.nodes()[1]}

    wait_for(lambda: {"srv", "c1", "c2"} <= nodes(), 30, "clients in the catalog")
    _, checks = client(c2).health.node("c1")
    assert [c["Status"] for c in checks if c["CheckID"] == "serfHealth"] == ["passing"]

    # a service registered on c1 reaches the catalog by anti-entropy over RPC
    client(c1).agent.service.register("web", service_id="web1", port=8080, tags=["v1"])
    wait_for(lambda: client(c2).health.service("web")[1], 30, "web in the catalog")
    _, entries = client(server).health.service("web")
    assert [(e["Node"]["Node"], e["Service"]["Port"]) for e in entries] == [("c1", 8080)]

    # DNS on a client answers from the server's catalog
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    assert c2.dns_port is not None
    resolver.port = c2.dns_port
    answer = resolver.resolve("web.service.consul", "A")
    assert [r.address for r in answer] == ["127.0.0.1"]

    # sessions and the CLI work through a client
    sid = client(c1).session.create(name="lock", node="c1")
    assert client(c2).kv.put("locks/a", "held", acquire=sid) is True
    # c1 learns of c2 by gossip (both joined through the server), so it may take a moment
    wait_for(lambda: all(name in run_cli(["members"], c1.http_addr).stdout.decode()
                         for name in ("srv", "c1", "c2")), 30, "c1 lists every member")
    stats = client(c1).agent.self()["Stats"]["consul"]
    assert stats["server"] == "false" and stats["known_servers"] == "1"

    # a client killed with SIGKILL: failed in gossip, critical in the catalog, and its
    # session (tied to serfHealth) is invalidated, releasing the lock
    c1.stop(signal.SIGKILL)

    def c1_health() -> str:
        _, checks = client(server).health.node("c1")
        return next(c["Status"] for c in checks if c["CheckID"] == "serfHealth")

    wait_for(lambda: c1_health() == "critical", 40, "c1 critical")
    wait_for(lambda: client(c2).session.info(sid)[1] is None, 30, "session invalidated")
    _, entry = client(c2).kv.get("locks/a")
    assert entry is not None and "Session" not in entry

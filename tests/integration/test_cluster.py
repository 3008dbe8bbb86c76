"""A replicated cluster of real processes on 127.0.0.1: three servers with bootstrap_expect=3
and two clients, formed by -retry-join on the LAN pool. Writes through either client are read
everywhere; SIGKILL of the leader elects another and the clients keep working after a bounded
wait; the killed server restarts from its data directory and catches up."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import consul
import pytest

from tests.serf_support import wait_for
from tests.support import AgentProcess, free_dual_port, free_port


def client(agent: AgentProcess) -> consul.Consul:
    return consul.Consul(host="127.0.0.1", port=agent.http_port)


def leader_of(agent: AgentProcess) -> str:
    try:
        return str(client(agent).status.leader() or "")
    except Exception:
        return ""


class Cluster:
    def __init__(self, tmp: Path, servers: int, clients: int, hcl: str = "") -> None:
        self.tmp = tmp
        self.hcl = hcl
        self.ports = [(free_dual_port(), free_port()) for _ in range(servers)]
        self.join = [f"-retry-join=127.0.0.1:{lan}" for lan, _ in self.ports]
        self.expect = servers
        self.servers: list[AgentProcess] = [self.server(i) for i in range(servers)]
        self.clients: list[AgentProcess] = [
            AgentProcess(tmp, [f"-data-dir={tmp / f'c{i}'}", "-bind=127.0.0.1", f"-node=c{i}",
                             *self.join[:1], "-retry-interval=1s"], dev=False)
            for i in range(clients)]

    def server(self, i: int) -> AgentProcess:
        lan, rpc = self.ports[i]
        return AgentProcess(self.tmp, [
            "-server", f"-bootstrap-expect={self.expect}", f"-data-dir={self.tmp / f's{i}'}",
            "-bind=127.0.0.1", f"-node=s{i}", f"-serf-lan-port={lan}", f"-server-port={rpc}",
            *[j for k, j in enumerate(self.join) if k != i], "-retry-interval=1s",
            "-hcl", "performance { raft_multiplier = 1 }",
            *(["-hcl", self.hcl] if self.hcl else [])], dev=False)

    def fresh_server(self, index: int) -> AgentProcess:
        """Server `index` again, on its own gossip and RPC ports. Its new HTTP and WAN ports
        are picked while it is down, so they must not be the ones it is about to listen on
        (the OS may hand them out again) nor any other agent's."""
        taken = {port for lan, rpc in self.ports for port in (lan, rpc)}
        for agent in [*self.servers, *self.clients]:
            taken |= {agent.http_port, agent.serf_lan_port, agent.serf_wan_port,
                      agent.server_port}
        for _ in range(50):
            again = self.server(index)
            if again.http_port not in taken and again.serf_wan_port not in taken:
                return again
        raise OSError("no free ports apart from the cluster's")

    def start(self) -> None:
        for agent in self.servers:
            # a server is ready for the harness once its HTTP answers; the leader comes later
            agent.start(timeout=60, require_leader=False)
        for agent in self.clients:
            agent.start(timeout=60)

    def stop(self) -> None:
        for agent in [*self.clients, *self.servers]:
            agent.stop()


@pytest.fixture
def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = Cluster(tmp_path, 3, 2)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def test_three_servers_two_clients_survive_leader_kill(cluster: Cluster) -> None:
    servers, (c0, c1) = cluster.servers, cluster.clients
    leader = wait_for(lambda: leader_of(servers[0]), 60, "a leader")
    assert all(wait_for(lambda a=a: leader_of(a) == leader, 30, "same leader") for a in servers)
    peers = client(servers[1]).status.peers()
    assert sorted(peers) == sorted(f"127.0.0.1:{rpc}" for _, rpc in cluster.ports)
    # a client asks a server (which forwards to the leader) on every call
    raft = wait_for(lambda: (r := client(c0).operator.raft_config()) and
                    [s["Address"] for s in r["Servers"] if s["Leader"]] == [leader] and
                    {s["Node"] for s in r["Servers"]} == {"s0", "s1", "s2"} and r,
                    30, "raft configuration through a client")
    assert sorted(s["Address"] for s in raft["Servers"]) == sorted(peers)
    assert all(s["Voter"] for s in raft["Servers"])

    # writes through either client are read through every agent
    assert client(c0).kv.put("k/one", "1") is True
    assert client(c1).kv.put("k/two", "2") is True
    for agent in [*servers, c0, c1]:
        assert client(agent).kv.get("k/one")[1]["Value"] == b"1"
        assert client(agent).kv.get("k/two")[1]["Value"] == b"2"
    # a stale read on a follower sees the write too once replicated
    follower = next(a for a in servers if f"127.0.0.1:{a.server_port}" != leader)
    wait_for(lambda: client(follower).kv.get("k/two", consistency="stale")[1], 30, "stale")

    # SIGKILL the leader: another is elected and the clients keep working
    victim = next(a for a in servers if f"127.0.0.1:{a.server_port}" == leader)
    victim.stop(signal.SIGKILL)
    rest = [a for a in servers if a is not victim]
    new_leader = wait_for(lambda: (ld := leader_of(rest[0])) and ld != leader and ld, 60,
                          "a new leader")
    deadline = time.monotonic() + 60
    while True:
        try:
            assert client(c0).kv.put("k/after", "3") is True
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert client(c1).kv.get("k/after")[1]["Value"] == b"3"
    assert client(c1).kv.get("k/one", consistency="consistent")[1]["Value"] == b"1"

    # the killed server restarts from its data directory and catches up
    index = cluster.servers.index(victim)
    again = cluster.fresh_server(index)
    cluster.servers[index] = again
    again.start(timeout=60, require_leader=False)
    wait_for(lambda: leader_of(again) == new_leader, 60, "restarted server follows")
    wait_for(lambda: (e := client(again).kv.get("k/after", consistency="stale")[1])
             and e["Value"] == b"3", 60, "restarted server caught up")


def test_five_servers_tolerate_two_down_and_refuse_writes_with_three(tmp_path: Path) -> None:
    # autopilot would remove the two dead voters and let three-of-five survive a third loss:
    # this test is about the bare quorum, so dead servers stay in the configuration
    c = Cluster(tmp_path, 5, 0, hcl="autopilot { cleanup_dead_servers = false }")
    try:
        c.start()
        servers = c.servers
        leader = wait_for(lambda: leader_of(servers[0]), 60, "a leader")
        assert client(servers[0]).kv.put("five/a", "1") is True
        # two servers down (the leader among them): the other three elect and keep writing
        victims = [a for a in servers if f"127.0.0.1:{a.server_port}" == leader]
        victims += [a for a in servers if a not in victims][:2 - len(victims)]
        for v in victims:
            v.stop(signal.SIGKILL)
        rest = [a for a in servers if a not in victims]
        wait_for(lambda: (ld := leader_of(rest[0])) and ld != leader, 60, "new leader")
        wait_for(lambda: _put(rest[1], "five/b", "2"), 60, "write with two down")
        assert client(rest[2]).kv.get("five/b")[1]["Value"] == b"2"

        # a third one down: no quorum. Writes fail with Consul's error within the hold time
        rest[0].stop(signal.SIGKILL)
        alive = rest[1:]
        # (a write in flight when the leader loses its quorum may instead fail with Raft's
        # "leadership lost while committing log"; the ones after it find no leader)
        errors: list[str] = []
        started = time.monotonic()
        while time.monotonic() - started < 60 and not any(
                "No cluster leader" in e for e in errors):
            try:
                client(alive[0]).kv.put("five/c", "3")
            except consul.base.ConsulException as exc:
                errors.append(str(exc))
            time.sleep(0.5)
        assert any("No cluster leader" in e for e in errors), errors
        # the refusal is an answer, not a hang: py-consul's own 30 s timeout would raise a
        # different exception (the servers hold a call for rpc_hold_timeout, 7 s)
        with pytest.raises(consul.base.ConsulException):
            client(alive[1]).kv.put("five/d", "4")
        # stale reads keep working without a leader
        assert client(alive[1]).kv.get("five/b", consistency="stale")[1]["Value"] == b"2"
    finally:
        c.stop()


def _put(agent: AgentProcess, key: str, value: str) -> bool:
    try:
        return bool(client(agent).kv.put(key, value))
    except Exception:
        return False

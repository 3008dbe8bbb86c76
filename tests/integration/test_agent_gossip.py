"""Our agent process in a LAN pool with real `serf` 0.9.4 agents on 127.0.0.1.

Both directions: serf agents join ours and ours joins theirs (`-retry-join`, `/v1/agent/join`,
`consul join`); `serf members` lists our node with Consul's tags and `/v1/agent/members` (and
`consul members`) list theirs. A serf agent tagged as a Consul client of our datacenter is
reconciled into the catalog with a `serfHealth` check that follows gossip: passing while alive,
critical after SIGKILL, deregistered after `force-leave`. Graceful leaves are `left` both ways,
also with gossip encryption on both sides. Every wait is bounded; processes are stopped by PID.
"""

from __future__ import annotations

import base64
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import consul
import pytest

from tests.serf_support import SerfProcess, start_serf, wait_for
from tests.support import AgentProcess, free_dual_port, free_port, run_cli

pytestmark = pytest.mark.skipif(shutil.which("serf") is None, reason="serf not installed")

KEY = base64.b64encode(bytes(range(100, 132))).decode()
KEY2 = base64.b64encode(bytes(range(150, 182))).decode()


def client(agent: AgentProcess) -> consul.Consul:
    return consul.Consul(host="127.0.0.1", port=agent.http_port)


def member_status(agent: AgentProcess, name: str) -> int | None:
    for m in client(agent).agent.members():
        if m["Name"] == name:
            return int(m["Status"])
    return None


def serf_health(agent: AgentProcess, node: str) -> dict[str, Any] | None:
    _, checks = client(agent).health.node(node)
    for check in checks:
        if check["CheckID"] == "serfHealth":
            return dict(check)
    return None


@pytest.fixture
def serfs(tmp_path: Path) -> Iterator[list[SerfProcess]]:
    started: list[SerfProcess] = []
    yield started
    for s in started:
        s.stop()


def test_serf_agents_join_our_agent(tmp_path: Path, serfs: list[SerfProcess]) -> None:
    agent = AgentProcess(tmp_path, ["-node=ours"]).start()
    try:
        lan = f"127.0.0.1:{agent.serf_lan_port}"
        node_id = str(uuid.uuid4())
        # s1 claims to be a Consul client of dc1, so the leader puts it in the catalog;
        # s2 and s3 are plain serf agents, members of the pool but not catalog nodes
        serfs.append(start_serf("s1", tmp_path, {"role": "node", "dc": "dc1", "id": node_id}))
        serfs.append(start_serf("s2", tmp_path, {"role": "serf"}))
        serfs.append(start_serf("s3", tmp_path, {"role": "serf"}))
        serfs[0].cli("join", lan)
        for s in serfs[1:]:
            s.cli("join", serfs[0].addr)

        # every side sees every member alive
        wait_for(lambda: all(member_status(agent, s.name) == 1 for s in serfs), 30,
                 "ours sees s1..s3 alive")
        for s in serfs:
            wait_for(lambda s=s: s.status_of("ours") == "alive", 30, f"{s.name} sees ours")
        ours = serfs[2].members()["ours"]
        assert ours["tags"]["role"] == "consul" and ours["tags"]["dc"] == "dc1"
        assert ours["tags"]["port"] and ours["tags"]["vsn"] == "2"

        # a serf query reaches our agent, which acks it (Consul agents answer only their own
        # internal queries, so an application query gets an ack and no response)
        acked = serfs[1].cli("query", "-timeout=5s", "uptime")
        assert "Ack from 'ours'" in acked, acked

        table = run_cli(["members"], agent.http_addr)
        assert table.returncode == 0, table.stderr
        lines = table.stdout.decode().splitlines()
        assert lines[0].split()[:4] == ["Node", "Address", "Status", "Type"]
        rows = {line.split()[0]: line.split() for line in lines[1:]}
        assert rows["ours"][2:4] == ["alive", "server"]
        assert rows["s1"][2:4] == ["alive", "client"]
        assert rows["s2"][2:4] == ["alive", "unknown"]
        assert lines[1].split()[0] == "ours"  # servers sort first

        # the Consul-tagged serf agent is a catalog node with a passing serfHealth
        check = wait_for(lambda: serf_health(agent, "s1"), 30, "s1 in the catalog")
        assert check["Status"] == "passing" and check["Output"] == "Agent alive and reachable"
        _, nodes = client(agent).catalog.nodes()
        by_name = {n["Node"]: n for n in nodes}
        assert by_name["s1"]["ID"] == node_id and by_name["s1"]["Address"] == "127.0.0.1"
        assert "s2" not in by_name and "s3" not in by_name

        # SIGKILL: failed in gossip, serfHealth critical in the catalog
        serfs[0].stop(signal.SIGKILL)
        wait_for(lambda: member_status(agent, "s1") == 4, 40, "ours marks s1 failed")
        check = wait_for(lambda: (c := serf_health(agent, "s1")) and
                         c["Status"] == "critical" and c, 30, "serfHealth critical")
        assert check["Output"] == "Agent not live or unreachable"

        # force-leave through the CLI: left in gossip, gone from the catalog
        done = run_cli(["force-leave", "s1"], agent.http_addr)
        assert done.returncode == 0 and done.stdout == b"", done.stderr
        wait_for(lambda: member_status(agent, "s1") == 3, 30, "s1 left after force-leave")
        wait_for(lambda: "s1" not in {n["Node"] for n in client(agent).catalog.nodes()[1]},
                 30, "s1 deregistered")
        missing = run_cli(["force-leave", "nope"], agent.http_addr)
        assert missing.returncode == 1
        assert b"agent: No node found with name 'nope'" in missing.stderr

        # a graceful leave of a serf agent is `left` for ours
        serfs[2].cli("leave")
        wait_for(lambda: member_status(agent, "s3") == 3, 30, "s3 left")

        # ours joins a lone serf agent through the API and the CLI's join
        serfs.append(start_serf("s4", tmp_path, {"role": "serf"}))
        assert client(agent).agent.join(serfs[3].addr) is True
        wait_for(lambda: serfs[3].status_of("ours") == "alive", 30, "s4 sees ours")
        serfs.append(start_serf("s5", tmp_path, {"role": "serf"}))
        joined = run_cli(["join", serfs[4].addr], agent.http_addr)
        assert joined.stdout == b"Successfully joined cluster by contacting 1 nodes.\n"
        bad = run_cli(["join", "127.0.0.1:1"], agent.http_addr)
        assert bad.returncode == 1
        assert b"Error joining address '127.0.0.1:1'" in bad.stderr
        assert b"Failed to join any nodes." in bad.stderr
    finally:
        agent.stop()


def test_our_agent_retry_joins_encrypted_pool_and_leaves(tmp_path: Path,
                                                         serfs: list[SerfProcess]) -> None:
    serfs.append(start_serf("e1", tmp_path, {"role": "serf"}, encrypt=KEY))
    serfs.append(start_serf("e2", tmp_path, {"role": "serf"}, encrypt=KEY))
    serfs[1].cli("join", serfs[0].addr)
    # the hostname is resolved by the agent before joining
    agent = AgentProcess(tmp_path, [
        "-node=enc", f"-encrypt={KEY}", f"-retry-join=localhost:{serfs[0].gossip}",
        "-retry-interval=1s",
    ]).start()
    try:
        wait_for(lambda: all(member_status(agent, s.name) == 1 for s in serfs), 30,
                 "ours joined the encrypted pool")
        wait_for(lambda: serfs[1].status_of("enc") == "alive", 30, "e2 sees ours")
        stats = client(agent).agent.self()["Stats"]["serf_lan"]
        assert stats["encrypted"] == "true" and stats["members"] == "3"
        # a serf agent without the key cannot join
        plain = start_serf("plain", tmp_path, {"role": "serf"})
        serfs.append(plain)
        out = plain.cli("join", f"127.0.0.1:{agent.serf_lan_port}", check=False)
        assert "Error joining" in out
        assert member_status(agent, "plain") is None

        # a key rotation driven through our agent reaches the serf agents
        for args in (["-install", KEY2], ["-use", KEY2], ["-remove", KEY]):
            done = run_cli(["keyring", *args], agent.http_addr)
            assert done.returncode == 0, done.stdout + done.stderr
        listing = run_cli(["keyring", "-list"], agent.http_addr).stdout.decode()
        lan_block = listing.split("dc1 (LAN):", 1)[1]
        assert f"  {KEY2} [3/3]" in lan_block and KEY not in lan_block, listing
        for s in serfs[:2]:
            assert KEY2 in s.cli("keys", "-list") and KEY not in s.cli("keys", "-list")
        wait_for(lambda: serfs[1].status_of("enc") == "alive", 10, "still alive after rotation")

        left = run_cli(["leave"], agent.http_addr)
        assert left.stdout == b"Graceful leave complete\n", left.stderr
        for s in serfs[:2]:
            wait_for(lambda s=s: s.status_of("enc") == "left", 30, f"{s.name} sees left")
        assert agent.proc is not None
        assert agent.proc.wait(20) == 0
    finally:
        agent.stop()


def test_sigterm_leaves_only_with_leave_on_terminate(tmp_path: Path,
                                                     serfs: list[SerfProcess]) -> None:
    serfs.append(start_serf("t1", tmp_path, {"role": "serf"}))
    quiet = AgentProcess(tmp_path, ["-node=quiet", f"-join={serfs[0].addr}"])
    polite = AgentProcess(tmp_path, ["-node=polite", f"-join={serfs[0].addr}",
                                     "-hcl", "leave_on_terminate = true"])
    try:
        quiet.start(timeout=60)
        polite.start(timeout=60)
        for name in ("quiet", "polite"):
            wait_for(lambda n=name: serfs[0].status_of(n) == "alive", 30, f"{name} joined")
        # a server's default is to stop without leaving: its peers see it fail
        assert quiet.stop(signal.SIGTERM) == 0
        assert polite.stop(signal.SIGTERM) == 0
        wait_for(lambda: serfs[0].status_of("polite") == "left", 30, "polite left")
        wait_for(lambda: serfs[0].status_of("quiet") == "failed", 40, "quiet failed")
    finally:
        quiet.stop()
        polite.stop()


def test_user_events_cross_both_ways(tmp_path: Path, serfs: list[SerfProcess]) -> None:
    import msgpack

    seen = tmp_path / "seen.txt"
    serfs.append(start_serf("ev1", tmp_path, {"role": "serf"}, extra=[
        "-event-handler", f'user=echo "$SERF_USER_EVENT $(cat)" >> {seen}']))
    agent = AgentProcess(tmp_path, ["-node=evs", f"-join={serfs[0].addr}"]).start()
    try:
        wait_for(lambda: member_status(agent, "ev1") == 1, 30, "joined")
        # ours -> serf: the event travels as consul:event:<name> with Consul's payload
        event = client(agent).event.fire("deploy", body="v2")
        assert event["Name"] == "deploy" and event["Version"] == 1
        text = wait_for(lambda: seen.exists() and seen.read_bytes(), 30, "serf got the event")
        assert b"consul:event:deploy" in text and event["ID"].encode() in text

        # serf -> ours: a Consul-encoded payload fired by the serf CLI is listed by ours
        event_id = str(uuid.uuid4())
        raw = msgpack.packb({"ID": event_id, "n": "restart", "p": b"now", "v": 1})
        assert b"\0" not in raw
        done = subprocess.run([b"serf", b"event", f"-rpc-addr=127.0.0.1:{serfs[0].rpc}".encode(),
                               b"consul:event:restart", raw], capture_output=True, timeout=20)
        assert done.returncode == 0, done.stderr

        def listed() -> list[dict[str, Any]]:
            _, events = client(agent).event.list(name="restart")
            return [e for e in events if e["ID"] == event_id]

        got = wait_for(listed, 30, "ours listed the serf event")[0]
        assert got["Payload"] in (b"now", "now")  # py-consul decodes the base64
        # our own event is in our list too, and the CLI fires events
        _, mine = client(agent).event.list(name="deploy")
        assert [e["ID"] for e in mine] == [event["ID"]]
        fired = run_cli(["event", "-name=cli-fired", "hello"], agent.http_addr)
        assert fired.returncode == 0 and fired.stdout.startswith(b"Event ID: "), fired.stderr
        wait_for(lambda: b"consul:event:cli-fired" in seen.read_bytes(), 30, "serf got cli event")
    finally:
        agent.stop()


def test_restart_rejoins_from_snapshot_and_refuses_other_datacenters(
        tmp_path: Path, serfs: list[SerfProcess]) -> None:
    serfs.append(start_serf("r1", tmp_path, {"role": "serf"}))
    data = tmp_path / "data"
    lan, wan = free_dual_port(), free_dual_port()
    args = ["-server", "-bootstrap-expect=1", f"-data-dir={data}", "-bind=127.0.0.1",
            f"-server-port={free_port()}", f"-serf-lan-port={lan}", f"-serf-wan-port={wan}",
            "-node=snap"]
    first = AgentProcess(tmp_path, [*args, f"-join={serfs[0].addr}"], dev=False).start()
    try:
        wait_for(lambda: serfs[0].status_of("snap") == "alive", 30, "snap joined")
        assert (data / "serf" / "local.snapshot").exists()
        first.stop(signal.SIGKILL)
        wait_for(lambda: serfs[0].status_of("snap") == "failed", 40, "snap failed")
    finally:
        first.stop()
    # no -join this time: the member snapshot names r1, and the agent rejoins through it
    second = AgentProcess(tmp_path, args, dev=False).start()
    try:
        wait_for(lambda: member_status(second, "r1") == 1, 30, "rejoined r1 from snapshot")
        wait_for(lambda: serfs[0].status_of("snap") == "alive", 30, "r1 sees snap again")
        # a node of another datacenter is refused by the merge rules
        other = start_serf("dc2node", tmp_path, {"role": "node", "dc": "dc2"})
        serfs.append(other)
        # the push/pull answers before it merges (as memberlist's does), so serf's join
        # reports success; ours refuses the merge and every alive message after it
        other.cli("join", f"127.0.0.1:{lan}", check=False)
        wait_for(lambda: "part of wrong datacenter 'dc2'" in second.read_log(), 30,
                 "merge refused")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert member_status(second, "dc2node") is None
            time.sleep(0.5)
    finally:
        second.stop()


def test_coordinates_and_near_sorting(tmp_path: Path, serfs: list[SerfProcess]) -> None:
    serfs.append(start_serf("c1", tmp_path, {"role": "node", "dc": "dc1"}))
    agent = AgentProcess(tmp_path, ["-node=coord", f"-join={serfs[0].addr}",
                                    "-hcl", 'sync_coordinate_interval_min = "500ms"']).start()
    try:
        c = client(agent)
        # serf's acks carry Vivaldi coordinates; ours pushes its own to the catalog
        entries = wait_for(lambda: c.coordinate.nodes()[1], 40, "coordinate stored")
        mine = next(e for e in entries if e["Node"] == "coord")
        assert len(mine["Coord"]["Vec"]) == 8 and mine["Coord"]["Error"] > 0
        dcs = c.coordinate.datacenters()
        assert dcs[0]["Datacenter"] == "dc1"
        assert dcs[0]["Coordinates"][0]["Node"] == "coord"  # ".dc1" stripped, as Consul
        wait_for(lambda: serf_health(agent, "c1"), 30, "c1 in the catalog")
        _, nodes = c.catalog.nodes(near="_agent")
        # the agent's own node is nearest to itself; c1 (no stored coordinate) goes last
        assert [n["Node"] for n in nodes] == ["coord", "c1"]
        rtt = run_cli(["rtt", "coord"], agent.http_addr)
        assert rtt.returncode == 0, rtt.stderr
        assert rtt.stdout.startswith(b"Estimated coord <-> coord rtt: ")
        assert rtt.stdout.endswith(b" ms (using LAN coordinates)\n")
    finally:
        agent.stop()

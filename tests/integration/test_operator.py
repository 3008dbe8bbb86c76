"""Operator commands and autopilot with real processes: a -dev agent for the API's answers and
errors, and a 3-server cluster with a client agent where a fourth server joins as a non-voter
and is promoted, leadership is transferred from the CLI, a SIGKILLed server is removed by
autopilot's dead-server cleanup, and a peer is removed by hand."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cluster import Cluster, client, leader_of
from tests.serf_support import wait_for
from tests.support import AgentProcess, free_dual_port, free_port, run_cli


def http(agent: AgentProcess, method: str, path: str, body: bytes | None = None
         ) -> tuple[int, Any]:
    req = urllib.request.Request(agent.url + path, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw.strip() else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode().strip()


def cli(agent: AgentProcess, *args: str) -> tuple[int, str, str]:
    done = run_cli(list(args), agent.http_addr)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


@pytest.fixture
def dev(tmp_path: Path):  # type: ignore[no-untyped-def]
    agent = AgentProcess(tmp_path).start()
    try:
        yield agent
    finally:
        agent.stop()


def test_dev_agent_operator_api_and_cli(dev: AgentProcess) -> None:
    status, conf = http(dev, "GET", "/v1/operator/autopilot/configuration")
    assert status == 200
    assert conf["CleanupDeadServers"] is True and conf["LastContactThreshold"] == "200ms"
    assert conf["ServerStabilizationTime"] == "10s" and conf["MaxTrailingLogs"] == 250

    status, health = wait_for(
        lambda: (r := http(dev, "GET", "/v1/operator/autopilot/health"))[0] == 200 and r,
        30, "autopilot health")
    assert health["Healthy"] is True and health["FailureTolerance"] == 0
    (me,) = health["Servers"]
    assert me["Leader"] and me["Voter"] and me["SerfStatus"] == "alive"
    _, metrics = http(dev, "GET", "/v1/agent/metrics")
    gauges = {g["Name"]: g["Value"] for g in metrics["Gauges"]}
    assert gauges["consul.autopilot.healthy"] == 1
    assert gauges["consul.autopilot.failure_tolerance"] == 0

    code, text, _ = cli(dev, "operator", "raft", "list-peers")
    assert code == 0
    header, row = text.splitlines()
    assert header.split() == ["Node", "ID", "Address", "State", "Voter", "RaftProtocol",
                              "Commit", "Index", "Trails", "Leader", "By"]
    assert row.split()[3:6] == ["leader", "true", "3"] and row.split()[-1] == "_"

    # set-config merges flags into the current record with a check-and-set
    code, text, _ = cli(dev, "operator", "autopilot", "set-config",
                        "-cleanup-dead-servers=false", "-min-quorum", "3",
                        "-last-contact-threshold=350ms")
    assert (code, text.strip()) == (0, "Configuration updated!")
    code, text, _ = cli(dev, "operator", "autopilot", "get-config")
    assert code == 0 and text.splitlines() == [
        "CleanupDeadServers = false", "LastContactThreshold = 350ms", "MaxTrailingLogs = 250",
        "MinQuorum = 3", "ServerStabilizationTime = 10s", 'RedundancyZoneTag = ""',
        "DisableUpgradeMigration = false", 'UpgradeVersionTag = ""']
    _, conf2 = http(dev, "GET", "/v1/operator/autopilot/configuration")
    assert conf2["ModifyIndex"] > conf["ModifyIndex"]
    # a stale CAS is refused; a PUT without cas always writes
    body = json.dumps({"MinQuorum": 1}).encode()
    assert http(dev, "PUT", f"/v1/operator/autopilot/configuration?cas={conf['ModifyIndex']}",
                body) == (200, False)
    assert http(dev, "PUT", "/v1/operator/autopilot/configuration", body) == (200, True)
    assert http(dev, "GET", "/v1/operator/autopilot/configuration")[1]["MinQuorum"] == 1

    code, text, _ = cli(dev, "operator", "autopilot", "state")
    assert code == 0 and "Healthy:                      true" in text
    assert "      Status:          leader" in text
    code, text, _ = cli(dev, "operator", "autopilot", "state", "-format=json")
    assert code == 0 and json.loads(text)["Leader"] == me["ID"]

    # errors: Consul's texts and codes
    assert http(dev, "DELETE", "/v1/operator/raft/peer") == (
        400, "Must specify either ?id with the server's ID or ?address with IP:port of peer "
             "to remove")
    assert http(dev, "DELETE", "/v1/operator/raft/peer?id=a&address=b") == (
        400, "Must specify only one of ?id or ?address")
    assert http(dev, "DELETE", "/v1/operator/raft/peer?address=10.0.0.1:8300") == (
        500, 'address "10.0.0.1:8300" was not found in the Raft configuration')
    assert http(dev, "PUT", "/v1/operator/autopilot/configuration",
                b'{"CleanupDeadServers": "yes"}') == (
        400, "Error parsing autopilot config: json: cannot unmarshal string into Go struct "
             "field AutopilotConfiguration.CleanupDeadServers of type bool")
    assert http(dev, "POST", "/v1/operator/raft/transfer-leader") == (500, "cannot find peer")
    code, _, errtext = cli(dev, "operator", "raft", "transfer-leader")
    assert code == 1 and "cannot find peer" in errtext
    code, _, errtext = cli(dev, "operator", "raft", "remove-peer", "-id=nope")
    assert code == 1 and 'id "nope" was not found in the Raft configuration' in errtext
    code, _, errtext = cli(dev, "operator", "raft", "remove-peer")
    assert code == 1 and "an address or id is required for the peer to remove" in errtext


def _raft(agent: AgentProcess) -> dict[str, dict[str, Any]]:
    try:
        conf = client(agent).operator.raft_config()
    except Exception:
        return {}
    return {s["Node"]: s for s in conf["Servers"]}


def test_cluster_autopilot_promotes_transfers_and_cleans_up(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3, 1)
    extra: AgentProcess | None = None
    try:
        c.start()
        s0, cl = c.servers[0], c.clients[0]
        wait_for(lambda: leader_of(s0), 60, "a leader")
        wait_for(lambda: (h := http(cl, "GET", "/v1/operator/autopilot/health"))[0] == 200
                 and len(h[1]["Servers"]) == 3 and h, 60, "a healthy 3-server cluster")
        # a long stabilization time keeps a newcomer a non-voter long enough to see it
        code, text, _ = cli(cl, "operator", "autopilot", "set-config",
                            "-server-stabilization-time=60s")
        assert code == 0, text

        lan, rpc = free_dual_port(), free_port()
        extra = AgentProcess(tmp_path, [
            "-server", f"-data-dir={tmp_path / 's3'}", "-bind=127.0.0.1", "-node=s3",
            f"-serf-lan-port={lan}", f"-server-port={rpc}", *c.join, "-retry-interval=1s",
            "-hcl", "performance { raft_multiplier = 1 }"], dev=False)
        extra.start(timeout=60, require_leader=False)
        s3 = wait_for(lambda: _raft(cl).get("s3"), 60, "s3 in the Raft configuration")
        assert s3["Voter"] is False
        state = wait_for(lambda: (r := http(cl, "GET", "/v1/operator/autopilot/state")[1])
                         and isinstance(r, dict) and s3["ID"] in r.get("Servers", {}) and r,
                         30, "s3 in the autopilot state")
        assert state["Servers"][s3["ID"]]["Status"] == "non-voter"
        assert s3["ID"] not in state["Voters"] and len(state["Voters"]) == 3
        code, text, _ = cli(cl, "operator", "autopilot", "set-config",
                            "-server-stabilization-time=1s")
        assert code == 0, text
        wait_for(lambda: _raft(cl).get("s3", {}).get("Voter"), 60, "s3 promoted to voter")

        # leadership moves where the CLI says
        code, text, _ = cli(cl, "operator", "raft", "transfer-leader", f"-id={s3['ID']}")
        assert (code, text.strip()) == (0, "Success")
        wait_for(lambda: leader_of(cl) == f"127.0.0.1:{extra.server_port}", 30, "s3 leads")
        code, text, _ = cli(cl, "operator", "raft", "list-peers")
        assert code == 0
        rows = {line.split()[0]: line.split() for line in text.splitlines()[1:]}
        assert rows["s3"][3] == "leader" and sorted(rows) == ["s0", "s1", "s2", "s3"]

        # a SIGKILLed server is failed by gossip and removed by autopilot's cleanup
        victim = c.servers[2]
        victim.stop(signal.SIGKILL)
        wait_for(lambda: "s2" not in _raft(cl) and len(_raft(cl)) == 3, 90,
                 "autopilot removes the failed server")

        # with cleanup off, a dead server stays until an operator removes it by address
        code, text, _ = cli(cl, "operator", "autopilot", "set-config",
                            "-cleanup-dead-servers=false")
        assert code == 0, text
        victim = c.servers[1]
        address = f"127.0.0.1:{victim.server_port}"
        victim.stop(signal.SIGKILL)
        wait_for(lambda: (h := http(cl, "GET", "/v1/operator/autopilot/health"))[0] == 429
                 and h, 60, "health reports the dead server")
        assert "s1" in _raft(cl)
        code, text, _ = cli(cl, "operator", "raft", "remove-peer", f"-address={address}")
        assert (code, text.strip()) == (0, f'Removed peer with address "{address}"')
        assert "s1" not in _raft(cl) and client(cl).kv.put("after/removal", "1") is True
    finally:
        if extra is not None:
            extra.stop()
        c.stop()

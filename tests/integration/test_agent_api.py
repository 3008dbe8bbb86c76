"""Agent endpoints (self, members, reload, leave, metrics) and request-body conventions."""

from __future__ import annotations

import json
import time
from pathlib import Path

import consul
import pytest

from tests.integration.test_http_errors import request
from tests.support import AgentProcess


@pytest.fixture(scope="module")
def cfg_agent(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    workdir: Path = tmp_path_factory.mktemp("cfg")
    conf = workdir / "agent.hcl"
    conf.write_text('node_meta { rack = "r1" }\n'
                    'telemetry { prometheus_retention_time = "60s" }\n'
                    'log_level = "info"\n')
    proc = AgentProcess(workdir, [f"-config-file={conf}"])
    proc.start()
    proc.conf = conf  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        proc.stop()


def test_self_members_and_raft_configuration(cfg_agent: AgentProcess) -> None:
    c = consul.Consul(port=cfg_agent.http_port)
    me = c.agent.self()
    assert me["Config"]["NodeName"] == "test-node"
    assert me["Config"]["Server"] is True
    assert me["Meta"] == {"rack": "r1"}
    assert me["Stats"]["consul"]["leader"] == "true"
    members = c.agent.members()
    assert [m["Name"] for m in members] == ["test-node"]
    assert members[0]["Status"] == 1 and members[0]["Tags"]["role"] == "consul"
    status, _, body = request(cfg_agent, "GET", "/v1/operator/raft/configuration")
    cfg = json.loads(body)
    assert status == 200 and cfg["Servers"][0]["Leader"] is True
    assert cfg["Servers"][0]["Node"] == "test-node"


def test_prometheus_metrics_when_retention_is_set(cfg_agent: AgentProcess) -> None:
    c = consul.Consul(port=cfg_agent.http_port)
    c.kv.put("m", "1")
    status, headers, body = request(cfg_agent, "GET", "/v1/agent/metrics?format=prometheus")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert b"# TYPE consul_runtime_num_goroutines gauge" in body


def test_reload_applies_new_files_and_rejects_bad_ones(cfg_agent: AgentProcess) -> None:
    conf: Path = cfg_agent.conf  # type: ignore[attr-defined]
    conf.write_text('log_level = "debug"\n')
    status, _, _ = request(cfg_agent, "PUT", "/v1/agent/reload")
    assert status == 200
    conf.write_text('log_level = "debug"\nno_such_key = 1\n')
    status, _, body = request(cfg_agent, "PUT", "/v1/agent/reload")
    assert status == 500 and b"no_such_key" in body
    assert request(cfg_agent, "GET", "/v1/status/leader")[0] == 200


def test_body_keys_in_any_case_and_go_durations(cfg_agent: AgentProcess) -> None:
    for body in (b'{"Name": "a", "LockDelay": "0.001s", "TTL": "15s"}',
                 b'{"name": "a", "lockDelay": "0.001s", "ttl": "15s"}',
                 b'{"name": "a", "lock_delay": "0.001s", "ttl": "15s"}'):
        status, _, out = request(cfg_agent, "PUT", "/v1/session/create", body)
        assert status == 200, out
        sid = json.loads(out)["ID"]
        _, _, info = request(cfg_agent, "GET", f"/v1/session/info/{sid}")
        sess = json.loads(info)[0]
        assert sess["LockDelay"] == 1_000_000 and sess["TTL"] == "15s" and sess["Name"] == "a"
    # a bare number below 1000 is taken as seconds, as Consul's decoder does
    status, _, out = request(cfg_agent, "PUT", "/v1/session/create", b'{"LockDelay": 20}')
    sid = json.loads(out)["ID"]
    sess = json.loads(request(cfg_agent, "GET", f"/v1/session/info/{sid}")[2])[0]
    assert sess["LockDelay"] == 20_000_000_000


def test_leave_stops_the_agent(tmp_path: Path) -> None:
    proc = AgentProcess(tmp_path).start()
    try:
        status, _, _ = request(proc, "PUT", "/v1/agent/leave")
        assert status == 200
        assert proc.proc is not None
        proc.proc.wait(15)
        assert proc.proc.returncode == 0
    finally:
        proc.stop()


def test_sigterm_stops_the_agent_cleanly(tmp_path: Path) -> None:
    proc = AgentProcess(tmp_path).start()
    started = time.monotonic()
    assert proc.stop() == 0
    assert time.monotonic() - started < 10
    assert "shutdown complete" in proc.read_log()


def test_members_filter(cfg_agent: AgentProcess) -> None:
    status, _, body = request(cfg_agent, "GET",
                              "/v1/agent/members?filter=Tags.role%20%3D%3D%20consul")
    assert status == 200 and [m["Name"] for m in json.loads(body)] == ["test-node"]
    status, _, body = request(cfg_agent, "GET",
                              "/v1/agent/members?filter=Tags.role%20%3D%3D%20node")
    assert status == 200 and json.loads(body) == []
    status, _, body = request(cfg_agent, "GET", "/v1/agent/members?filter=Name%20%3D%3D")
    assert status == 500
    assert body.startswith(b"Failed to create boolean expression evaluator: ")

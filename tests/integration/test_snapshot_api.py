"""/v1/snapshot: a saved archive restores the KV store and sessions byte for byte, a bad archive
changes nothing, and a restore survives a restart of a durable server."""

from __future__ import annotations

import json
from pathlib import Path

import consul
import pytest

from proconsul.snapshot.archive import read_archive
from tests.integration.test_crash import server_agent
from tests.integration.test_http_errors import request
from tests.support import AgentProcess, free_port


def save(agent: AgentProcess) -> tuple[int, bytes, bytes]:
    status, headers, body = request(agent, "GET", "/v1/snapshot")
    assert status == 200 and headers["content-type"] == "application/x-gzip"
    _, state = read_archive(body)
    return int(headers["x-consul-index"]), body, state


def fill(c: consul.Consul) -> None:
    for i in range(50):
        c.kv.put(f"snap/{i:03d}", bytes([i, 0, 255]) * 10, flags=i)
    sid = c.session.create(name="holder", lock_delay=0)
    c.kv.put("snap/locked", "x", acquire=sid)
    c.session.create(name="other", behavior="delete", ttl=60)
    c.kv.delete("snap/010")


def test_save_restore_round_trip_is_byte_for_byte(agent: AgentProcess) -> None:
    c = consul.Consul(port=agent.http_port)
    fill(c)
    index, archive, state = save(agent)
    assert index >= 1
    # change everything the snapshot holds
    c.kv.delete("snap/", recurse=True)
    c.kv.put("after", "1")
    for s in c.session.list()[1]:
        c.session.destroy(s["ID"])
    status, _, body = request(agent, "PUT", "/v1/snapshot", archive)
    assert status == 200, body
    _, _, state_after = save(agent)
    assert state_after == state
    assert c.kv.get("after")[1] is None
    assert c.kv.get("snap/001")[1]["Value"] == bytes([1, 0, 255]) * 10
    assert {s["Name"] for s in c.session.list()[1]} == {"holder", "other"}
    assert c.kv.get("snap/locked")[1]["Session"]


def test_bad_archive_is_rejected_and_changes_nothing(agent: AgentProcess) -> None:
    c = consul.Consul(port=agent.http_port)
    c.kv.put("keep", "me")
    _, archive, state = save(agent)
    for bad in (archive[:-10], archive[:100] + b"\x00" + archive[101:], b"not an archive"):
        status, _, body = request(agent, "PUT", "/v1/snapshot", bad)
        assert status == 500 and body.startswith(b"Error restoring snapshot: "), body
    assert save(agent)[2] == state
    assert c.kv.get("keep")[1]["Value"] == b"me"


@pytest.mark.slow
def test_restore_survives_restart(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    agent = server_agent(tmp_path, data_dir, port).start(timeout=60)
    try:
        c = consul.Consul(port=agent.http_port)
        c.kv.put("a", "before")
        _, archive, _ = save(agent)
        c.kv.put("a", "after")
        c.kv.put("b", "only-after")
        assert request(agent, "PUT", "/v1/snapshot", archive)[0] == 200
        c.kv.put("c", "written-after-restore")
    finally:
        agent.stop()
    agent = server_agent(tmp_path, data_dir, port).start(timeout=60)
    try:
        c = consul.Consul(port=agent.http_port)
        assert c.kv.get("a")[1]["Value"] == b"before"
        assert c.kv.get("b")[1] is None
        assert c.kv.get("c")[1]["Value"] == b"written-after-restore"
        stats = json.loads(request(agent, "GET", "/v1/agent/self")[2])["Stats"]["raft"]
        assert int(stats["last_snapshot_index"]) >= 1
    finally:
        agent.stop()

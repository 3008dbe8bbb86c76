"""KV, sessions, txn and status through the py-consul client against a real -dev agent."""

from __future__ import annotations

import base64
import threading
import time

import consul
import pytest

from tests.support import AgentProcess


@pytest.fixture(scope="module")
def c(agent: AgentProcess) -> consul.Consul:
    return consul.Consul(host="127.0.0.1", port=agent.http_port)


def test_put_get_flags_and_indexes(c: consul.Consul) -> None:
    assert c.kv.put("kv/a", "hello", flags=42) is True
    index, item = c.kv.get("kv/a")
    assert item["Value"] == b"hello" and item["Flags"] == 42
    assert item["CreateIndex"] == item["ModifyIndex"] == int(index)
    assert c.kv.put("kv/a", "again") is True
    index2, item = c.kv.get("kv/a")
    assert int(index2) > int(index) and item["Flags"] == 0
    assert item["CreateIndex"] == int(index)


def test_missing_key_is_none_with_index(c: consul.Consul) -> None:
    index, item = c.kv.get("kv/does-not-exist")
    assert item is None and int(index) >= 1


def test_cas(c: consul.Consul) -> None:
    assert c.kv.put("kv/cas", "1", cas=0) is True
    assert c.kv.put("kv/cas", "2", cas=0) is False
    _, item = c.kv.get("kv/cas")
    assert c.kv.put("kv/cas", "3", cas=item["ModifyIndex"] + 1000) is False
    assert c.kv.put("kv/cas", "3", cas=item["ModifyIndex"]) is True
    _, item = c.kv.get("kv/cas")
    assert item["Value"] == b"3"
    assert c.kv.delete("kv/cas", cas=item["ModifyIndex"] + 1) is False
    assert c.kv.delete("kv/cas", cas=item["ModifyIndex"]) is True
    assert c.kv.get("kv/cas")[1] is None


def test_recurse_keys_separator_and_delete_tree(c: consul.Consul) -> None:
    for k in ("tree/a", "tree/b/c", "tree/b/d", "tree/e/f/g", "treehouse"):
        c.kv.put(k, k)
    _, items = c.kv.get("tree/", recurse=True)
    assert [i["Key"] for i in items] == ["tree/a", "tree/b/c", "tree/b/d", "tree/e/f/g"]
    _, keys = c.kv.get("tree/", keys=True, separator="/")
    assert keys == ["tree/a", "tree/b/", "tree/e/"]
    _, keys = c.kv.get("tree", keys=True)
    assert keys == ["tree/a", "tree/b/c", "tree/b/d", "tree/e/f/g", "treehouse"]
    assert c.kv.delete("tree/", recurse=True) is True
    assert c.kv.get("tree/", recurse=True)[1] is None
    assert c.kv.get("treehouse")[1]["Value"] == b"treehouse"


def test_blocking_get_returns_on_change(c: consul.Consul) -> None:
    c.kv.put("kv/block", "v1")
    index, _ = c.kv.get("kv/block")
    result: dict[str, object] = {}

    def wait() -> None:
        started = time.monotonic()
        result["index"], result["item"] = c.kv.get("kv/block", index=index, wait="20s")
        result["took"] = time.monotonic() - started

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.3)
    assert t.is_alive()
    c.kv.put("kv/block", "v2")
    t.join(10)
    assert not t.is_alive()
    assert result["item"]["Value"] == b"v2"  # type: ignore[index]
    assert int(result["index"]) > int(index)  # type: ignore[call-overload]
    assert result["took"] < 10  # type: ignore[operator]


def test_blocking_get_times_out_with_same_index(c: consul.Consul) -> None:
    c.kv.put("kv/quiet", "v")
    index, _ = c.kv.get("kv/quiet")
    index2, item = c.kv.get("kv/quiet", index=index, wait="200ms")
    assert index2 == index and item["Value"] == b"v"


def test_sessions_lifecycle(c: consul.Consul) -> None:
    sid = c.session.create(name="s1", ttl=10, lock_delay=0)
    _, info = c.session.info(sid)
    assert info["Name"] == "s1" and info["TTL"] == "10s" and info["Behavior"] == "release"
    assert info["NodeChecks"] == ["serfHealth"] and info["LockDelay"] == 0
    _, listed = c.session.list()
    assert sid in [s["ID"] for s in listed]
    node = info["Node"]
    _, on_node = c.session.node(node)
    assert sid in [s["ID"] for s in on_node]
    renewed = c.session.renew(sid)
    assert renewed["ID"] == sid
    assert c.session.destroy(sid) is True
    assert c.session.info(sid)[1] is None
    with pytest.raises(consul.NotFound, match="not found"):
        c.session.renew(sid)


def test_acquire_release_and_lock_index(c: consul.Consul) -> None:
    s1 = c.session.create(lock_delay=0)
    s2 = c.session.create(lock_delay=0)
    assert c.kv.put("lock/a", "x", acquire=s1) is True
    assert c.kv.put("lock/a", "y", acquire=s2) is False
    _, item = c.kv.get("lock/a")
    assert item["Session"] == s1 and item["LockIndex"] == 1
    assert c.kv.put("lock/a", "z", release=s2) is False
    assert c.kv.put("lock/a", "z", release=s1) is True
    _, item = c.kv.get("lock/a")
    assert "Session" not in item and item["Value"] == b"z"
    assert c.kv.put("lock/a", "w", acquire=s2) is True
    assert c.kv.get("lock/a")[1]["LockIndex"] == 2
    c.session.destroy(s1)
    c.session.destroy(s2)
    assert "Session" not in c.kv.get("lock/a")[1]


def test_delete_behavior_removes_held_keys(c: consul.Consul) -> None:
    sid = c.session.create(behavior="delete", lock_delay=0)
    assert c.kv.put("eph/key", "x", acquire=sid)
    c.session.destroy(sid)
    assert c.kv.get("eph/key")[1] is None


def test_txn_commit_and_rollback(c: consul.Consul) -> None:
    b64 = base64.b64encode
    ok = c.txn.put([
        {"KV": {"Verb": "set", "Key": "txn/a", "Value": b64(b"1").decode()}},
        {"KV": {"Verb": "set", "Key": "txn/b", "Value": b64(b"2").decode(), "Flags": 7}},
        {"KV": {"Verb": "get", "Key": "txn/a"}},
    ])
    assert ok["Errors"] is None
    assert [r["KV"]["Key"] for r in ok["Results"]] == ["txn/a", "txn/b", "txn/a"]
    assert ok["Results"][0]["KV"]["Value"] is None
    assert base64.b64decode(ok["Results"][2]["KV"]["Value"]) == b"1"
    with pytest.raises(consul.ConsulException) as err:
        c.txn.put([
            {"KV": {"Verb": "set", "Key": "txn/c", "Value": b64(b"3").decode()}},
            {"KV": {"Verb": "cas", "Key": "txn/a", "Value": "", "Index": 1}},
        ])
    assert "index is stale" in str(err.value)
    assert c.kv.get("txn/c")[1] is None
    read = c.txn.put([{"KV": {"Verb": "get-tree", "Key": "txn/"}}])
    assert [r["KV"]["Key"] for r in read["Results"]] == ["txn/a", "txn/b"]
    assert read["KnownLeader"] is True


def test_status(c: consul.Consul, agent: AgentProcess) -> None:
    leader = c.status.leader()
    assert leader == f"127.0.0.1:{agent.server_port}"
    assert c.status.peers() == [leader]

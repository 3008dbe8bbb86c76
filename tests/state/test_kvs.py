"""KV table semantics: indexes, CAS, locks, tombstones, and rollback."""

from __future__ import annotations

import pytest

from proconsul.errors import StateError
from proconsul.state import Store
from proconsul.structs.kvs import KVEntry
from proconsul.structs.session import Session


def put(store: Store, idx: int, key: str, value: bytes = b"v", **kw: object) -> KVEntry:
    txn = store.write(idx)
    entry = store.kvs_set(txn, KVEntry(key=key, value=value, **kw))  # type: ignore[arg-type]
    txn.commit()
    return entry


def test_set_keeps_create_index_and_bumps_modify_index() -> None:
    s = Store()
    put(s, 3, "a")
    e = put(s, 5, "a", b"w")
    assert (e.create_index, e.modify_index) == (3, 5)
    assert s.kvs_get(None, "a") == (5, e)


def test_identical_write_is_a_no_op() -> None:
    s = Store()
    put(s, 3, "a", b"x", flags=7)
    e = put(s, 9, "a", b"x", flags=7)
    assert e.modify_index == 3
    assert s.max_index("kvs") == 3


def test_missing_key_answers_table_index() -> None:
    s = Store()
    put(s, 4, "a")
    assert s.kvs_get(None, "nope") == (4, None)


def test_cas() -> None:
    s = Store()
    txn = s.write(2)
    assert s.kvs_set_cas(txn, KVEntry("k", b"1"), 0) is not None
    txn.commit()
    txn = s.write(3)
    assert s.kvs_set_cas(txn, KVEntry("k", b"2"), 0) is None
    assert s.kvs_set_cas(txn, KVEntry("k", b"2"), 99) is None
    assert s.kvs_set_cas(txn, KVEntry("k", b"2"), 2) is not None
    txn.commit()
    assert s.kv["k"].value == b"2"


def test_delete_leaves_tombstone_so_prefix_index_never_goes_back() -> None:
    s = Store()
    put(s, 2, "p/a")
    put(s, 3, "p/b")
    put(s, 4, "other")
    txn = s.write(5)
    s.kvs_delete(txn, "p/b")
    txn.commit()
    idx, entries = s.kvs_list(None, "p/")
    assert [e.key for e in entries] == ["p/a"]
    assert idx == 5
    txn = s.write(6)
    s.kvs_delete(txn, "p/a")
    txn.commit()
    assert s.kvs_list(None, "p/") == (6, [])
    txn = s.write(7)
    assert s.reap_tombstones(txn, 6) == 2
    txn.commit()
    # after the reap the prefix falls back to the table index, still not below 6
    assert s.kvs_list(None, "p/")[0] >= 6


def test_list_keys_with_separator() -> None:
    s = Store()
    for i, k in enumerate(["web/a", "web/sub/x", "web/sub/y", "web/z", "zzz"], start=2):
        put(s, i, k)
    _, keys = s.kvs_list_keys(None, "web/", "/")
    assert keys == ["web/a", "web/sub/", "web/z"]
    _, keys = s.kvs_list_keys(None, "", "")
    assert keys == ["web/a", "web/sub/x", "web/sub/y", "web/z", "zzz"]


def _session(s: Store, idx: int, sid: str, **kw: object) -> None:
    from proconsul.structs.catalog import HealthCheck, Node

    txn = s.write(idx)
    s.ensure_node(txn, Node(node="n1", address="127.0.0.1"))
    s.ensure_check(txn, HealthCheck(node="n1", check_id="serfHealth", status="passing"))
    s.session_create(txn, Session(id=sid, node="n1", **kw))  # type: ignore[arg-type]
    txn.commit()


def test_lock_unlock_and_lock_index() -> None:
    s = Store()
    _session(s, 2, "s1")
    _session_b = Session(id="s2", node="n1")
    txn = s.write(3)
    s.session_create(txn, _session_b)
    txn.commit()
    txn = s.write(4)
    got = s.kvs_lock(txn, KVEntry("lk", b"x", session="s1"))
    txn.commit()
    assert got is not None and got.lock_index == 1 and got.session == "s1"
    txn = s.write(5)
    assert s.kvs_lock(txn, KVEntry("lk", b"y", session="s2")) is None
    assert s.kvs_unlock(txn, KVEntry("lk", b"y", session="s2")) is None
    assert s.kvs_unlock(txn, KVEntry("lk", b"z", session="s1")) is not None
    txn.commit()
    assert s.kv["lk"].session == "" and s.kv["lk"].lock_index == 1
    txn = s.write(6)
    got = s.kvs_lock(txn, KVEntry("lk", b"y", session="s2"))
    txn.commit()
    assert got is not None and got.lock_index == 2


def test_lock_with_unknown_session_is_an_error() -> None:
    s = Store()
    txn = s.write(2)
    with pytest.raises(StateError, match='invalid session "nope"'):
        s.kvs_lock(txn, KVEntry("k", session="nope"))


def test_session_destroy_releases_or_deletes_and_sets_lock_delay() -> None:
    s = Store()
    _session(s, 2, "rel", lock_delay_ns=5_000_000_000)
    txn = s.write(3)
    s.session_create(txn, Session(id="del", node="n1", behavior="delete"))
    s.kvs_lock(txn, KVEntry("a", b"1", session="rel"))
    s.kvs_lock(txn, KVEntry("b", b"2", session="del"))
    txn.commit()
    txn = s.write(4)
    s.session_destroy(txn, "rel")
    s.session_destroy(txn, "del")
    txn.commit()
    assert s.kv["a"].session == "" and s.kv["a"].value == b"1"
    assert "b" not in s.kv
    assert s.kvs_lock_delay("a") > s.now()
    assert s.held_keys("rel") == []


def test_session_needs_node_and_healthy_checks() -> None:
    s = Store()
    txn = s.write(2)
    with pytest.raises(StateError, match="Missing node registration"):
        s.session_create(txn, Session(id="x", node="ghost"))
    _session(s, 3, "ok")
    txn = s.write(4)
    with pytest.raises(StateError, match="Missing check 'nope' registration"):
        s.session_create(txn, Session(id="y", node="n1", node_checks=("nope",)))


def test_critical_check_invalidates_sessions() -> None:
    from proconsul.structs.catalog import HealthCheck

    s = Store()
    _session(s, 2, "s1")
    txn = s.write(3)
    s.kvs_lock(txn, KVEntry("k", b"v", session="s1"))
    txn.commit()
    txn = s.write(4)
    s.ensure_check(txn, HealthCheck(node="n1", check_id="serfHealth", status="critical"))
    txn.commit()
    assert "s1" not in s.sessions
    assert s.kv["k"].session == ""


def test_abort_restores_everything() -> None:
    s = Store()
    put(s, 2, "a", b"1")
    before = (dict(s.kv), list(s.kv_keys), dict(s.tombstones), dict(s.indexes))
    txn = s.write(3)
    s.kvs_set(txn, KVEntry("a", b"2"))
    s.kvs_set(txn, KVEntry("b", b"3"))
    s.kvs_delete(txn, "a")
    txn.abort()
    assert (dict(s.kv), list(s.kv_keys), dict(s.tombstones), dict(s.indexes)) == before


def test_dump_and_load_round_trip() -> None:
    s = Store()
    _session(s, 2, "s1")
    put(s, 3, "a", b"\x00\xff", flags=42)
    txn = s.write(4)
    s.kvs_lock(txn, KVEntry("l", b"", session="s1"))
    s.kvs_delete(txn, "a")
    txn.commit()
    t = Store.load(s.dump())
    assert t.kv == s.kv
    assert t.sessions == s.sessions
    assert dict(t.tombstones) == dict(s.tombstones)
    assert t.indexes == s.indexes
    assert t.held_keys("s1") == ["l"]

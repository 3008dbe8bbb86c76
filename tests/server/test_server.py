"""The server endpoints over the in-memory applier: blocking reads, txn atomicity, session
TTLs, lock-delay, restore."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from proconsul.errors import CommandError, RPCError
from proconsul.server.commands import MessageType, encode
from proconsul.server.fsm import FSM
from proconsul.server.server import Server
from proconsul.structs.kvs import KVEntry
from proconsul.structs.query import QueryOptions
from proconsul.structs.session import Session
from tests.raft.cluster_support import single_voter


def run(fn: Callable[[Server], Awaitable[None]], ttl_min: float = 10.0) -> None:
    async def main() -> None:
        raft = await single_voter(FSM(), "id-1")
        srv = Server(raft, "n1", "id-1", "dc1", "127.0.0.1", session_ttl_min=ttl_min)
        await srv.start()
        try:
            await fn(srv)
        finally:
            await srv.stop()
            await raft.shutdown()

    asyncio.run(main())


def test_blocking_get_wakes_on_its_key() -> None:
    async def body(srv: Server) -> None:
        await srv.kvs.apply("set", KVEntry("k", b"1"))
        meta, e = await srv.kvs.get("k", QueryOptions())
        assert e is not None
        blocked = asyncio.ensure_future(
            srv.kvs.get("k", QueryOptions(min_query_index=meta.index, max_query_time=5))
        )
        other = asyncio.ensure_future(
            srv.kvs.get("other", QueryOptions(min_query_index=srv.store.latest_index() + 5,
                                              max_query_time=5))
        )
        await asyncio.sleep(0.05)
        assert not blocked.done()
        await srv.kvs.apply("set", KVEntry("k", b"2"))
        meta2, e2 = await asyncio.wait_for(blocked, 2)
        assert e2 is not None and e2.value == b"2" and meta2.index > meta.index
        assert not other.done()
        other.cancel()

    run(body)


def test_blocking_get_times_out_with_same_index() -> None:
    async def body(srv: Server) -> None:
        await srv.kvs.apply("set", KVEntry("k", b"1"))
        meta, _ = await srv.kvs.get("k", QueryOptions())
        meta2, _ = await srv.kvs.get(
            "k", QueryOptions(min_query_index=meta.index, max_query_time=0.1)
        )
        assert meta2.index == meta.index

    run(body)


def test_txn_rolls_back_on_any_error() -> None:
    async def body(srv: Server) -> None:
        await srv.kvs.apply("set", KVEntry("a", b"1"))
        results, errors = await srv.txn.apply([
            ("set", KVEntry("b", b"2")),
            ("check-index", KVEntry("a", modify_index=999)),
            ("get", KVEntry("missing")),
        ])
        assert results is None
        assert errors == [
            {"OpIndex": 1, "What": 'failed index check for key "a", current modify index '
             f'{srv.store.kv["a"].modify_index} != 999'},
            {"OpIndex": 2, "What": 'key "missing" doesn\'t exist'},
        ]
        assert "b" not in srv.store.kv
        results, errors = await srv.txn.apply([
            ("set", KVEntry("b", b"2")), ("get", KVEntry("b")),
        ])
        assert errors is None and results is not None
        assert results[0]["KV"].value is None and results[1]["KV"].value == b"2"

    run(body)


def test_session_ttl_expires_after_twice_the_ttl() -> None:
    async def body(srv: Server) -> None:
        sid = await srv.session.create(Session(id="", node="n1", ttl="0.1s", lock_delay_ns=0))
        assert await srv.kvs.apply("lock", KVEntry("l", b"x", session=sid))
        await asyncio.sleep(0.12)
        assert sid in srv.store.sessions  # still within the 2x grace
        await asyncio.sleep(0.2)
        assert sid not in srv.store.sessions
        assert srv.store.kv["l"].session == ""

    run(body, ttl_min=0.05)


def test_session_ttl_bounds_and_behavior_errors() -> None:
    async def body(srv: Server) -> None:
        with pytest.raises(RPCError, match=r"Invalid Session TTL '1000000000', must be between "
                           r"\[10s=24h0m0s\]"):
            await srv.session.create(Session(id="", node="n1", ttl="1s"))
        with pytest.raises(RPCError, match="Invalid Behavior setting 'bogus'"):
            await srv.session.create(Session(id="", node="n1", behavior="bogus"))
        with pytest.raises(RPCError, match="Missing node registration"):
            await srv.session.create(Session(id="", node="ghost"))

    run(body)


def test_lock_delay_blocks_reacquire() -> None:
    async def body(srv: Server) -> None:
        sid = await srv.session.create(Session(id="", node="n1", lock_delay_ns=300_000_000))
        assert await srv.kvs.apply("lock", KVEntry("l", b"", session=sid))
        await srv.session.destroy(sid)
        sid2 = await srv.session.create(Session(id="", node="n1"))
        assert not await srv.kvs.apply("lock", KVEntry("l", b"", session=sid2))
        await asyncio.sleep(0.35)
        assert await srv.kvs.apply("lock", KVEntry("l", b"", session=sid2))

    run(body)


def test_restore_wakes_blocked_queries_and_swaps_store() -> None:
    async def body(srv: Server) -> None:
        await srv.kvs.apply("set", KVEntry("k", b"old"))
        snap = srv.applier.fsm.snapshot()
        await srv.kvs.apply("set", KVEntry("k", b"new"))
        meta, _ = await srv.kvs.get("k", QueryOptions())
        blocked = asyncio.ensure_future(
            srv.kvs.get("k", QueryOptions(min_query_index=meta.index - 1, max_query_time=5))
        )
        waiting = asyncio.ensure_future(
            srv.kvs.get("zzz", QueryOptions(min_query_index=meta.index + 100,
                                            max_query_time=0.5))
        )
        await asyncio.sleep(0.02)
        srv.applier.fsm.restore(snap)
        _, e = await blocked
        assert e is not None
        assert srv.store.kv["k"].value == b"old"
        await waiting

    run(body)


def test_unknown_command_type_is_an_error() -> None:
    fsm = FSM()
    with pytest.raises(CommandError, match="unknown message type 42"):
        fsm.apply(2, bytes([42]) + b"\x80")
    assert fsm.apply(3, bytes([0x80 | 42]) + b"\x80") is None
    assert fsm.apply(4, encode(MessageType.KVS, {"Op": "set", "DirEnt": {"Key": "x"}})) is True

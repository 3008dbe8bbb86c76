"""Server selection and retries: Consul's tag rules for servers, rotation on failure, rebalance,
which failures may be retried, and the client and leader-forwarding loops against real
servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest

from proconsul.errors import NoLeader
from proconsul.rpc.errors import (
    CallFailed,
    ConnectFailed,
    NoServers,
    RemoteError,
    RPCTimeout,
)
from proconsul.rpc.pool import ConnPool
from proconsul.rpc.router import (
    ClientRPC,
    LeaderForwarder,
    ServerInfo,
    ServerManager,
    can_retry,
    server_from_tags,
)
from proconsul.rpc.server import RPCServer
from tests.support import free_port

DEADLINE = 15.0

TAGS = {"role": "consul", "dc": "dc1", "port": "8300", "vsn": "2", "raft_vsn": "3",
        "build": "1.17.0:abcdef", "id": "0b5e2b1a-0000-0000-0000-000000000001",
        "expect": "3", "wan_join_port": "8302"}


def run(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        async with asyncio.timeout(90):
            await coro()

    asyncio.run(main())


def info(name: str, addr: str) -> ServerInfo:
    return ServerInfo(name=name, id=name, datacenter="dc1", addr=addr,
                      port=int(addr.rsplit(":", 1)[1]))


# -- tags and selection ------------------------------------------------------------------------


def test_server_from_tags_follows_is_consul_server() -> None:
    s = server_from_tags("node1.dc1", "10.0.0.5", TAGS)
    assert s is not None
    assert (s.addr, s.port, s.datacenter, s.short_name) == ("10.0.0.5:8300", 8300, "dc1",
                                                            "node1")
    assert (s.version, s.raft_version, s.expect, s.build) == (2, 3, 3, "1.17.0")
    assert not s.bootstrap and not s.read_replica and not s.use_tls
    assert str(s) == "node1.dc1 (Addr: tcp/10.0.0.5:8300) (DC: dc1)"
    v6 = server_from_tags("n", "::1", {**TAGS, "bootstrap": "1", "nonvoter": "1"})
    assert v6 is not None and v6.addr == "[::1]:8300" and v6.bootstrap and v6.read_replica
    assert server_from_tags("c", "10.0.0.6", {**TAGS, "role": "node"}) is None
    for broken in ({"port": "x"}, {"vsn": ""}, {"expect": "three"}, {"build": "dev"}):
        assert server_from_tags("n", "10.0.0.7", {**TAGS, **broken}) is None


def test_failed_server_rotates_only_from_the_front() -> None:
    m = ServerManager()
    a, b, c = info("a", "10.0.0.1:8300"), info("b", "10.0.0.2:8300"), info("c", "10.0.0.3:8300")
    assert m.find_server() is None and m.is_offline
    for s in (a, b, c):
        m.add_server(s)
    assert m.find_server() is a and not m.is_offline
    m.notify_failed_server(b)  # not the front one: nothing moves
    assert [s.name for s in m.servers()] == ["a", "b", "c"]
    m.notify_failed_server(a)
    assert [s.name for s in m.servers()] == ["b", "c", "a"]
    updated = info("c", "10.0.0.9:8300")
    m.add_server(updated)
    assert [s.addr for s in m.servers()] == ["10.0.0.2:8300", "10.0.0.9:8300", "10.0.0.1:8300"]
    m.remove_server("b")
    assert m.find_server() is updated and m.num_servers() == 2


def test_rebalance_keeps_a_server_that_answers_in_front() -> None:
    class Pinger:
        def __init__(self, healthy: set[str]) -> None:
            self.healthy = healthy
            self.pinged: list[str] = []

        async def ping(self, addr: str, timeout: float | None = None) -> bool:
            self.pinged.append(addr)
            return addr in self.healthy

    async def body() -> None:
        pinger = Pinger({"10.0.0.3:8300"})
        m = ServerManager(pinger)
        for i in range(1, 6):
            m.add_server(info(f"s{i}", f"10.0.0.{i}:8300"))
        for _ in range(10):
            await m.rebalance()
            front = m.find_server()
            assert front is not None and front.addr == "10.0.0.3:8300"
            assert sorted(s.name for s in m.servers()) == ["s1", "s2", "s3", "s4", "s5"]
        assert not m.is_offline
        pinger.healthy.clear()
        await m.rebalance()
        assert m.is_offline
        assert m.rebalance_interval(10) >= 120.0
        assert m.rebalance_interval(5 * 64 * 1000) >= 1000.0

    run(body)


def test_which_failures_may_be_retried() -> None:
    start = 100.0
    within, past = 103.0, 108.0
    cases: list[tuple[BaseException, bool, bool]] = [
        (NoLeader(), False, True),
        (RemoteError("rpc error: No cluster leader"), False, True),
        (RemoteError("please resubmit call for rechunking"), False, True),
        (ConnectFailed("rpc error getting client: ..."), False, True),
        (CallFailed("rpc error making call: EOF"), False, False),
        (CallFailed("rpc error making call: EOF"), True, True),
        (RPCTimeout("rpc error making call: i/o deadline reached"), True, False),
        (RemoteError("Permission denied"), True, False),
    ]
    for err, is_read, expected in cases:
        assert can_retry(err, start, 7.0, is_read=is_read, now=within) is expected, err
        assert can_retry(err, start, 7.0, is_read=is_read, now=past) is False, err


# -- against real servers ----------------------------------------------------------------------


class Backend:
    """One server: counts calls, answers "No cluster leader" until told there is one."""

    def __init__(self, name: str, leader: bool = True) -> None:
        self.name = name
        self.has_leader = leader
        self.calls = 0
        self.hanging = asyncio.Event()
        self.srv = RPCServer()
        self.srv.register("KVS.Get", self.get)
        self.srv.register("KVS.Hang", self.hang)
        self.addr = ""

    async def get(self, args: Any) -> Any:
        self.calls += 1
        if not self.has_leader:
            raise NoLeader()
        return {"Server": self.name, "Key": args["Key"]}

    async def hang(self, args: Any) -> Any:
        self.calls += 1
        self.hanging.set()
        await asyncio.Event().wait()

    async def start(self) -> Backend:
        await self.srv.start("127.0.0.1", 0)
        host, port = self.srv.address
        self.addr = f"{host}:{port}"
        return self


@asynccontextmanager
async def backends(*specs: tuple[str, bool]) -> AsyncIterator[list[Backend]]:
    started = [await Backend(name, leader).start() for name, leader in specs]
    try:
        yield started
    finally:
        for b in started:
            await b.srv.stop()


@asynccontextmanager
async def pool() -> AsyncIterator[ConnPool]:
    p = ConnPool()
    try:
        yield p
    finally:
        await p.shutdown()


def test_client_rotates_away_from_a_dead_server() -> None:
    async def body() -> None:
        dead = info("dead", f"127.0.0.1:{free_port()}")
        async with backends(("alive", True)) as (alive,), pool() as p:
            manager = ServerManager()
            manager.add_server(dead)
            manager.add_server(info("alive", alive.addr))
            client = ClientRPC(p, manager)
            # a write is safe to send elsewhere: the dead server never received it
            reply = await client.rpc("KVS.Get", {"Key": "k"}, timeout=5)
            assert reply == {"Server": "alive", "Key": "k"}
            front = manager.find_server()
            assert front is not None and front.name == "alive"
            assert [s.name for s in manager.servers()] == ["alive", "dead"]
            assert alive.calls == 1

    run(body)


def test_client_without_servers_says_so() -> None:
    async def body() -> None:
        async with pool() as p:
            with pytest.raises(NoServers, match=r"^No known Consul servers$"):
                await ClientRPC(p, ServerManager()).rpc("KVS.Get", {"Key": "k"})

    run(body)


def test_client_holds_while_there_is_no_leader() -> None:
    async def body() -> None:
        async with backends(("s1", False)) as (s1,), pool() as p:
            manager = ServerManager()
            manager.add_server(info("s1", s1.addr))
            client = ClientRPC(p, manager, hold_timeout=DEADLINE)
            call = asyncio.ensure_future(client.rpc("KVS.Get", {"Key": "k"}, timeout=5))
            async with asyncio.timeout(DEADLINE):
                while s1.calls < 3:
                    await asyncio.sleep(0.01)
            assert not call.done()
            s1.has_leader = True
            async with asyncio.timeout(DEADLINE):
                assert await call == {"Server": "s1", "Key": "k"}

    run(body)


def test_client_gives_up_with_the_last_error_after_the_hold_timeout() -> None:
    async def body() -> None:
        async with backends(("s1", False)) as (s1,), pool() as p:
            manager = ServerManager()
            manager.add_server(info("s1", s1.addr))
            client = ClientRPC(p, manager, hold_timeout=0.3)
            started = time.monotonic()
            with pytest.raises(RemoteError, match=r"^No cluster leader$"):
                await client.rpc("KVS.Get", {"Key": "k"}, timeout=5)
            assert time.monotonic() - started >= 0.3
            assert s1.calls >= 2

    run(body)


def test_write_broken_mid_call_is_not_repeated() -> None:
    async def body() -> None:
        async with backends(("s1", True), ("s2", True)) as (s1, s2), pool() as p:
            manager = ServerManager()
            manager.add_server(info("s1", s1.addr))
            manager.add_server(info("s2", s2.addr))
            client = ClientRPC(p, manager, hold_timeout=DEADLINE)
            call = asyncio.ensure_future(client.rpc("KVS.Hang", {"Key": "k"}, timeout=10))
            async with asyncio.timeout(DEADLINE):
                await s1.hanging.wait()
            await s1.srv.stop()
            with pytest.raises(CallFailed, match=r"^rpc error making call: "):
                await call
            # s1 may have applied it: it is not sent to s2, though s2 is next in line
            assert s2.calls == 0
            front = manager.find_server()
            assert front is not None and front.name == "s2"

    run(body)


def test_read_retried_on_another_server_after_mid_call_failure() -> None:
    async def body() -> None:
        async with backends(("s1", True), ("s2", True)) as (s1, s2), pool() as p:
            s1.srv.register("KVS.Get", s1.hang)  # s1 takes the read and never answers
            manager = ServerManager()
            manager.add_server(info("s1", s1.addr))
            manager.add_server(info("s2", s2.addr))
            client = ClientRPC(p, manager, hold_timeout=DEADLINE)
            call = asyncio.ensure_future(
                client.rpc("KVS.Get", {"Key": "k"}, is_read=True, timeout=10))
            async with asyncio.timeout(DEADLINE):
                await s1.hanging.wait()
            await s1.srv.stop()
            async with asyncio.timeout(DEADLINE):
                assert await call == {"Server": "s2", "Key": "k"}

    run(body)


def test_forwarder_answers_locally_on_the_leader_and_for_stale_reads() -> None:
    async def body() -> None:
        async with pool() as p:
            fwd = LeaderForwarder(p, lambda: (True, None))
            assert await fwd.forward("KVS.Apply", {}) == (False, None)
            follower = LeaderForwarder(p, lambda: (False, None))
            assert await follower.forward("KVS.Get", {}, is_read=True,
                                          allow_stale=True) == (False, None)
            leaving = LeaderForwarder(p, lambda: (False, None), leaving=lambda: True)
            with pytest.raises(NoLeader):
                await leaving.forward("KVS.Apply", {})

    run(body)


def test_forwarder_holds_until_a_leader_appears() -> None:
    async def body() -> None:
        async with backends(("leader", True)) as (leader,), pool() as p:
            lookups = 0

            def lookup() -> tuple[bool, str | None]:
                nonlocal lookups
                lookups += 1
                return False, (leader.addr if lookups >= 4 else None)

            fwd = LeaderForwarder(p, lookup, hold_timeout=DEADLINE)
            forwarded, reply = await fwd.forward("KVS.Get", {"Key": "x"}, timeout=5)
            assert forwarded and reply == {"Server": "leader", "Key": "x"}
            assert lookups == 4 and leader.calls == 1

    run(body)


def test_forwarder_gives_up_with_the_last_error() -> None:
    async def body() -> None:
        async with pool() as p:
            no_leader = LeaderForwarder(p, lambda: (False, None), hold_timeout=0.3)
            started = time.monotonic()
            with pytest.raises(NoLeader, match=r"^No cluster leader$"):
                await no_leader.forward("KVS.Apply", {})
            assert time.monotonic() - started >= 0.3
            dead = f"127.0.0.1:{free_port()}"
            unreachable = LeaderForwarder(p, lambda: (False, dead), hold_timeout=0.3)
            with pytest.raises(ConnectFailed, match="connection refused"):
                await unreachable.forward("KVS.Apply", {}, timeout=5)

    run(body)

"""The RPC port end to end over 127.0.0.1: the server's first-byte switch, the pool's sessions
(concurrency, reconnects, timeouts), and the raw wire a Consul peer would speak."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest

from proconsul.errors import NoLeader, RPCError
from proconsul.rpc.codec import MsgpackCodec, TCPConn, pack
from proconsul.rpc.errors import CallFailed, ConnectFailed, RemoteError, RPCTimeout
from proconsul.rpc.pool import ConnPool
from proconsul.rpc.server import RPCServer
from proconsul.rpc.types import RPCType
from tests.support import free_port

DEADLINE = 15.0


def run(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        async with asyncio.timeout(90):
            await coro()

    asyncio.run(main())


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(DEADLINE):
        while not predicate():
            await asyncio.sleep(0.01)


class Recorder:
    """A few methods a test server serves, counting what reaches it."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.hang = asyncio.Event()
        self.hanging = asyncio.Event()

    def count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    async def echo(self, args: Any) -> Any:
        self.count("Test.Echo")
        return args

    async def leader(self, args: Any) -> Any:
        self.count("Status.Leader")
        return "127.0.0.1:8300"

    async def fail(self, args: Any) -> Any:
        self.count("Test.Fail")
        raise NoLeader()

    async def sleep(self, args: Any) -> Any:
        self.count("Test.Sleep")
        self.hanging.set()
        await self.hang.wait()
        return "woke"


def make_server(rec: Recorder, **kwargs: Any) -> RPCServer:
    srv = RPCServer(**kwargs)
    srv.register("Test.Echo", rec.echo)
    srv.register("Status.Leader", rec.leader)
    srv.register("Test.Fail", rec.fail)
    srv.register("Test.Sleep", rec.sleep)
    return srv


@asynccontextmanager
async def serving(rec: Recorder, port: int = 0, **kwargs: Any
                  ) -> AsyncIterator[tuple[RPCServer, str]]:
    srv = make_server(rec, **kwargs)
    await srv.start("127.0.0.1", port)
    host, bound = srv.address
    try:
        yield srv, f"{host}:{bound}"
    finally:
        await srv.stop()


@asynccontextmanager
async def pool_of(**kwargs: Any) -> AsyncIterator[ConnPool]:
    pool = ConnPool(**kwargs)
    try:
        yield pool
    finally:
        await pool.shutdown()


def test_calls_and_errors_travel_as_consul_sends_them() -> None:
    async def body() -> None:
        rec = Recorder()
        async with serving(rec) as (_, addr), pool_of() as pool:
            assert await pool.rpc(addr, "Status.Leader", {}, 5) == "127.0.0.1:8300"
            args = {"Datacenter": "dc1", "Key": "k", "Value": b"\x00\xff", "Index": 2**63}
            assert await pool.rpc(addr, "Test.Echo", args, 5) == args
            with pytest.raises(RemoteError) as err:
                await pool.rpc(addr, "Test.Fail", {}, 5)
            assert str(err.value) == "No cluster leader"
            assert isinstance(err.value, RPCError)
            with pytest.raises(RemoteError, match=r"^rpc: can't find service Nope\.Get$"):
                await pool.rpc(addr, "Nope.Get", {}, 5)
            with pytest.raises(RemoteError, match=r"^rpc: can't find method Test\.Nope$"):
                await pool.rpc(addr, "Test.Nope", {}, 5)
            with pytest.raises(RemoteError, match=r"ill-formed: Nodot$"):
                await pool.rpc(addr, "Nodot", {}, 5)
            assert await pool.ping(addr)
            assert pool.num_sessions() == 1

    run(body)


def test_hundreds_of_concurrent_calls_share_one_session() -> None:
    async def body() -> None:
        rec = Recorder()
        async with serving(rec) as (srv, addr), pool_of() as pool:
            count = 600
            replies = await asyncio.gather(
                *(pool.rpc(addr, "Test.Echo", {"N": i, "Pad": "x" * (i % 300)}, 30)
                  for i in range(count)))
            assert [r["N"] for r in replies] == list(range(count))
            assert rec.calls["Test.Echo"] == count
            assert pool.num_sessions() == 1
            assert srv.num_sessions() == 1

    run(body)


def test_bounded_inflight_calls_still_all_complete() -> None:
    async def body() -> None:
        rec = Recorder()
        async with serving(rec) as (_, addr), pool_of(max_inflight=8, max_streams=4) as pool:
            replies = await asyncio.gather(
                *(pool.rpc(addr, "Test.Echo", i, 30) for i in range(200)))
            assert replies == list(range(200))

    run(body)


def test_payload_larger_than_several_windows() -> None:
    async def body() -> None:
        rec = Recorder()
        async with serving(rec) as (_, addr), pool_of() as pool:
            blob = bytes(range(256)) * 8192  # 2 MiB
            assert await pool.rpc(addr, "Test.Echo", {"Value": blob}, 30) == {"Value": blob}

    run(body)


def test_pool_reconnects_after_server_restart() -> None:
    async def body() -> None:
        rec = Recorder()
        port = free_port()
        async with pool_of() as pool:
            addr = f"127.0.0.1:{port}"
            async with serving(rec, port):
                assert await pool.rpc(addr, "Test.Echo", 1, 5) == 1
            await until(lambda: not pool.has_session(addr))
            with pytest.raises(ConnectFailed, match="connection refused"):
                await pool.rpc(addr, "Test.Echo", 2, 5)
            async with serving(rec, port):
                assert await pool.rpc(addr, "Test.Echo", 3, 5) == 3
                assert pool.has_session(addr)
            assert rec.calls["Test.Echo"] == 2

    run(body)


def test_call_timeout_resets_only_its_stream() -> None:
    async def body() -> None:
        rec = Recorder()
        async with serving(rec) as (_, addr), pool_of() as pool:
            with pytest.raises(RPCTimeout):
                await pool.rpc(addr, "Test.Sleep", {}, 0.2)
            assert isinstance(RPCTimeout("x"), CallFailed)
            assert await pool.rpc(addr, "Test.Echo", "after", 5) == "after"
            assert pool.num_sessions() == 1
            rec.hang.set()

    run(body)


def test_server_going_away_mid_call_fails_the_call() -> None:
    async def body() -> None:
        rec = Recorder()
        async with pool_of() as pool, serving(rec) as (srv, addr):
            call = asyncio.ensure_future(pool.rpc(addr, "Test.Sleep", {}, 30))
            async with asyncio.timeout(DEADLINE):
                await rec.hanging.wait()
            await srv.stop()
            with pytest.raises(CallFailed, match=r"^rpc error making call: "):
                await call

    run(body)


def test_idle_sessions_are_reaped() -> None:
    async def body() -> None:
        rec = Recorder()
        async with serving(rec) as (srv, addr), \
                pool_of(max_time=0.2, reap_interval=0.05) as pool:
            await pool.rpc(addr, "Test.Echo", 1, 5)
            await until(lambda: pool.num_sessions() == 0)
            await until(lambda: srv.num_sessions() == 0)
            assert await pool.rpc(addr, "Test.Echo", 2, 5) == 2

    run(body)


def test_plain_consul_connection_serves_calls_in_order() -> None:
    async def body() -> None:
        rec = Recorder()
        async with serving(rec) as (_, addr):
            host, port = addr.rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                writer.write(bytes((RPCType.CONSUL,)))
                codec = MsgpackCodec(TCPConn(reader, writer))
                for seq in (1, 2, 3):
                    await codec.write_request("Test.Echo", seq, {"Seq": seq})
                    async with asyncio.timeout(DEADLINE):
                        assert await codec.read_response() == ("Test.Echo", seq, "",
                                                               {"Seq": seq})
                await codec.write_request("Test.Fail", 4, {})
                assert await codec.read_response() == ("Test.Fail", 4, "No cluster leader", {})
            finally:
                writer.close()
                await writer.wait_closed()

    run(body)


def test_raft_connections_are_handed_over() -> None:
    async def body() -> None:
        rec = Recorder()
        received: asyncio.Queue[bytes] = asyncio.Queue()

        async def raft_handler(reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter) -> None:
            data = await reader.readexactly(5)
            await received.put(data)
            writer.write(b"ack:" + data)
            await writer.drain()
            writer.close()

        async with serving(rec) as (srv, addr):
            srv.set_raft_handler(raft_handler)
            host, port = addr.rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            # the type byte and the first raft bytes in one segment: none may be lost
            writer.write(bytes((RPCType.RAFT,)) + b"hello")
            async with asyncio.timeout(DEADLINE):
                assert await received.get() == b"hello"
                assert await reader.read() == b"ack:hello"
            writer.close()
            await writer.wait_closed()

    run(body)


def test_unknown_type_byte_is_logged_and_closed(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        rec = Recorder()
        async with serving(rec) as (_, addr):
            host, port = addr.rsplit(":", 1)
            for byte in (9, RPCType.MULTIPLEX, RPCType.SNAPSHOT):
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(bytes((byte,)))
                async with asyncio.timeout(DEADLINE):
                    assert await reader.read() == b""
                writer.close()
                await writer.wait_closed()

    with caplog.at_level(logging.ERROR, logger="proconsul.server.rpc"):
        run(body)
    messages = [r.getMessage() for r in caplog.records]
    for byte in (9, 2, 5):
        assert any(m.startswith(f"unrecognized RPC byte: byte={byte} conn=from=127.0.0.1:")
                   for m in messages), messages


def test_silent_connection_is_closed_after_handshake_timeout() -> None:
    async def body() -> None:
        rec = Recorder()
        async with serving(rec, handshake_timeout=0.2) as (_, addr):
            host, port = addr.rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            async with asyncio.timeout(DEADLINE):
                assert await reader.read() == b""
            writer.close()
            await writer.wait_closed()

    run(body)


def test_connections_per_client_are_limited() -> None:
    async def body() -> None:
        rec = Recorder()
        async with serving(rec, max_conns_per_client=2) as (_, addr):
            host, port = addr.rsplit(":", 1)
            conns = []
            for _ in range(2):
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(bytes((RPCType.CONSUL,)))
                codec = MsgpackCodec(TCPConn(reader, writer))
                await codec.write_request("Test.Echo", 1, 1)
                async with asyncio.timeout(DEADLINE):
                    await codec.read_response()  # accepted and serving
                conns.append(writer)
            reader, writer = await asyncio.open_connection(host, int(port))
            async with asyncio.timeout(DEADLINE):
                assert await reader.read() == b""
            conns.append(writer)
            for w in conns:
                w.close()
                await w.wait_closed()

    run(body)


def test_raw_yamux_client_speaks_to_the_server() -> None:
    """A peer that builds the yamux frames and msgpack itself, as a Go client would."""

    async def body() -> None:
        from proconsul.rpc.yamux import (
            FLAG_ACK,
            FLAG_SYN,
            TYPE_DATA,
            TYPE_WINDOW_UPDATE,
            decode_header,
            encode_header,
        )

        rec = Recorder()
        async with serving(rec) as (_, addr):
            host, port = addr.rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            request = pack({"ServiceMethod": "Status.Leader", "Seq": 1}) + pack({})
            writer.write(bytes((RPCType.MULTIPLEX_V2,))
                         + encode_header(TYPE_DATA, FLAG_SYN, 1, len(request)) + request)
            got = bytearray()
            ack = False
            async with asyncio.timeout(DEADLINE):
                while True:
                    _, msg_type, flags, stream_id, length = decode_header(
                        await reader.readexactly(12))
                    assert stream_id == 1
                    if flags & FLAG_ACK:
                        ack = True
                    if msg_type == TYPE_DATA and length:
                        got += await reader.readexactly(length)
                        expected = pack({"ServiceMethod": "Status.Leader", "Seq": 1,
                                         "Error": ""}) + pack("127.0.0.1:8300")
                        if len(got) >= len(expected):
                            assert bytes(got) == expected
                            break
                    else:
                        assert msg_type == TYPE_WINDOW_UPDATE
            assert ack
            writer.close()
            await writer.wait_closed()

    run(body)

"""The yamux session against the spec's byte layouts (a raw peer reading and writing frames by
hand) and against itself (flow control, many streams, resets, go-away, keep-alive)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from proconsul.rpc.errors import (
    ConnectionReset,
    KeepAliveTimeout,
    RemoteGoAway,
    SessionShutdown,
    StreamClosed,
    YamuxError,
)
from proconsul.rpc.yamux import (
    FLAG_ACK,
    FLAG_FIN,
    FLAG_RST,
    FLAG_SYN,
    GO_AWAY_NORMAL,
    GO_AWAY_PROTO_ERR,
    INITIAL_STREAM_WINDOW,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    Session,
    Stream,
    StreamState,
    YamuxConfig,
    decode_header,
    encode_header,
)

Frame = tuple[int, int, int, int, int, bytes]
DEADLINE = 10.0


def run(coro: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        async with asyncio.timeout(60):
            await coro()

    asyncio.run(main())


class RawPeer:
    """The other end of a session, speaking frames by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, msg_type: int, flags: int, stream_id: int, length: int,
             payload: bytes = b"") -> None:
        self.writer.write(encode_header(msg_type, flags, stream_id, length) + payload)

    async def frame(self) -> Frame:
        async with asyncio.timeout(DEADLINE):
            head = await self.reader.readexactly(12)
            version, msg_type, flags, stream_id, length = decode_header(head)
            payload = b""
            if msg_type == TYPE_DATA and length:
                payload = await self.reader.readexactly(length)
            return version, msg_type, flags, stream_id, length, payload

    async def frame_of(self, msg_type: int) -> Frame:
        """The next frame of one type, skipping window updates and pings in between."""
        while True:
            frame = await self.frame()
            if frame[1] == msg_type:
                return frame


async def _pair() -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter],
                           tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    a, b = socket.socketpair()
    left = await asyncio.open_connection(sock=a)
    right = await asyncio.open_connection(sock=b)
    return left, right


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass


@asynccontextmanager
async def raw_and_session(*, client: bool, config: YamuxConfig | None = None
                          ) -> AsyncIterator[tuple[RawPeer, Session]]:
    (ra, wa), (rb, wb) = await _pair()
    session = Session(ra, wa, client=client, config=config or YamuxConfig())
    peer = RawPeer(rb, wb)
    try:
        yield peer, session
    finally:
        await session.aclose()
        await _close_writer(wb)


@asynccontextmanager
async def session_pair(config: YamuxConfig | None = None
                       ) -> AsyncIterator[tuple[Session, Session]]:
    (ra, wa), (rb, wb) = await _pair()
    client = Session(ra, wa, client=True, config=config or YamuxConfig())
    server = Session(rb, wb, client=False, config=config or YamuxConfig())
    try:
        yield client, server
    finally:
        await client.aclose()
        await server.aclose()


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(DEADLINE):
        while not predicate():
            await asyncio.sleep(0.005)


# -- framing bytes ---------------------------------------------------------------------------


def test_header_layout_is_big_endian_twelve_bytes() -> None:
    assert encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0) == bytes.fromhex(
        "00 01 0001 00000001 00000000")
    assert encode_header(TYPE_DATA, FLAG_ACK | FLAG_FIN, 0x01020304, 0x0A0B0C0D) == bytes.fromhex(
        "00 00 0006 01020304 0a0b0c0d")
    assert encode_header(TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTO_ERR) == bytes.fromhex(
        "00 03 0000 00000000 00000001")
    assert decode_header(bytes.fromhex("00 02 0002 00000000 deadbeef")) == (
        0, TYPE_PING, FLAG_ACK, 0, 0xDEADBEEF)
    assert (FLAG_SYN, FLAG_ACK, FLAG_FIN, FLAG_RST) == (1, 2, 4, 8)
    assert INITIAL_STREAM_WINDOW == 262144


def test_client_opens_odd_streams_with_syn_then_sends_data() -> None:
    async def body() -> None:
        async with raw_and_session(client=True) as (peer, session):
            stream = await session.open_stream()
            assert stream.stream_id == 1
            head = await peer.reader.readexactly(12)
            assert head == bytes.fromhex("00 01 0001 00000001 00000000")
            await stream.write(b"hello")
            head = await peer.reader.readexactly(12)
            assert head == bytes.fromhex("00 00 0000 00000001 00000005")
            assert await peer.reader.readexactly(5) == b"hello"
            second = await session.open_stream()
            assert second.stream_id == 3
            # the peer accepts with an ACK carrying data, then half-closes
            peer.send(TYPE_DATA, FLAG_ACK, 1, 3, b"hey")
            assert await stream.read() == b"hey"
            assert stream.state is StreamState.ESTABLISHED
            peer.send(TYPE_WINDOW_UPDATE, FLAG_FIN, 1, 0)
            assert await stream.read() == b""
            stream.close()
            assert await peer.frame() == (0, TYPE_WINDOW_UPDATE, FLAG_SYN, 3, 0, b"")
            assert await peer.frame() == (0, TYPE_WINDOW_UPDATE, FLAG_FIN, 1, 0, b"")
            assert stream.is_closed and session.num_streams() == 1

    run(body)


def test_server_accepts_with_ack_and_opens_even_streams() -> None:
    async def body() -> None:
        async with raw_and_session(client=False) as (peer, session):
            peer.send(TYPE_DATA, FLAG_SYN, 1, 4, b"ping")
            async with asyncio.timeout(DEADLINE):
                stream = await session.accept_stream()
            assert stream.stream_id == 1
            assert await peer.reader.readexactly(12) == bytes.fromhex(
                "00 01 0002 00000001 00000000")
            assert await stream.read() == b"ping"
            await stream.write(b"pong")
            assert await peer.frame() == (0, TYPE_DATA, 0, 1, 4, b"pong")
            stream.close()
            assert await peer.frame() == (0, TYPE_WINDOW_UPDATE, FLAG_FIN, 1, 0, b"")
            own = await session.open_stream()
            assert own.stream_id == 2
            assert await peer.frame() == (0, TYPE_WINDOW_UPDATE, FLAG_SYN, 2, 0, b"")

    run(body)


def test_ping_is_echoed_and_measured() -> None:
    async def body() -> None:
        async with raw_and_session(client=True) as (peer, session):
            peer.send(TYPE_PING, FLAG_SYN, 0, 0xDEADBEEF)
            assert await peer.frame() == (0, TYPE_PING, FLAG_ACK, 0, 0xDEADBEEF, b"")
            pinging = asyncio.ensure_future(session.ping())
            frame = await peer.frame()
            assert frame[:4] == (0, TYPE_PING, FLAG_SYN, 0)
            peer.send(TYPE_PING, FLAG_ACK, 0, frame[4])
            async with asyncio.timeout(DEADLINE):
                rtt = await pinging
            assert rtt >= 0

    run(body)


def test_remote_go_away_refuses_new_streams() -> None:
    async def body() -> None:
        async with raw_and_session(client=True) as (peer, session):
            stream = await session.open_stream()
            await peer.frame()
            peer.send(TYPE_GO_AWAY, 0, 0, GO_AWAY_NORMAL)
            await until(lambda: session.remote_go_away)
            with pytest.raises(RemoteGoAway):
                await session.open_stream()
            # streams already open keep working
            peer.send(TYPE_DATA, FLAG_ACK, 1, 2, b"ok")
            assert await stream.read() == b"ok"

    run(body)


def test_local_go_away_resets_inbound_streams() -> None:
    async def body() -> None:
        async with raw_and_session(client=False) as (peer, session):
            session.go_away()
            assert await peer.frame() == (0, TYPE_GO_AWAY, 0, 0, GO_AWAY_NORMAL, b"")
            peer.send(TYPE_WINDOW_UPDATE, FLAG_SYN, 5, 0)
            assert await peer.frame() == (0, TYPE_WINDOW_UPDATE, FLAG_RST, 5, 0, b"")
            assert session.num_streams() == 0

    run(body)


def test_protocol_error_go_away_from_peer_ends_session() -> None:
    async def body() -> None:
        async with raw_and_session(client=True) as (peer, session):
            peer.send(TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTO_ERR)
            async with asyncio.timeout(DEADLINE):
                await session.wait_closed()
            assert str(session.shutdown_error) == "yamux protocol error"

    run(body)


def test_exceeding_the_receive_window_is_a_protocol_error() -> None:
    async def body() -> None:
        async with raw_and_session(client=False) as (peer, session):
            peer.send(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0)
            too_much = INITIAL_STREAM_WINDOW + 1
            peer.send(TYPE_DATA, 0, 1, too_much, b"x" * too_much)
            frame = await peer.frame_of(TYPE_GO_AWAY)
            assert frame[4] == GO_AWAY_PROTO_ERR
            async with asyncio.timeout(DEADLINE):
                await session.wait_closed()
            assert str(session.shutdown_error) == "recv window exceeded"

    run(body)


def test_invalid_version_ends_session() -> None:
    async def body() -> None:
        async with raw_and_session(client=True) as (peer, session):
            peer.writer.write(struct.pack(">BBHII", 1, TYPE_PING, FLAG_SYN, 0, 1))
            async with asyncio.timeout(DEADLINE):
                await session.wait_closed()
            assert str(session.shutdown_error) == "invalid protocol version"
            with pytest.raises(YamuxError):
                await session.open_stream()

    run(body)


def test_backlog_overflow_resets_the_extra_stream() -> None:
    async def body() -> None:
        async with raw_and_session(client=False, config=YamuxConfig(accept_backlog=2)) as (
                peer, session):
            for stream_id in (1, 3, 5):
                peer.send(TYPE_WINDOW_UPDATE, FLAG_SYN, stream_id, 0)
            assert await peer.frame() == (0, TYPE_WINDOW_UPDATE, FLAG_RST, 5, 0, b"")
            first = await session.accept_stream()
            second = await session.accept_stream()
            assert (first.stream_id, second.stream_id) == (1, 3)

    run(body)


def test_unacknowledged_open_times_out_the_session() -> None:
    async def body() -> None:
        config = YamuxConfig(stream_open_timeout=0.2)
        async with raw_and_session(client=True, config=config) as (peer, session):
            await session.open_stream()
            await peer.frame()
            async with asyncio.timeout(DEADLINE):
                await session.wait_closed()

    run(body)


def test_keepalive_without_answers_closes_the_session() -> None:
    async def body() -> None:
        config = YamuxConfig(keepalive_interval=0.05, connection_write_timeout=0.2)
        async with raw_and_session(client=True, config=config) as (peer, session):
            frame = await peer.frame()
            assert frame[1:3] == (TYPE_PING, FLAG_SYN)
            async with asyncio.timeout(DEADLINE):
                await session.wait_closed()
            assert isinstance(session.shutdown_error, KeepAliveTimeout)

    run(body)


def test_keepalive_answered_keeps_the_session() -> None:
    async def body() -> None:
        config = YamuxConfig(keepalive_interval=0.02, connection_write_timeout=5.0)
        async with session_pair(config) as (client, server):
            await until(lambda: client._ping_id >= 5 and server._ping_id >= 5)
            assert not client.is_closed and not server.is_closed

    run(body)


# -- sessions against each other ---------------------------------------------------------------


def test_flow_control_blocks_at_the_window_and_resumes() -> None:
    async def body() -> None:
        async with session_pair() as (client, server):
            stream = await client.open_stream()
            payload = bytes(range(256)) * 1200  # 307200 bytes: more than one window
            writing = asyncio.ensure_future(stream.write(payload))
            accepted = await server.accept_stream()
            await until(lambda: accepted.buffered() == INITIAL_STREAM_WINDOW)
            # nothing more can arrive until the reader frees window
            await asyncio.sleep(0.05)
            assert accepted.buffered() == INITIAL_STREAM_WINDOW
            assert not writing.done()
            received = bytearray()
            while len(received) < len(payload):
                chunk = await accepted.read()
                assert chunk
                received += chunk
            async with asyncio.timeout(DEADLINE):
                await writing
            assert received == payload

    run(body)


def test_large_payloads_both_ways() -> None:
    async def body() -> None:
        async with session_pair() as (client, server):
            size = 3 * 1024 * 1024 + 17
            payload = bytes(i % 251 for i in range(size))

            async def echo() -> None:
                stream = await server.accept_stream()
                got = await stream.readexactly(size)
                await stream.write(got)
                stream.close()

            echoing = asyncio.ensure_future(echo())
            stream = await client.open_stream()
            writing = asyncio.ensure_future(stream.write(payload))
            back = await stream.readexactly(size)
            await writing
            stream.close()
            assert back == payload
            assert await stream.read() == b""
            await echoing
            await until(lambda: client.num_streams() == 0 and server.num_streams() == 0)

    run(body)


def test_many_concurrent_streams() -> None:
    async def body() -> None:
        async with session_pair() as (client, server):
            count = 300

            async def echo(s: Stream) -> None:
                data = await s.readexactly(5000)
                await s.write(data[::-1])
                s.close()

            async def serve() -> None:
                tasks = []
                for _ in range(count):
                    stream = await server.accept_stream()
                    tasks.append(asyncio.ensure_future(echo(stream)))
                await asyncio.gather(*tasks)

            serving = asyncio.ensure_future(serve())

            async def one(i: int) -> None:
                stream = await client.open_stream()
                data = (f"{i:05d}" * 1000).encode()
                await stream.write(data)
                assert await stream.readexactly(5000) == data[::-1]
                assert await stream.read() == b""
                stream.close()

            await asyncio.gather(*(one(i) for i in range(count)))
            await serving
            await until(lambda: client.num_streams() == 0 and server.num_streams() == 0)

    run(body)


def test_half_close_keeps_the_other_direction() -> None:
    async def body() -> None:
        async with session_pair() as (client, server):
            stream = await client.open_stream()
            await stream.write(b"request")
            stream.close()
            with pytest.raises(StreamClosed):
                await stream.write(b"more")
            accepted = await server.accept_stream()
            assert await accepted.readexactly(7) == b"request"
            assert await accepted.read() == b""
            await accepted.write(b"reply")
            assert await stream.read() == b"reply"
            accepted.close()
            assert await stream.read() == b""
            await until(lambda: stream.is_closed and accepted.is_closed)
            assert client.num_streams() == 0 and server.num_streams() == 0

    run(body)


def test_peer_reset_fails_reads_and_writes() -> None:
    async def body() -> None:
        async with session_pair() as (client, server):
            stream = await client.open_stream()
            await stream.write(b"x")
            accepted = await server.accept_stream()
            reading = asyncio.ensure_future(accepted.read(10))
            assert await reading == b"x"
            blocked = asyncio.ensure_future(accepted.read())
            stream.reset()
            with pytest.raises(ConnectionReset):
                async with asyncio.timeout(DEADLINE):
                    await blocked
            with pytest.raises(ConnectionReset):
                await accepted.write(b"y")
            assert server.num_streams() == 0 and client.num_streams() == 0

    run(body)


def test_session_close_wakes_everyone() -> None:
    async def body() -> None:
        async with session_pair() as (client, server):
            stream = await client.open_stream()
            accepting = asyncio.ensure_future(client.accept_stream())
            reading = asyncio.ensure_future(stream.read())
            await asyncio.sleep(0)
            client.close()
            with pytest.raises(SessionShutdown):
                await accepting
            assert await reading == b""
            with pytest.raises(SessionShutdown):
                await stream.write(b"z")
            with pytest.raises(SessionShutdown):
                await client.open_stream()
            async with asyncio.timeout(DEADLINE):
                await server.wait_closed()
            assert str(server.shutdown_error) == "EOF"

    run(body)

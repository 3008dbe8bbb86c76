"""Recursor forwarding against real upstream servers started in-process on 127.0.0.1.

Every upstream binds an OS-chosen port, answers with dnspython, and records what it received
and sent so the tests can check that the relay passes bytes through unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from proconsul.dns.recursor import Recursors, parse_addr
from proconsul.errors import ConfigError

T = TypeVar("T")
# a handler gets the query and returns the datagrams / TCP messages to send back, in order
Handler = Callable[[dns.message.Message], list[bytes]]

FAST = 0.2  # per-attempt timeout for tests that expect a silent upstream


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a test body with a hard bound so a hung forward fails the test instead of the suite."""
    async def bounded() -> T:
        async with asyncio.timeout(10):
            return await coro
    return asyncio.run(bounded())


def answer(query: dns.message.Message, rcode: dns.rcode.Rcode = dns.rcode.NOERROR, count: int = 1,
           tc: bool = False) -> bytes:
    resp = dns.message.make_response(query)
    resp.set_rcode(rcode)
    if rcode == dns.rcode.NOERROR and not tc:
        name = query.question[0].name
        resp.answer.append(dns.rrset.from_text_list(
            name, 60, "IN", "A", [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(count)]))
    if tc:
        resp.flags |= dns.flags.TC
    return resp.to_wire()


class Upstream:
    """A UDP and a TCP DNS server on the same port, counting and recording traffic."""

    def __init__(self, udp: Handler | None, tcp: Handler | None = None) -> None:
        self.udp_handler, self.tcp_handler = udp, tcp
        self.udp_queries: list[bytes] = []
        self.tcp_queries: list[bytes] = []
        self.sent: list[bytes] = []
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> Upstream:
        loop = asyncio.get_running_loop()
        upstream = self

        class Proto(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                upstream.udp_queries.append(data)
                if upstream.udp_handler is not None:  # None: a black hole that never answers
                    for out in upstream.udp_handler(dns.message.from_wire(data)):
                        upstream.sent.append(out)
                        self.transport.sendto(out, addr)  # type: ignore[attr-defined]

        for _ in range(20):  # the TCP port of the same number may be taken; bounded retries
            transport, _p = await loop.create_datagram_endpoint(
                Proto, local_addr=("127.0.0.1", 0))
            port = transport.get_extra_info("sockname")[1]
            try:
                self._server = await asyncio.start_server(self._serve_tcp, "127.0.0.1", port)
            except OSError:
                transport.close()
                continue
            self._transport, self.port = transport, port
            return self
        raise RuntimeError("no free port pair")

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            (size,) = struct.unpack("!H", await reader.readexactly(2))
            data = await reader.readexactly(size)
            self.tcp_queries.append(data)
            if self.tcp_handler is not None:
                for out in self.tcp_handler(dns.message.from_wire(data)):
                    self.sent.append(out)
                    writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
                await reader.read()  # the client closes first
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            # the transport closes its socket in a later loop callback: let it run before the
            # caller's loop ends (uvloop otherwise leaves the socket object to the collector)
            await asyncio.sleep(0.01)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def query(name: str = "example.com.", qtype: str = "A", txid: int = 0x1234) -> bytes:
    msg = dns.message.make_query(name, qtype)
    msg.id = txid
    return msg.to_wire()


def closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def with_upstreams(*handlers: tuple[Handler | None, Handler | None],
                         body: Callable[[list[Upstream]], Awaitable[T]]) -> T:
    ups = [await Upstream(u, t).start() for u, t in handlers]
    try:
        return await body(ups)
    finally:
        for up in ups:
            await up.stop()


def ok(q: dns.message.Message) -> list[bytes]:
    return [answer(q)]


# ---- address parsing -------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("8.8.8.8", ("8.8.8.8", 53)),
    ("8.8.8.8:5353", ("8.8.8.8", 5353)),
    (" 10.0.0.1:53 ", ("10.0.0.1", 53)),
    ("::1", ("::1", 53)),
    ("2001:db8::1", ("2001:db8::1", 53)),
    ("[2001:db8::1]", ("2001:db8::1", 53)),
    ("[2001:DB8::1]:8600", ("2001:db8::1", 8600)),
    ("fe80::1%eth0", ("fe80::1%eth0", 53)),
])
def test_parse_addr(text: str, expected: tuple[str, int]) -> None:
    assert parse_addr(text) == expected


@pytest.mark.parametrize("text", [
    "", "dns.google", "8.8.8.8:", "8.8.8.8:0", "8.8.8.8:65536", "8.8.8.8:x", "8.8.8.8:٥٣",
    "[::1", "[::1]:", "[::1]x", "[8.8.8.8]:53", "[]", "1.2.3.4:53:53", "300.1.1.1",
])
def test_parse_addr_rejects_garbage(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_addr(text)


def test_constructor_validation_and_bool() -> None:
    assert not Recursors([])
    assert Recursors(["1.1.1.1"])
    assert Recursors("1.1.1.1").addrs == (("1.1.1.1", 53),)
    with pytest.raises(ConfigError):
        Recursors(["1.1.1.1"], strategy="roundrobin")
    for bad in (0, -1, float("nan")):
        with pytest.raises(ConfigError):
            Recursors(["1.1.1.1"], timeout=bad)
    with pytest.raises(ConfigError):
        Recursors(["1.1.1.1", "nope"])


def test_no_recursors_or_bad_request_is_none() -> None:
    assert run(Recursors([]).forward(query(), False)) is None
    assert run(Recursors(["127.0.0.1"]).forward(b"\x00" * 5, False)) is None


# ---- relaying --------------------------------------------------------------------------------

def test_answer_relayed_byte_for_byte() -> None:
    def edns(q: dns.message.Message) -> list[bytes]:
        resp = dns.message.make_response(q)
        resp.use_edns(0, 0, 1232)
        resp.answer.append(dns.rrset.from_text(q.question[0].name, 30, "IN", "TYPE65280",
                                               r"\# 3 abcdef"))  # unknown type survives
        return [resp.to_wire()]

    async def body(ups: list[Upstream]) -> tuple[bytes | None, list[Upstream]]:
        rec = Recursors([ups[0].addr])
        try:
            return await rec.forward(query(txid=0xBEEF), False), ups
        finally:
            await rec.close()

    reply, ups = run(with_upstreams((edns, None), body=body))
    assert reply is not None and reply == ups[0].sent[0]
    assert reply[:2] == b"\xbe\xef"
    assert ups[0].udp_queries == [query(txid=0xBEEF)]  # the query went out unchanged too


def test_nxdomain_relayed() -> None:
    def nx(q: dns.message.Message) -> list[bytes]:
        return [answer(q, dns.rcode.NXDOMAIN)]

    async def body(ups: list[Upstream]) -> bytes | None:
        return await Recursors([ups[0].addr, ups[1].addr]).forward(query(), False)

    reply = run(with_upstreams((nx, None), (ok, None), body=body))
    assert reply is not None
    assert dns.message.from_wire(reply).rcode() == dns.rcode.NXDOMAIN


@pytest.mark.parametrize("rcode", [dns.rcode.SERVFAIL, dns.rcode.REFUSED, dns.rcode.FORMERR])
def test_failing_rcode_tries_next(rcode: dns.rcode.Rcode, caplog: pytest.LogCaptureFixture) -> None:
    def bad(q: dns.message.Message) -> list[bytes]:
        return [answer(q, rcode)]

    async def body(ups: list[Upstream]) -> tuple[bytes | None, int]:
        reply = await Recursors([ups[0].addr, ups[1].addr]).forward(query(), False)
        return reply, len(ups[0].udp_queries)

    caplog.set_level(logging.DEBUG, logger="proconsul.dns")
    reply, first_hits = run(with_upstreams((bad, None), (ok, None), body=body))
    assert first_hits == 1
    assert reply is not None and dns.message.from_wire(reply).rcode() == dns.rcode.NOERROR
    assert "recurse failed for question" in caplog.text


def test_silent_and_unreachable_recursors_skipped(caplog: pytest.LogCaptureFixture) -> None:
    async def body(ups: list[Upstream]) -> tuple[bytes | None, float]:
        rec = Recursors([ups[0].addr, f"127.0.0.1:{closed_udp_port()}", ups[1].addr],
                        timeout=FAST)
        start = time.monotonic()
        reply = await rec.forward(query(), False)
        return reply, time.monotonic() - start

    reply, took = run(with_upstreams((None, None), (ok, None), body=body))
    assert reply is not None and dns.message.from_wire(reply).answer
    assert FAST * 0.9 < took < FAST * 3 + 1
    assert caplog.text.count("recurse failed: recursor=") == 2
    assert "i/o timeout" in caplog.text


def test_all_fail_returns_none(caplog: pytest.LogCaptureFixture) -> None:
    def servfail(q: dns.message.Message) -> list[bytes]:
        return [answer(q, dns.rcode.SERVFAIL)]

    async def body(ups: list[Upstream]) -> bytes | None:
        addrs = [ups[0].addr, ups[1].addr, f"127.0.0.1:{closed_udp_port()}"]
        return await Recursors(addrs, timeout=FAST).forward(query(), False)

    assert run(with_upstreams((servfail, None), (None, None), body=body)) is None
    assert "all resolvers failed" in caplog.text


def test_truncated_reply_retried_over_tcp() -> None:
    def tc(q: dns.message.Message) -> list[bytes]:
        return [answer(q, tc=True)]

    def full(q: dns.message.Message) -> list[bytes]:
        return [answer(q, count=100)]  # well over 512 bytes

    async def body(ups: list[Upstream]) -> tuple[bytes | None, Upstream]:
        return await Recursors([ups[0].addr]).forward(query(), False), ups[0]

    reply, up = run(with_upstreams((tc, full), body=body))
    assert reply is not None and len(reply) > 512
    assert reply == up.sent[-1]
    assert len(dns.message.from_wire(reply).answer[0]) == 100
    assert len(up.udp_queries) == 1 and len(up.tcp_queries) == 1


def test_truncated_reply_kept_when_tcp_fails() -> None:
    def tc(q: dns.message.Message) -> list[bytes]:
        return [answer(q, tc=True)]

    async def body(ups: list[Upstream]) -> tuple[bytes | None, Upstream]:
        # the TCP side accepts and closes without answering
        return await Recursors([ups[0].addr], timeout=FAST).forward(query(), False), ups[0]

    reply, up = run(with_upstreams((tc, None), body=body))
    assert reply is not None and reply == up.sent[0]
    assert dns.message.from_wire(reply).flags & dns.flags.TC


def test_tcp_client_goes_straight_to_tcp() -> None:
    def full(q: dns.message.Message) -> list[bytes]:
        return [answer(q, count=3)]

    async def body(ups: list[Upstream]) -> tuple[bytes | None, Upstream]:
        return await Recursors([ups[0].addr]).forward(query(), True), ups[0]

    reply, up = run(with_upstreams((ok, full), body=body))
    assert reply is not None and reply == up.sent[0]
    assert up.udp_queries == [] and up.tcp_queries == [query()]


def test_tcp_skips_mismatched_messages() -> None:
    def noisy(q: dns.message.Message) -> list[bytes]:
        wrong = dns.message.make_response(q)
        wrong.id ^= 0xFFFF
        return [wrong.to_wire(), answer(q)]

    async def body(ups: list[Upstream]) -> tuple[bytes | None, Upstream]:
        return await Recursors([ups[0].addr]).forward(query(), True), ups[0]

    reply, up = run(with_upstreams((None, noisy), body=body))
    assert reply is not None and reply == up.sent[1]


def test_wrong_id_and_junk_datagrams_ignored() -> None:
    def noisy(q: dns.message.Message) -> list[bytes]:
        good = answer(q)
        wrong_id = bytes([good[0] ^ 0xFF]) + good[1:]
        not_reply = good[:2] + bytes([good[2] & 0x7F]) + good[3:]
        return [b"\x12", wrong_id, not_reply, good]

    async def body(ups: list[Upstream]) -> tuple[bytes | None, Upstream]:
        return await Recursors([ups[0].addr]).forward(query(), False), ups[0]

    reply, up = run(with_upstreams((noisy, None), body=body))
    assert reply is not None and reply == up.sent[3]


def test_wrong_id_only_times_out() -> None:
    def liar(q: dns.message.Message) -> list[bytes]:
        good = answer(q)
        return [bytes([good[0] ^ 0xFF]) + good[1:]]

    async def body(ups: list[Upstream]) -> bytes | None:
        return await Recursors([ups[0].addr], timeout=FAST).forward(query(), False)

    assert run(with_upstreams((liar, None), body=body)) is None


def test_sequential_always_asks_first() -> None:
    async def body(ups: list[Upstream]) -> tuple[int, int]:
        rec = Recursors([ups[0].addr, ups[1].addr])
        for i in range(10):
            assert await rec.forward(query(txid=i), False) is not None
        return len(ups[0].udp_queries), len(ups[1].udp_queries)

    assert run(with_upstreams((ok, None), (ok, None), body=body)) == (10, 0)


def test_random_strategy_uses_both() -> None:
    async def body(ups: list[Upstream]) -> tuple[int, int]:
        rec = Recursors([ups[0].addr, ups[1].addr], strategy="random")
        for i in range(200):  # chance of one side never chosen: 2 * 2**-200
            assert await rec.forward(query(txid=i), False) is not None
            if ups[0].udp_queries and ups[1].udp_queries:
                break
        return len(ups[0].udp_queries), len(ups[1].udp_queries)

    first, second = run(with_upstreams((ok, None), (ok, None), body=body))
    assert first > 0 and second > 0


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_many_concurrent_forwards_get_their_own_answers() -> None:
    def echo_name(q: dns.message.Message) -> list[bytes]:
        resp = dns.message.make_response(q)
        resp.answer.append(dns.rrset.from_text(q.question[0].name, 0, "IN", "TXT",
                                               f'"{q.question[0].name}"'))
        return [resp.to_wire()]

    async def body(ups: list[Upstream]) -> tuple[int, int, int]:
        rec = Recursors([ups[0].addr], timeout=5)
        before = _open_fds()
        # every client uses the same ID: the per-attempt sockets must still keep them apart
        reqs = [query(f"q{i}.example.com.", "TXT", txid=7) for i in range(200)]
        replies = await asyncio.gather(*(rec.forward(r, i % 10 == 0)
                                         for i, r in enumerate(reqs)))
        for i, reply in enumerate(replies):
            assert reply is not None
            msg = dns.message.from_wire(reply)
            assert str(msg.question[0].name) == f"q{i}.example.com."
            assert str(msg.answer[0].name) == f"q{i}.example.com."
        for _ in range(50):  # closed transports release their fd on a later loop iteration
            if _open_fds() <= before:
                break
            await asyncio.sleep(0.01)
        after = _open_fds()
        await rec.close()
        return before, after, len(ups[0].udp_queries) + len(ups[0].tcp_queries)

    before, after, served = run(with_upstreams((echo_name, echo_name), body=body))
    assert served == 200
    assert after <= before


def test_close_aborts_in_flight_and_refuses_new() -> None:
    async def body(ups: list[Upstream]) -> tuple[bytes | None, bytes | None, float]:
        rec = Recursors([ups[0].addr, ups[0].addr], timeout=5)
        start = time.monotonic()
        pending = asyncio.ensure_future(rec.forward(query(), False))
        await asyncio.sleep(0.05)
        await rec.close()
        reply = await pending
        return reply, await rec.forward(query(), False), time.monotonic() - start

    reply, later, took = run(with_upstreams((None, None), body=body))
    assert reply is None and later is None
    assert took < 2


def test_works_under_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    def tc(q: dns.message.Message) -> list[bytes]:
        return [answer(q, tc=True)]

    def full(q: dns.message.Message) -> list[bytes]:
        return [answer(q, count=100)]

    async def body(ups: list[Upstream]) -> list[bytes | None]:
        rec = Recursors([f"127.0.0.1:{closed_udp_port()}", ups[1].addr, ups[0].addr],
                        timeout=FAST)
        return [await rec.forward(query(), False), await rec.forward(query(), True)]

    async def main() -> list[bytes | None]:
        async with asyncio.timeout(10):
            return await with_upstreams((ok, None), (tc, full), body=body)

    replies = uvloop.run(main())
    for reply in replies:
        assert reply is not None and len(dns.message.from_wire(reply).answer[0]) == 100

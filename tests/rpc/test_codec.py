"""net/rpc msgpack framing: exact header bytes, Consul's handle conventions, objects split
across reads, and where a stream may end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import msgpack
import pytest

from proconsul.rpc.codec import EMPTY_REPLY, MsgpackCodec, pack
from proconsul.rpc.errors import CodecError


class ScriptedConn:
    """Hands out pre-set bytes a few at a time and records what is written."""

    def __init__(self, data: bytes, step: int = 1) -> None:
        self.data = data
        self.step = step
        self.written = bytearray()
        self.closed = False

    async def read(self, n: int = -1) -> bytes:
        take = self.step if n < 0 else min(n, self.step)
        chunk, self.data = self.data[:take], self.data[take:]
        return chunk

    async def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


def run(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(coro())


def test_request_header_bytes_match_go_net_rpc() -> None:
    async def body() -> None:
        conn = ScriptedConn(b"")
        await MsgpackCodec(conn).write_request("Status.Ping", 1, {})
        assert bytes(conn.written) == (
            b"\x82\xadServiceMethod\xabStatus.Ping\xa3Seq\x01" + b"\x80")

    run(body)


def test_error_response_carries_empty_struct_body() -> None:
    async def body() -> None:
        conn = ScriptedConn(b"")
        await MsgpackCodec(conn).write_response("KVS.Apply", 300, "No cluster leader",
                                                {"ignored": True})
        assert bytes(conn.written) == (
            b"\x83\xadServiceMethod\xa9KVS.Apply\xa3Seq\xcd\x01\x2c"
            b"\xa5Error\xb1No cluster leader" + b"\x80")
        assert EMPTY_REPLY == {}

    run(body)


def test_strings_are_str8_and_bytes_are_bin() -> None:
    # Consul's handle (WriteExt) writes the msgpack 2.0 types
    assert pack("k" * 40)[:2] == b"\xd9\x28"
    assert pack(b"\x00\x01")[:2] == b"\xc4\x02"


def test_objects_split_across_reads_and_back_to_back() -> None:
    async def body() -> None:
        data = pack({"ServiceMethod": "KVS.Get", "Seq": 9}) + pack(
            {"Key": "a/b", "Value": b"\xff\x00", "Flags": 2**64 - 1})
        codec = MsgpackCodec(ScriptedConn(data, step=1))
        assert await codec.read_request_header() == ("KVS.Get", 9)
        assert await codec.read_object() == {"Key": "a/b", "Value": b"\xff\x00",
                                             "Flags": 2**64 - 1}
        with pytest.raises(EOFError):
            await codec.read_object()

    run(body)


def test_initial_bytes_are_read_first() -> None:
    async def body() -> None:
        data = pack({"ServiceMethod": "Status.Leader", "Seq": 1}) + pack({})
        codec = MsgpackCodec(ScriptedConn(data[3:], step=7), initial=data[:3])
        assert await codec.read_request_header() == ("Status.Leader", 1)
        assert await codec.read_object() == {}

    run(body)


def test_old_raw_strings_with_binary_survive() -> None:
    async def body() -> None:
        # the pre-WriteExt handle writes []byte as a raw str
        raw = msgpack.packb({"Value": b"\xff\xfe"}, use_bin_type=False)
        codec = MsgpackCodec(ScriptedConn(raw, step=64))
        value = (await codec.read_object())["Value"]
        assert value.encode("utf-8", "surrogateescape") == b"\xff\xfe"

    run(body)


def test_eof_inside_an_object_is_a_codec_error() -> None:
    async def body() -> None:
        data = pack({"ServiceMethod": "KVS.Get", "Seq": 9})
        codec = MsgpackCodec(ScriptedConn(data[:-2], step=4))
        with pytest.raises(CodecError, match="unexpected EOF"):
            await codec.read_object()

    run(body)


def test_header_that_is_not_a_map_is_refused() -> None:
    async def body() -> None:
        codec = MsgpackCodec(ScriptedConn(pack([1, 2]), step=16))
        with pytest.raises(CodecError):
            await codec.read_request_header()

    run(body)


def test_oversized_object_is_refused() -> None:
    async def body() -> None:
        data = pack({"Value": b"x" * 5000})
        codec = MsgpackCodec(ScriptedConn(data, step=1024), max_object_size=1024)
        with pytest.raises(CodecError, match="size limit"):
            await codec.read_object()

    run(body)


def test_response_round_trip() -> None:
    async def body() -> None:
        out = ScriptedConn(b"")
        await MsgpackCodec(out).write_response("Status.Leader", 4, "", "10.0.0.1:8300")
        reader = MsgpackCodec(ScriptedConn(bytes(out.written), step=3))
        assert await reader.read_response() == ("Status.Leader", 4, "", "10.0.0.1:8300")

    run(body)

"""net/rpc calls in msgpack, as hashicorp/net-rpc-msgpackrpc frames them over a stream.

A request is two msgpack objects back to back: the header `{"ServiceMethod": "KVS.Apply",
"Seq": 7}` (Go's rpc.Request; its unexported field is never encoded) and then the arguments.
A response is the header `{"ServiceMethod", "Seq", "Error"}` and then the reply; when Error is
not empty the reply is Go's `struct{}{}`, an empty map, which the caller discards. There is no
length prefix: objects are delimited by msgpack itself.

Encoding follows Consul's structs.MsgpackHandle (go-msgpack with `WriteExt: true`): strings are
msgpack str (str8 included) and byte slices msgpack bin. Decoding gives str for str and bytes
for bin; a peer that still writes []byte as raw str (the older handle, decoded there with
`RawToString`) yields str whose undecodable bytes survive as surrogate escapes, so nothing is
refused and `s.encode("utf-8", "surrogateescape")` gets the bytes back.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import msgpack

from proconsul.rpc.errors import CodecError

#: bytes read from the connection per refill
_READ_CHUNK = 64 * 1024
#: the largest single msgpack object accepted (a Raft-sized KV write is far below this)
MAX_OBJECT_SIZE = 64 * 1024 * 1024

#: Go's `struct{}{}`: what net/rpc sends as the reply body of a failed call
EMPTY_REPLY: dict[str, Any] = {}


class Conn(Protocol):
    """A byte stream the codec runs over: a yamux Stream, or a plain TCP connection."""

    async def read(self, n: int = -1) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class TCPConn:
    """A plain asyncio connection in the shape of `Conn` (for RPCConsul connections)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read(self, n: int = -1) -> bytes:
        return await self.reader.read(n)

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


def _packer() -> msgpack.Packer:
    return msgpack.Packer(use_bin_type=True, datetime=True)


def pack(obj: Any) -> bytes:
    """One object in Consul's msgpack handle."""
    out: bytes = _packer().pack(obj)
    return out


class MsgpackCodec:
    """Reads and writes net/rpc headers and bodies on one connection; one call at a time in
    each direction, as net/rpc serves a codec."""

    def __init__(self, conn: Conn, initial: bytes = b"",
                 max_object_size: int = MAX_OBJECT_SIZE) -> None:
        self.conn = conn
        self._packer = _packer()
        self._unpacker = msgpack.Unpacker(
            raw=False, strict_map_key=False, unicode_errors="surrogateescape",
            max_buffer_size=max_object_size,
        )
        #: bytes fed so far; the unpacker's tell() below it means an object is half-read
        self._fed = 0
        #: stream offset just past the last whole object read
        self._consumed = 0
        if initial:
            self._feed(initial)

    def _feed(self, data: bytes) -> None:
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull:
            raise CodecError("msgpack object exceeds the size limit") from None
        self._fed += len(data)

    async def read_object(self) -> Any:
        """The next msgpack object; EOFError when the peer closed between objects,
        CodecError when it closed inside one or sent bytes that are not msgpack."""
        unpacker = self._unpacker
        while True:
            try:
                obj = unpacker.unpack()
            except msgpack.OutOfData:
                pass
            except (ValueError, TypeError, msgpack.UnpackException) as exc:
                raise CodecError(f"msgpack decode error: {exc}") from None
            else:
                self._consumed = unpacker.tell()
                return obj
            data = await self.conn.read(_READ_CHUNK)
            if not data:
                if self._fed > self._consumed:
                    raise CodecError("unexpected EOF")
                raise EOFError("EOF")
            self._feed(data)

    # -- server side ------------------------------------------------------------------------

    async def read_request_header(self) -> tuple[str, int]:
        header = await self.read_object()
        if not isinstance(header, dict):
            raise CodecError(f"rpc: request header is a {type(header).__name__}, not a map")
        method = header.get("ServiceMethod", "")
        seq = header.get("Seq", 0)
        if not isinstance(method, str) or not isinstance(seq, int):
            raise CodecError("rpc: malformed request header")
        return method, seq

    async def write_response(self, method: str, seq: int, error: str, body: Any) -> None:
        packer = self._packer
        data = packer.pack({"ServiceMethod": method, "Seq": seq, "Error": error})
        data += packer.pack(EMPTY_REPLY if error else body)
        await self.conn.write(data)

    # -- client side ------------------------------------------------------------------------

    async def write_request(self, method: str, seq: int, body: Any) -> None:
        packer = self._packer
        data = packer.pack({"ServiceMethod": method, "Seq": seq})
        data += packer.pack(body)
        await self.conn.write(data)

    async def read_response(self) -> tuple[str, int, str, Any]:
        """(ServiceMethod, Seq, Error, reply) of the next response."""
        header = await self.read_object()
        if not isinstance(header, dict):
            raise CodecError(f"rpc: response header is a {type(header).__name__}, not a map")
        body = await self.read_object()
        method = header.get("ServiceMethod", "")
        seq = header.get("Seq", 0)
        error = header.get("Error", "") or ""
        if not isinstance(seq, int) or not isinstance(error, str):
            raise CodecError("rpc: malformed response header")
        return str(method), seq, error, body

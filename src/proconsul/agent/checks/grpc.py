"""gRPC health and H2PING checks over a minimal HTTP/2 client.

Both checks need only a sliver of HTTP/2: the connection preface, SETTINGS/PING handling and,
for gRPC, one request stream. A full HTTP/2 or gRPC stack would be a heavy dependency for
that, so the framing is done here. The request headers are sent as HPACK literals (no
compression state to keep); responses are judged by their DATA and frame flow, never by
decoding the server's HPACK block, which is why a failed RPC's `grpc-message` is not echoed.
Output texts follow Consul's: `gRPC check <target>: success`, `gRPC <target> serving status:
NOT_SERVING`, `HTTP2 ping was successful`, `HTTP2 ping failed: <err>`.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import struct

from .monitor import IntervalCheck
from .tcp import close_writer, go_dial_error, split_host_port, tls_client_context

DEFAULT_TIMEOUT = 10.0

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
FLAG_END_STREAM, FLAG_ACK, FLAG_END_HEADERS = 0x1, 0x1, 0x4
#: a frame bigger than this is not a health answer (the default SETTINGS_MAX_FRAME_SIZE)
_MAX_FRAME = 1 << 14
HEALTH_PATH = "/grpc.health.v1.Health/Check"
SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


class H2Error(Exception):
    """The connection or stream failed; the text is what lands in the check Output."""


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + \
        struct.pack(">I", stream & 0x7FFFFFFF) + payload


def _hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _hpack_str(text: str) -> bytes:
    raw = text.encode()
    return _hpack_int(len(raw), 7, 0) + raw


def _literal(index: int, value: str) -> bytes:
    """Literal header field without indexing, name taken from the static table."""
    return _hpack_int(index, 4, 0) + _hpack_str(value)


def grpc_request_headers(authority: str, tls: bool) -> bytes:
    return b"".join((
        b"\x83",                      # :method POST
        b"\x87" if tls else b"\x86",  # :scheme https / http
        _literal(4, HEALTH_PATH),     # :path
        _literal(1, authority),       # :authority
        _literal(31, "application/grpc"),
        b"\x00" + _hpack_str("te") + _hpack_str("trailers"),
    ))


def health_request(service: str) -> bytes:
    raw = service.encode()
    body = b"\x0a" + _varint(len(raw)) + raw if raw else b""
    return b"\x00" + struct.pack(">I", len(body)) + body


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def parse_health_response(message: bytes) -> int:
    """Pull `status` (field 1, varint) out of a HealthCheckResponse; absent means UNKNOWN."""
    pos, status = 0, 0
    while pos < len(message):
        key, pos = _read_varint(message, pos)
        field_no, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(message, pos)
            if field_no == 1:
                status = value
        elif wire == 2:
            length, pos = _read_varint(message, pos)
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise H2Error("malformed health response")
    return status


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if pos >= len(data):
            raise H2Error("malformed health response")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


class H2Connection:
    """One client connection: preface, SETTINGS acknowledgement, then frame by frame."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, addr: str, use_tls: bool, skip_verify: bool,
                   server_name: str) -> H2Connection:
        host, port = split_host_port(addr)
        ctx: ssl.SSLContext | None = None
        if use_tls:
            ctx = tls_client_context(skip_verify)
            ctx.set_alpn_protocols(["h2"])
        try:
            reader, writer = await asyncio.open_connection(
                host, port, ssl=ctx, server_hostname=(server_name or host) if ctx else None)
        except (OSError, ssl.SSLError) as exc:
            raise H2Error(go_dial_error("tcp", addr, exc)) from None
        conn = cls(reader, writer)
        writer.write(PREFACE + frame(SETTINGS, 0, 0))
        await writer.drain()
        return conn

    async def close(self) -> None:
        await close_writer(self.writer)

    async def read_frame(self) -> tuple[int, int, int, bytes]:
        """The next frame the caller cares about; connection chores are answered inline."""
        while True:
            try:
                head = await self.reader.readexactly(9)
                length = int.from_bytes(head[:3], "big")
                if length > _MAX_FRAME:
                    raise H2Error(f"frame too large ({length} bytes)")
                payload = await self.reader.readexactly(length)
            except asyncio.IncompleteReadError:
                raise H2Error("connection closed by peer") from None
            kind, flags = head[3], head[4]
            stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
            if kind == SETTINGS and not flags & FLAG_ACK:
                self.writer.write(frame(SETTINGS, FLAG_ACK, 0))
                continue
            if kind == PING and not flags & FLAG_ACK:
                self.writer.write(frame(PING, FLAG_ACK, 0, payload))
                continue
            if kind == GOAWAY:
                code = int.from_bytes(payload[4:8], "big") if len(payload) >= 8 else 0
                raise H2Error(f"connection closed by server (GOAWAY, error code {code})")
            return kind, flags, stream, payload


async def h2_ping(conn: H2Connection) -> None:
    token = os.urandom(8)
    conn.writer.write(frame(PING, 0, 0, token))
    await conn.writer.drain()
    while True:
        kind, flags, _, payload = await conn.read_frame()
        if kind == PING and flags & FLAG_ACK and payload == token:
            return


async def grpc_health_check(conn: H2Connection, authority: str, service: str,
                            tls: bool) -> int:
    """Send one Health/Check on stream 1 and return the serving status it answered."""
    conn.writer.write(frame(HEADERS, FLAG_END_HEADERS, 1, grpc_request_headers(authority, tls)))
    conn.writer.write(frame(DATA, FLAG_END_STREAM, 1, health_request(service)))
    await conn.writer.drain()
    body = bytearray()
    while True:
        kind, flags, stream, payload = await conn.read_frame()
        if stream != 1:
            continue
        if kind == RST_STREAM:
            code = int.from_bytes(payload[:4], "big") if len(payload) >= 4 else 0
            raise H2Error(f"rpc error: stream reset by server (error code {code})")
        if kind == DATA:
            body += payload
        if kind in (DATA, HEADERS) and flags & FLAG_END_STREAM:
            break
    if len(body) < 5:
        raise H2Error("rpc error: the server answered without a health response")
    if body[0]:
        raise H2Error("rpc error: compressed health responses are not accepted")
    length = int.from_bytes(body[1:5], "big")
    return parse_health_response(bytes(body[5:5 + length]))


class GRPCCheck(IntervalCheck):
    """Passing only when the standard health service answers SERVING."""

    default_timeout = DEFAULT_TIMEOUT

    async def probe(self) -> tuple[str, str]:
        target = self.defn.grpc
        addr, _, service = target.partition("/")
        conn: H2Connection | None = None
        try:
            async with asyncio.timeout(self.timeout):
                conn = await H2Connection.open(addr, self.defn.grpc_use_tls,
                                               self.defn.tls_skip_verify,
                                               self.defn.tls_server_name)
                status = await grpc_health_check(conn, addr, service,
                                                 self.defn.grpc_use_tls)
        except TimeoutError:
            return "critical", "context deadline exceeded"
        except (H2Error, ValueError, OSError, ssl.SSLError) as exc:
            return "critical", str(exc)
        finally:
            if conn is not None:
                await conn.close()
        if status != 1:
            name = SERVING_STATUS.get(status, str(status))
            return "critical", f"gRPC {target} serving status: {name}"
        return "passing", f"gRPC check {target}: success"


class H2PingCheck(IntervalCheck):
    """Passing when an HTTP/2 PING round-trips (TLS with ALPN h2, or h2c prior knowledge)."""

    default_timeout = DEFAULT_TIMEOUT

    async def probe(self) -> tuple[str, str]:
        target = self.defn.h2ping
        conn: H2Connection | None = None
        try:
            async with asyncio.timeout(self.timeout):
                try:
                    conn = await H2Connection.open(target, self.defn.h2ping_use_tls,
                                                   self.defn.tls_skip_verify,
                                                   self.defn.tls_server_name)
                except (H2Error, ValueError) as exc:
                    return "critical", f"Failed to dial to {target}: {exc}"
                await h2_ping(conn)
        except TimeoutError:
            return "critical", "HTTP2 ping failed: context deadline exceeded"
        except (H2Error, OSError, ssl.SSLError) as exc:
            return "critical", f"HTTP2 ping failed: {exc}"
        finally:
            if conn is not None:
                await conn.close()
        return "passing", "HTTP2 ping was successful"

"""gRPC health and H2PING checks against a local HTTP/2 peer.

The peer below speaks just enough HTTP/2 (prior knowledge) to answer PINGs and the standard
health RPC, so these tests run without a gRPC runtime; when `grpcio` and
`grpcio-health-checking` are installed, the same check is also run against a real server.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading

import pytest

from proconsul.agent.checks import CheckDefinition, make_runner
from proconsul.agent.checks.grpc import (
    DATA,
    FLAG_ACK,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    HEADERS,
    PING,
    PREFACE,
    SETTINGS,
    GRPCCheck,
    H2PingCheck,
    frame,
)

from .test_check_rules import Recorder

STATUS_BY_SERVICE = {b"": 1, b"web": 1, b"bad": 2}


async def h2_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        assert await reader.readexactly(len(PREFACE)) == PREFACE
        writer.write(frame(SETTINGS, 0, 0))
        request = bytearray()
        while True:
            head = await reader.readexactly(9)
            payload = await reader.readexactly(int.from_bytes(head[:3], "big"))
            kind, flags = head[3], head[4]
            if kind == PING and not flags & FLAG_ACK:
                writer.write(frame(PING, FLAG_ACK, 0, payload))
            elif kind == DATA:
                request += payload
                if flags & FLAG_END_STREAM:
                    service = bytes(request[7:])  # 5-byte gRPC prefix, tag, length
                    status = STATUS_BY_SERVICE.get(service, 3)
                    msg = b"\x08" + bytes((status,))
                    writer.write(frame(HEADERS, FLAG_END_HEADERS, 1, b"\x88"))
                    writer.write(frame(DATA, 0, 1, b"\x00" + struct.pack(">I", len(msg)) + msg))
                    trailer = b"\x00\x0bgrpc-status\x010"
                    writer.write(frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, trailer))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


def _probe_all(targets: list[str], h2ping: bool = False) -> list[tuple[str, str]]:
    async def main() -> list[tuple[str, str]]:
        server = await asyncio.start_server(h2_peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        out = []
        try:
            for t in targets:
                t = t.replace("PORT", str(port))
                if h2ping:
                    defn = CheckDefinition("h", "h", h2ping=t, h2ping_use_tls=False, interval=1,
                                           timeout=2)
                    out.append(await H2PingCheck(defn, Recorder()).run_once())
                else:
                    defn = CheckDefinition("g", "g", grpc=t, interval=1, timeout=2)
                    out.append(await GRPCCheck(defn, Recorder()).run_once())
        finally:
            server.close()
        return out

    return asyncio.run(main())


def test_grpc_serving_not_serving_and_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    ok, named, bad, unknown, refused = _probe_all(
        ["127.0.0.1:PORT", "127.0.0.1:PORT/web", "127.0.0.1:PORT/bad", "127.0.0.1:PORT/zzz",
         f"127.0.0.1:{dead}"])
    assert ok[0] == "passing" and ok[1].startswith("gRPC check 127.0.0.1:")
    assert ok[1].endswith(": success")
    assert named[0] == "passing" and named[1].endswith("/web: success")
    assert bad[0] == "critical" and bad[1].endswith("/bad serving status: NOT_SERVING")
    assert unknown[0] == "critical" and unknown[1].endswith("serving status: SERVICE_UNKNOWN")
    assert refused == ("critical", f"dial tcp 127.0.0.1:{dead}: connect: connection refused")


def test_h2ping_success_and_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    ok, refused = _probe_all(["127.0.0.1:PORT", f"127.0.0.1:{dead}"], h2ping=True)
    assert ok == ("passing", "HTTP2 ping was successful")
    assert refused == ("critical", f"Failed to dial to 127.0.0.1:{dead}: dial tcp "
                                   f"127.0.0.1:{dead}: connect: connection refused")


def test_grpc_against_a_timeout() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.sleep(2)
        finally:
            writer.close()

    async def main() -> tuple[str, str]:
        server = await asyncio.start_server(mute, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            defn = CheckDefinition("g", "g", grpc=f"127.0.0.1:{port}", interval=1, timeout=0.3)
            return await GRPCCheck(defn, Recorder()).run_once()
        finally:
            server.close()

    assert asyncio.run(main()) == ("critical", "context deadline exceeded")


def test_factory_builds_grpc_and_h2ping() -> None:
    rec = Recorder()
    assert isinstance(make_runner(CheckDefinition("g", "g", grpc="h:1", interval=5), rec,
                                  enable_script_checks=False), GRPCCheck)
    assert isinstance(make_runner(CheckDefinition("h", "h", h2ping="h:1", interval=5), rec,
                                  enable_script_checks=False), H2PingCheck)


def test_grpc_against_grpcio_when_installed() -> None:
    grpc = pytest.importorskip("grpc")
    health = pytest.importorskip("grpc_health.v1.health")
    health_pb2 = pytest.importorskip("grpc_health.v1.health_pb2")
    health_pb2_grpc = pytest.importorskip("grpc_health.v1.health_pb2_grpc")
    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("bad", health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stopped = threading.Event()
    try:
        async def main() -> list[tuple[str, str]]:
            out = []
            for t in (f"127.0.0.1:{port}", f"127.0.0.1:{port}/bad"):
                defn = CheckDefinition("g", "g", grpc=t, interval=1, timeout=2)
                out.append(await GRPCCheck(defn, Recorder()).run_once())
            defn = CheckDefinition("h", "h", h2ping=f"127.0.0.1:{port}", h2ping_use_tls=False,
                                   interval=1, timeout=2)
            out.append(await H2PingCheck(defn, Recorder()).run_once())
            return out

        ok, bad, ping = asyncio.run(main())
    finally:
        server.stop(0)
        stopped.set()
    assert ok == ("passing", f"gRPC check 127.0.0.1:{port}: success")
    assert bad == ("critical", f"gRPC 127.0.0.1:{port}/bad serving status: NOT_SERVING")
    assert ping == ("passing", "HTTP2 ping was successful")

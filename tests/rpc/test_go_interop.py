"""Interoperability with the Go libraries Consul's RPC layer is made of: hashicorp/yamux,
hashicorp/net-rpc-msgpackrpc and go-msgpack, driven by tests/rpc/go_peer as Consul's pool and
server drive them. Built with the Go toolchain and the Debian packages of those libraries
(golang-go, golang-github-hashicorp-yamux-dev, golang-github-hashicorp-net-rpc-msgpackrpc-dev);
skipped where they are not installed."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from proconsul.errors import NoLeader
from proconsul.rpc.codec import MsgpackCodec, TCPConn
from proconsul.rpc.errors import RemoteError
from proconsul.rpc.pool import ConnPool, split_address
from proconsul.rpc.server import RPCServer
from proconsul.rpc.types import RPCType

GOPATH = Path("/usr/share/gocode")
SOURCE = Path(__file__).parent / "go_peer"
LIBRARIES = ("github.com/hashicorp/yamux", "github.com/hashicorp/net-rpc-msgpackrpc",
             "github.com/hashicorp/go-msgpack/codec")
DEADLINE = 60.0


@pytest.fixture(scope="module")
def go_peer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None or not all((GOPATH / "src" / lib).is_dir() for lib in LIBRARIES):
        pytest.skip("the Go toolchain or the Debian packages of yamux/msgpackrpc are missing")
    out = tmp_path_factory.mktemp("go_peer") / "go_peer"
    env = {**os.environ, "GOPATH": str(GOPATH), "GO111MODULE": "off", "GOFLAGS": ""}
    if "HOME" not in env:
        env["GOCACHE"] = str(tmp_path_factory.mktemp("gocache"))
    built = subprocess.run([go, "build", "-o", str(out), "."], cwd=SOURCE, env=env,
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    return out


def run(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        async with asyncio.timeout(120):
            await coro()

    asyncio.run(main())


async def _echo(args: Any) -> Any:
    return args


async def _fail(args: Any) -> Any:
    raise NoLeader()


def test_go_client_calls_our_server(go_peer: Path) -> None:
    async def body() -> None:
        srv = RPCServer()
        srv.register("Test.Echo", _echo)
        srv.register("Test.Fail", _fail)
        await srv.start("127.0.0.1", 0)
        host, port = srv.address
        try:
            proc = await asyncio.create_subprocess_exec(
                str(go_peer), "client", f"{host}:{port}", "300",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            try:
                async with asyncio.timeout(DEADLINE):
                    out, err = await proc.communicate()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            assert proc.returncode == 0, err.decode()
            result = json.loads(out)
            assert result["errors"] is None, result["errors"][:5]
            assert result["ok"] == 300
            assert result["big"] is True
            assert result["fail_error"] == "No cluster leader"
            assert result["ping_ok"] is True
        finally:
            await srv.stop()

    run(body)


def test_our_pool_calls_a_go_server(go_peer: Path) -> None:
    async def body() -> None:
        proc = await asyncio.create_subprocess_exec(
            str(go_peer), "server", stdout=asyncio.subprocess.PIPE)
        pool = ConnPool()
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(DEADLINE):
                line = (await proc.stdout.readline()).decode().split()
            assert line[0] == "LISTEN"
            addr = line[1]
            args = {"Datacenter": "dc1", "Key": "k", "Value": b"\x00\xff", "Seq": 7}
            assert await pool.rpc(addr, "Test.Echo", args, 10) == args
            blob = bytes(i % 251 for i in range(3 * 1024 * 1024 + 7))
            reply = await pool.rpc(addr, "Test.Echo", {"Key": "big", "Value": blob}, 30)
            assert reply["Value"] == blob
            with pytest.raises(RemoteError) as err:
                await pool.rpc(addr, "Test.Fail", {}, 10)
            assert str(err.value) == "No cluster leader"
            with pytest.raises(RemoteError) as err:
                await pool.rpc(addr, "Test.Nope", {}, 10)
            assert str(err.value) == "rpc: can't find method Test.Nope"
            replies = await asyncio.gather(
                *(pool.rpc(addr, "Test.Echo", {"Seq": i}, 30) for i in range(300)))
            assert [r["Seq"] for r in replies] == list(range(300))
            assert pool.num_sessions() == 1
            assert await pool.ping(addr) is False  # the Go peer serves no Status endpoint

            # the plain RPCConsul framing against Go's server loop
            host, port = split_address(addr)
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(bytes((RPCType.CONSUL,)))
                codec = MsgpackCodec(TCPConn(reader, writer))
                for seq in (1, 2):
                    await codec.write_request("Test.Echo", seq, {"Key": f"p{seq}"})
                    method, got_seq, error, body = await codec.read_response()
                    assert (method, got_seq, error, body["Key"]) == ("Test.Echo", seq, "",
                                                                     f"p{seq}")
            finally:
                writer.close()
                await writer.wait_closed()
        finally:
            await pool.shutdown()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    run(body)

"""Every probing check against a real local target started by the test.

Targets bind 127.0.0.1 with OS-chosen ports so the suite runs in parallel and offline; each
test drives probes directly (`run_once`) so it does not wait for the staggered schedule.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest

from proconsul.agent.checks import (
    CheckDefinition,
    DockerCheck,
    HTTPCheck,
    ScriptCheck,
    TCPCheck,
    ThresholdSink,
    UDPCheck,
    make_runner,
)

from .test_check_rules import Recorder

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    method, path, _ = head[0].split(" ", 2)
    headers = {}
    for line in head[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return method, path, headers, body


def _reply(writer: asyncio.StreamWriter, code: int, reason: str, body: bytes,
           extra: str = "") -> None:
    writer.write(f"HTTP/1.1 {code} {reason}\r\nContent-Length: {len(body)}\r\n{extra}"
                 "Connection: close\r\n\r\n".encode() + body)


async def http_target(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        method, path, headers, body = await _read_request(reader)
        if path == "/ok":
            _reply(writer, 200, "OK", b"hello")
        elif path == "/busy":
            _reply(writer, 429, "Too Many Requests", b"slow down")
        elif path == "/err":
            _reply(writer, 500, "Internal Server Error", b"broken")
        elif path == "/redir":
            _reply(writer, 302, "Found", b"", "Location: /ok\r\n")
        elif path.startswith("/loop"):
            n = int(path[5:] or "0")
            _reply(writer, 302, "Found", b"", f"Location: /loop{n + 1}\r\n")
        elif path == "/post-redir":
            _reply(writer, 303, "See Other", b"", "Location: /echo\r\n")
        elif path == "/slow":
            await asyncio.sleep(3)
            _reply(writer, 200, "OK", b"late")
        elif path == "/big":
            _reply(writer, 200, "OK", b"a" * 100 + b"z" * 50)
        elif path == "/chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        elif path == "/echo":
            doc = {"method": method, "headers": headers, "body": body.decode()}
            _reply(writer, 200, "OK", orjson.dumps(doc))
        else:
            _reply(writer, 404, "Not Found", b"nope")
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        await finish(writer)


async def finish(writer: asyncio.StreamWriter) -> None:
    """Close and wait, so no server-side socket outlives the test's event loop."""
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, ssl.SSLError):
        pass


async def serve(handler: Handler, ssl_ctx: ssl.SSLContext | None = None
                ) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_ctx)
    port = server.sockets[0].getsockname()[1]
    return server, port


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_check(url: str, **kw: object) -> HTTPCheck:
    return HTTPCheck(CheckDefinition("web", "web", http=url, interval=10, **kw),  # type: ignore[arg-type]
                     Recorder())


def test_http_status_mapping_and_output() -> None:
    async def main() -> list[tuple[str, str]]:
        server, port = await serve(http_target)
        base = f"http://127.0.0.1:{port}"
        try:
            return [await http_check(base + p).run_once()
                    for p in ("/ok", "/busy", "/err", "/redir", "/chunked", "/missing")]
        finally:
            server.close()
            await server.wait_closed()

    res = asyncio.run(main())
    port_text = res[0][1].split("127.0.0.1:")[1].split("/")[0]
    base = f"http://127.0.0.1:{port_text}"
    assert res[0] == ("passing", f"HTTP GET {base}/ok: 200 OK Output: hello")
    assert res[1] == ("warning", f"HTTP GET {base}/busy: 429 Too Many Requests Output: slow down")
    assert res[2] == ("critical", f"HTTP GET {base}/err: 500 Internal Server Error Output: broken")
    assert res[3] == ("passing", f"HTTP GET {base}/redir: 200 OK Output: hello")
    assert res[4] == ("passing", f"HTTP GET {base}/chunked: 200 OK Output: hello world")
    assert res[5][0] == "critical" and "404 Not Found" in res[5][1]


def test_http_redirect_rules() -> None:
    async def main() -> list[tuple[str, str]]:
        server, port = await serve(http_target)
        base = f"http://127.0.0.1:{port}"
        try:
            return [
                await http_check(base + "/redir", disable_redirects=True).run_once(),
                await http_check(base + "/loop").run_once(),
                await http_check(base + "/post-redir", method="post", body="x").run_once(),
            ]
        finally:
            server.close()
            await server.wait_closed()

    no_follow, loop, post = asyncio.run(main())
    assert no_follow[0] == "critical" and ": 302 Found Output: " in no_follow[1]
    assert loop[0] == "critical"
    assert loop[1].startswith("Get \"http://127.0.0.1:") and "/loop10\": " in loop[1]
    assert loop[1].endswith(
        ": stopped after 10 redirects")
    assert post[0] == "passing"
    echoed = orjson.loads(post[1].split(" Output: ", 1)[1])
    assert echoed["method"] == "GET" and echoed["body"] == ""  # 303 turns POST into GET
    assert post[1].startswith("HTTP POST ")


def test_http_method_headers_body_and_defaults() -> None:
    async def main() -> tuple[tuple[str, str], tuple[str, str]]:
        server, port = await serve(http_target)
        url = f"http://127.0.0.1:{port}/echo"
        try:
            custom = await http_check(url, method="PUT", body='{"a":1}',
                                      header={"X-Token": ["abc"], "Accept": ["json"]}).run_once()
            plain = await http_check(url).run_once()
            return custom, plain
        finally:
            server.close()
            await server.wait_closed()

    custom, plain = asyncio.run(main())
    doc = orjson.loads(custom[1].split(" Output: ", 1)[1])
    assert doc["method"] == "PUT" and doc["body"] == '{"a":1}'
    assert doc["headers"]["x-token"] == "abc" and doc["headers"]["accept"] == "json"
    assert doc["headers"]["user-agent"] == "Consul Health Check"
    assert doc["headers"]["connection"] == "close"
    plain_doc = orjson.loads(plain[1].split(" Output: ", 1)[1])
    assert plain_doc["headers"]["accept"] == "text/plain, text/*, */*"
    assert "content-length" not in plain_doc["headers"]


def test_http_body_capped_to_output_max_size() -> None:
    async def main() -> tuple[str, str]:
        server, port = await serve(http_target)
        try:
            return await http_check(f"http://127.0.0.1:{port}/big", output_max_size=60).run_once()
        finally:
            server.close()
            await server.wait_closed()

    status, output = asyncio.run(main())
    assert status == "passing"
    assert output.endswith("Output: " + "a" * 10 + "z" * 50)


def test_http_timeout_and_refused() -> None:
    async def main() -> tuple[tuple[str, str], tuple[str, str], float]:
        server, port = await serve(http_target)
        try:
            started = time.monotonic()
            slow = await http_check(f"http://127.0.0.1:{port}/slow", timeout=0.3).run_once()
            took = time.monotonic() - started
        finally:
            server.close()
            await server.wait_closed()
        refused_port = closed_port()
        refused = await http_check(f"http://127.0.0.1:{refused_port}/").run_once()
        return slow, refused, took

    slow, refused, took = asyncio.run(main())
    assert slow[0] == "critical" and took < 1.5
    assert "context deadline exceeded (Client.Timeout exceeded while awaiting headers)" in slow[1]
    assert refused[0] == "critical"
    assert refused[1].startswith('Get "http://127.0.0.1:')
    assert refused[1].endswith(": connect: connection refused")
    assert ": dial tcp 127.0.0.1:" in refused[1]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("openssl is not available to make a test certificate")
    return str(cert), str(key)


def test_https_and_tcp_tls(tls_files: tuple[str, str]) -> None:
    cert, key = tls_files
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)

    async def main() -> list[tuple[str, str]]:
        server, port = await serve(http_target, server_ctx)
        try:
            return [
                await http_check(f"https://127.0.0.1:{port}/ok", tls_skip_verify=True).run_once(),
                await http_check(f"https://127.0.0.1:{port}/ok").run_once(),
                await TCPCheck(CheckDefinition("t", "t", tcp=f"127.0.0.1:{port}", interval=1,
                                               tcp_use_tls=True, tls_skip_verify=True),
                               Recorder()).run_once(),
            ]
        finally:
            server.close()
            await server.wait_closed()

    skip, verify, tcp_tls = asyncio.run(main())
    assert skip[0] == "passing" and skip[1].endswith(": 200 OK Output: hello")
    assert verify[0] == "critical" and "certificate" in verify[1]
    assert tcp_tls[0] == "passing" and tcp_tls[1].startswith("TCP+TLS connect 127.0.0.1:")


def test_tcp_listener_then_closed() -> None:
    async def main() -> tuple[tuple[str, str], tuple[str, str]]:
        server, port = await serve(http_target)
        check = TCPCheck(CheckDefinition("t", "t", tcp=f"127.0.0.1:{port}", interval=1),
                         Recorder())
        up = await check.run_once()
        server.close()
        await server.wait_closed()
        down = await check.run_once()
        return up, down

    up, down = asyncio.run(main())
    addr = up[1].split(" ")[2][:-1]
    assert up == ("passing", f"TCP connect {addr}: Success")
    assert down == ("critical", f"dial tcp {addr}: connect: connection refused")


def test_udp_echo_silence_and_refused() -> None:
    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            assert isinstance(self.transport, asyncio.DatagramTransport)
            self.transport.sendto(b"pong", addr)

    async def main() -> list[tuple[str, str]]:
        loop = asyncio.get_running_loop()
        echo, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))
        try:
            targets = [echo.get_extra_info("sockname")[1], silent.getsockname()[1],
                       closed_port()]
            return [await UDPCheck(CheckDefinition("u", "u", udp=f"127.0.0.1:{p}", interval=1,
                                                   timeout=0.3), Recorder()).run_once()
                    for p in targets]
        finally:
            echo.close()
            silent.close()

    echo, silent, refused = asyncio.run(main())
    assert echo[0] == "passing" and echo[1].startswith("UDP connect 127.0.0.1:")
    assert echo[1].endswith(": Success")
    assert silent[0] == "passing"  # silence is not failure for UDP, as in Consul
    assert refused[0] == "critical" and refused[1].endswith("read: connection refused")


def script(args: list[str], **kw: object) -> ScriptCheck:
    return ScriptCheck(CheckDefinition("s", "s", args=args, interval=1, **kw),  # type: ignore[arg-type]
                       Recorder())


def test_script_exit_codes_and_output() -> None:
    async def main() -> list[tuple[str, str]]:
        return [
            await script(["/bin/sh", "-c", "echo fine"]).run_once(),
            await script(["/bin/sh", "-c", "echo careful >&2; exit 1"]).run_once(),
            await script(["/bin/sh", "-c", "echo out; echo err >&2; exit 2"]).run_once(),
            await script(["/bin/sh", "-c", "printf 'x%.0s' $(seq 1 30); printf END"],
                         output_max_size=10).run_once(),
            await script(["no-such-plugin-here"]).run_once(),
        ]

    ok, warn, crit, capped, missing = asyncio.run(main())
    assert ok == ("passing", "fine\n")
    assert warn == ("warning", "careful\n")
    assert crit == ("critical", "out\nerr\n")
    assert capped == ("passing", "Captured 10 of 33 bytes\n...\nxxxxxxxEND")
    assert missing == ("critical",
                       'exec: "no-such-plugin-here": executable file not found in $PATH')


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie awaiting its reaper is dead for our purposes
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


def test_script_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    argv = ["/bin/sh", "-c", f"echo started; sleep 30 & echo $! > {pidfile}; wait"]

    async def main() -> tuple[tuple[str, str], float]:
        started = time.monotonic()
        result = await script(argv, timeout=0.5).run_once()
        return result, time.monotonic() - started

    (status, output), took = asyncio.run(main())
    assert status == "critical"
    assert output == "Timed out (500ms) running check\n\nstarted\n"
    assert took < 2.5
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the plugin's child outlived the timeout"


def test_script_stop_kills_an_inflight_run(tmp_path: Path) -> None:
    pidfile = tmp_path / "p.pid"
    rec = Recorder()
    check = ScriptCheck(CheckDefinition("s", "s", interval=10, args=[
        "/bin/sh", "-c", f"echo $$ > {pidfile}; sleep 30"]), rec, first_delay=0.0)

    async def main() -> None:
        check.start()
        for _ in range(100):
            if pidfile.exists() and pidfile.read_text().strip():
                break
            await asyncio.sleep(0.02)
        check.stop()
        await asyncio.sleep(0.3)

    asyncio.run(main())
    assert rec.updates == []  # an abandoned probe reports nothing
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_thresholds_on_a_flapping_http_target() -> None:
    codes = [200, 500, 500, 500, 200, 200]

    async def flapping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        code = codes.pop(0)
        _reply(writer, code, "OK" if code == 200 else "Internal Server Error", b"")
        await writer.drain()
        await finish(writer)

    async def main() -> list[str]:
        server, port = await serve(flapping)
        rec = Recorder()
        check = HTTPCheck(CheckDefinition("f", "f", http=f"http://127.0.0.1:{port}/",
                                          interval=1),
                          ThresholdSink(rec, success_before_passing=2,
                                        failures_before_warning=1, failures_before_critical=3))
        try:
            for _ in range(6):
                await check.run_once()
        finally:
            server.close()
            await server.wait_closed()
        return rec.statuses

    assert asyncio.run(main()) == ["passing", "warning", "warning", "critical", "passing"]


def test_docker_without_a_socket(tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    check = DockerCheck(CheckDefinition("d", "d", docker_container_id="web1", interval=1,
                                        args=["true"]), Recorder(),
                        docker_host=f"unix://{sock}")
    status, output = asyncio.run(check.run_once())
    assert status == "critical"
    assert output == (f'create exec failed for container web1: Post '
                      f'"http://docker/containers/web1/exec": dial unix {sock}: connect: '
                      'no such file or directory')


@pytest.mark.skipif(sys.platform == "win32", reason="unix sockets")
def test_docker_exec_through_the_engine_api(tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    seen: list[tuple[str, str, bytes]] = []

    async def engine(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method, path, _, body = await _read_request(reader)
        seen.append((method, path, body))
        if path == "/containers/web1/exec":
            _reply(writer, 201, "Created", b'{"Id":"ex1"}')
        elif path == "/exec/ex1/start":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream"
                         b"\r\n\r\ndegraded\n")
        elif path == "/exec/ex1/json":
            _reply(writer, 200, "OK", b'{"ExitCode":1}')
        else:
            _reply(writer, 404, "Not Found", b"{}")
        await writer.drain()
        await finish(writer)

    async def main() -> tuple[str, str]:
        server = await asyncio.start_unix_server(engine, path=str(sock))
        try:
            check = DockerCheck(CheckDefinition("d", "d", docker_container_id="web1",
                                                interval=1, args=["/check.sh", "-v"]),
                                Recorder(), docker_host=f"unix://{sock}")
            return await check.run_once()
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(main()) == ("warning", "degraded\n")
    assert [s[:2] for s in seen] == [("POST", "/containers/web1/exec"),
                                     ("POST", "/exec/ex1/start"), ("GET", "/exec/ex1/json")]
    assert orjson.loads(seen[0][2])["Cmd"] == ["/check.sh", "-v"]


def test_many_checks_reach_passing_then_critical() -> None:
    """Hundreds of factory-built HTTP and TCP checks on 1s intervals, staggered by the
    scheduler, all pass against a live target and all go critical once it stops."""

    async def main() -> tuple[set[str], set[str], int]:
        server, port = await serve(http_target)
        rec = Recorder()
        runners = []
        for i in range(300):
            for defn in (CheckDefinition(f"h{i}", "h", http=f"http://127.0.0.1:{port}/ok",
                                         interval=1),
                         CheckDefinition(f"t{i}", "t", tcp=f"127.0.0.1:{port}", interval=1)):
                runners.append(make_runner(defn, rec, enable_script_checks=False))
        for r in runners:
            r.start()
        latest: dict[str, str] = {}
        await asyncio.sleep(1.3)
        for cid, status, _ in rec.updates:
            latest[cid] = status
        up = set(latest.values())
        reported = len(latest)
        server.close()
        await server.wait_closed()
        await asyncio.sleep(1.3)
        for cid, status, _ in rec.updates:
            latest[cid] = status
        for r in runners:
            r.stop()
        return up, set(latest.values()), reported

    up, down, reported = asyncio.run(main())
    assert reported == 600 and up == {"passing"}
    assert down == {"critical"}

"""Unit tests of the CLI's HTTP client: address/token/TLS resolution and Go-worded errors.

A throwaway in-process HTTP server on a free port stands in for the agent where a request must
really be sent (headers, error bodies).
"""

from __future__ import annotations

import base64
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from proconsul.cli.api import APIError, HTTPFlags, StatusError, TransportError
from proconsul.cli.flags import FlagSet


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("CONSUL_"):
            monkeypatch.delenv(name)


def _config(args: list[str]) -> tuple[HTTPFlags, FlagSet]:
    fs = FlagSet()
    http = HTTPFlags(fs)
    fs.parse(args)
    return http, fs


def test_default_address() -> None:
    cfg = _config([])[0].config()
    assert (cfg.scheme, cfg.address, cfg.path_prefix) == ("http", "127.0.0.1:8500", "")


def test_env_then_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "10.1.2.3:8501")
    assert _config([])[0].config().address == "10.1.2.3:8501"
    cfg = _config(["-http-addr=https://consul.example:9443/proxy/path"])[0].config()
    assert (cfg.scheme, cfg.address, cfg.path_prefix) == ("https", "consul.example:9443",
                                                          "/proxy/path")


def test_ssl_env_is_sticky_over_http_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_SSL", "true")
    monkeypatch.setenv("CONSUL_HTTP_SSL_VERIFY", "false")
    cfg = _config(["-http-addr=http://h:1"])[0].config()
    assert cfg.scheme == "https" and cfg.insecure_skip_verify and cfg.address == "h:1"


def test_unix_and_bad_scheme() -> None:
    cfg = _config(["-http-addr=unix:///run/consul.sock"])[0].config()
    assert cfg.unix_path == "/run/consul.sock"
    with pytest.raises(APIError, match="Unknown protocol scheme: ftp"):
        _config(["-http-addr=ftp://h:1"])[0].config()


def test_token_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "env-token")
    assert _config([])[0].config().token == "env-token"
    assert _config(["-token=flag-token"])[0].config().token == "flag-token"
    env_file = tmp_path / "env.token"
    env_file.write_text("  file-from-env\n")
    monkeypatch.setenv("CONSUL_HTTP_TOKEN_FILE", str(env_file))
    # As in the Go client, a token file (flag or environment) wins over a token.
    assert _config(["-token=flag-token"])[0].config().token == "file-from-env"
    flag_file = tmp_path / "flag.token"
    flag_file.write_text("file-from-flag")
    assert _config([f"-token-file={flag_file}"])[0].config().token == "file-from-flag"
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    assert _config([f"-token-file={empty}"])[0].config().token == "env-token"
    with pytest.raises(APIError, match=r"Error loading token file: open .*missing: no such file"):
        _config([f"-token-file={tmp_path / 'missing'}"])[0].config()


def test_url_building(monkeypatch: pytest.MonkeyPatch) -> None:
    http, _ = _config(["-datacenter=dc2", "-http-addr=http://h:1/pre"])
    client = http.client()
    assert client.url("/v1/kv/a b?c", [("stale", ""), ("index", "5")]) == \
        "/pre/v1/kv/a%20b%3Fc?dc=dc2&index=5&stale="
    assert http.datacenter == "dc2" and not http.stale


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:
        _Handler.seen.append({"path": self.path, **{k: v for k, v in self.headers.items()}})
        if self.path.startswith("/v1/status/leader"):
            body = b"No cluster leader"
            self.send_response(500)
        elif self.path.startswith("/v1/kv/missing"):
            body = b""
            self.send_response(404)
            self.send_header("X-Consul-Index", "42")
        else:
            body = b'[{"Key": "k", "Value": "dg==", "Flags": 0}]'
            self.send_response(200)
            self.send_header("X-Consul-Index", "7")
            self.send_header("X-Consul-KnownLeader", "true")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_agent() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_headers_and_meta(fake_agent: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_AUTH", "user:pa:ss")
    _Handler.seen.clear()
    client = _config([f"-http-addr={fake_agent}", "-token=secret"])[0].client()
    pair, meta = client.kv_get("k", stale=True)
    assert pair is not None and pair["Key"] == "k"
    assert meta.last_index == 7 and meta.known_leader
    seen = _Handler.seen[-1]
    assert seen["X-Consul-Token"] == "secret"
    assert seen["Authorization"] == "Basic " + base64.b64encode(b"user:pa:ss").decode()
    assert seen["path"] == "/v1/kv/k?stale="
    missing, meta = client.kv_get("missing")
    assert missing is None and meta.last_index == 42


def test_status_error_text(fake_agent: str) -> None:
    client = _config([f"-http-addr={fake_agent}"])[0].client()
    with pytest.raises(StatusError) as info:
        client.status_leader()
    assert str(info.value) == "Unexpected response code: 500 (No cluster leader)"
    assert info.value.code == 500


def test_connection_refused_text() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = _config([f"-http-addr=127.0.0.1:{port}"])[0].client()
    with pytest.raises(TransportError) as info:
        client.agent_self()
    assert str(info.value) == (f'Get "http://127.0.0.1:{port}/v1/agent/self": dial tcp '
                               f"127.0.0.1:{port}: connect: connection refused")


def test_key_with_leading_slash_is_refused(fake_agent: str) -> None:
    client = _config([f"-http-addr={fake_agent}"])[0].client()
    with pytest.raises(APIError, match=r"Invalid key\. Key must not begin with a ./.: /x"):
        client.kv_put("/x", b"")


def test_cli_surfaces_errors(fake_agent: str, capsys: pytest.CaptureFixture[str]) -> None:
    from proconsul.cli.main import main

    assert main(["kv", "get", f"-http-addr={fake_agent}", "missing"]) == 1
    assert capsys.readouterr().err == "Error! No key exists at: missing\n"
    assert main(["kv", "get", f"-http-addr={fake_agent}", "k"]) == 0
    assert capsys.readouterr().out == "v\n"
    assert main(["watch", f"-http-addr={fake_agent}", "-type=key", "-key=k"]) == 1
    assert capsys.readouterr().err == (
        "Error querying Consul agent: Unexpected response code: 500 (No cluster leader)\n")


# ----------------------------------------------------------------------------------------------
# TLS and unix sockets


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=consul.test", "-addext", "subjectAltName=DNS:consul.test,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def tls_agent(certificate: tuple[Path, Path]) -> Iterator[str]:
    import ssl

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(certificate[0]), str(certificate[1]))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_https_with_ca_file(tls_agent: str, certificate: tuple[Path, Path]) -> None:
    client = _config([f"-http-addr=https://{tls_agent}", f"-ca-file={certificate[0]}"])[0].client()
    assert client.kv_get("k")[0] is not None
    port = tls_agent.rsplit(":", 1)[1]
    named = _config([f"-http-addr=https://localhost:{port}", f"-ca-file={certificate[0]}",
                     "-tls-server-name=consul.test:8501"])[0].client()
    assert named.kv_get("k")[0] is not None


def test_https_verification(tls_agent: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TransportError, match="certificate verify failed"):
        _config([f"-http-addr=https://{tls_agent}"])[0].client().kv_get("k")
    monkeypatch.setenv("CONSUL_HTTP_SSL", "true")
    monkeypatch.setenv("CONSUL_HTTP_SSL_VERIFY", "false")
    client = _config([f"-http-addr={tls_agent}"])[0].client()
    assert client.kv_get("k")[0] is not None


def test_unix_socket(tmp_path: Path) -> None:
    import socketserver

    class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    class UnixHandler(_Handler):
        def address_string(self) -> str:
            return "unix"

    path = tmp_path / "agent.sock"
    server = UnixServer(str(path), UnixHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        client = _config([f"-http-addr=unix://{path}"])[0].client()
        pair, meta = client.kv_get("k")
        assert pair is not None and meta.last_index == 7
    finally:
        server.shutdown()
        server.server_close()

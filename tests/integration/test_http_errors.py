"""Bad input gets Consul's status and text, and the agent keeps serving."""

from __future__ import annotations

import http.client
import socket

import pytest

from tests.support import AgentProcess


def request(agent: AgentProcess, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", agent.http_port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "text"),
    [
        ("PUT", "/v1/session/create", b"{not json", 400, b"Request decode failed: "),
        ("PUT", "/v1/session/create", b'{"LockDelay": "abc"}', 400,
         b'Request decode failed: time: invalid duration "abc"'),
        ("PUT", "/v1/txn", b"[{]", 400, b"Failed to parse body: "),
        ("PUT", "/v1/session/create", b'{"TTL": "1s"}', 500,
         b"Invalid Session TTL '1000000000', must be between [10s=24h0m0s]"),
        ("PUT", "/v1/session/create", b'{"Behavior": "nope"}', 500,
         b"Invalid Behavior setting 'nope'"),
        ("GET", "/v1/kv/x?index=abc", None, 400, b"Invalid index"),
        ("GET", "/v1/kv/x?wait=10", None, 400, b"Invalid wait time"),
        ("GET", "/v1/kv/x?stale&consistent", None, 400,
         b"Cannot specify ?stale with ?consistent, conflicting semantics."),
        ("GET", "/v1/kv/x?max_stale=zz", None, 400, b'Invalid max_stale value "zz"'),
        ("PUT", "/v1/kv/x?flags=abc", b"v", 500,
         b'strconv.ParseUint: parsing "abc": invalid syntax'),
        ("PUT", "/v1/kv/x?cas=1&acquire=abc", b"v", 400,
         b"Conflicting flags: acquire=abc&cas=1\n"),
        ("GET", "/v1/kv/", None, 400, b"Missing key name"),
        ("PUT", "/v1/kv/?", b"v", 400, b"Missing key name"),
        ("GET", "/v1/kv/x?ns=default", None, 400,
         b'Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature'),
        ("GET", "/v1/kv/x?partition=p", None, 400,
         b'Invalid query parameter: "partition" - Partitions are a Consul Enterprise feature'),
        ("PUT", "/v1/session/renew/not-a-session", None, 404,
         b"Session id 'not-a-session' not found"),
        ("GET", "/v1/kv/x?dc=elsewhere", None, 500, b"No path to datacenter"),
        ("GET", "/v1/operator/raft/configuration?dc=elsewhere", None, 500,
         b"No path to datacenter"),
        ("GET", "/v1/operator/autopilot/health?dc=elsewhere", None, 500,
         b"No path to datacenter"),
        ("GET", "/v1/coordinate/nodes?dc=elsewhere", None, 500, b"No path to datacenter"),
        # lists of every datacenter and the keyring ignore ?dc, as Consul does
        ("GET", "/v1/catalog/datacenters?dc=elsewhere", None, 200, b"["),
        ("GET", "/v1/coordinate/datacenters?dc=elsewhere", None, 200, b"["),
        ("GET", "/v1/operator/keyring?dc=elsewhere", None, 500,
         b"4 errors occurred:\n\t* WAN error: 1/1 nodes reported failure"),
        ("GET", "/v1/nope", None, 404, b"Invalid URL path: not a recognized HTTP API endpoint\n"),
    ],
)
def test_errors(agent: AgentProcess, method: str, path: str, body: bytes | None, status: int,
                text: bytes) -> None:
    got, _, payload = request(agent, method, path, body)
    assert got == status, payload
    assert payload.startswith(text), payload


def test_method_not_allowed_has_allow_header(agent: AgentProcess) -> None:
    status, headers, body = request(agent, "POST", "/v1/kv/foo", b"x")
    assert status == 405
    assert body == b"method POST not allowed"
    assert headers["allow"] == "OPTIONS,GET,PUT,DELETE"
    status, headers, _ = request(agent, "OPTIONS", "/v1/txn")
    assert status == 200 and headers["allow"] == "OPTIONS,PUT"


def test_oversized_kv_body_is_413(agent: AgentProcess) -> None:
    status, _, body = request(agent, "PUT", "/v1/kv/big", b"x" * (512 * 1024 + 1))
    assert status == 413
    assert body.startswith(b"Request body(524289 bytes) too large, max size: 524288 bytes.")
    assert request(agent, "GET", "/v1/kv/big")[0] == 404


def test_too_many_txn_ops_is_413(agent: AgentProcess) -> None:
    ops = b"[" + b",".join([b'{"KV":{"Verb":"get","Key":"k"}}'] * 129) + b"]"
    status, _, body = request(agent, "PUT", "/v1/txn", ops)
    assert status == 413
    assert body == b"Transaction contains too many operations (129 > 128)"


def test_doubled_slash_redirects_to_clean_path(agent: AgentProcess) -> None:
    status, headers, body = request(agent, "GET", "/v1/kv//foo?recurse")
    assert status == 301
    assert headers["location"] == "/v1/kv/foo?recurse="
    assert body == b'<a href="/v1/kv/foo?recurse=">Moved Permanently</a>.\n\n'


def test_headers_on_reads(agent: AgentProcess) -> None:
    request(agent, "PUT", "/v1/kv/hdr", b"v")
    status, headers, body = request(agent, "GET", "/v1/kv/hdr")
    assert status == 200
    assert int(headers["x-consul-index"]) >= 1
    assert headers["x-consul-knownleader"] == "true"
    assert headers["x-consul-lastcontact"] == "0"
    assert headers["x-consul-default-acl-policy"] == "allow"
    assert body.startswith(b"[\n    {\n")  # -dev pretty-prints with four spaces
    status, headers, _ = request(agent, "GET", "/v1/kv/none-such")
    assert status == 404 and int(headers["x-consul-index"]) >= 1


def test_token_sources_are_accepted(agent: AgentProcess) -> None:
    for hdrs in ({"X-Consul-Token": "abc"}, {"Authorization": "Bearer abc"}):
        assert request(agent, "GET", "/v1/kv/hdr", headers=hdrs)[0] == 200
    assert request(agent, "GET", "/v1/kv/hdr?token=abc")[0] == 200


def test_raw_get(agent: AgentProcess) -> None:
    request(agent, "PUT", "/v1/kv/raw", b"\x00\x01binary")
    status, headers, body = request(agent, "GET", "/v1/kv/raw?raw")
    assert status == 200 and body == b"\x00\x01binary"
    assert headers["x-content-type-options"] == "nosniff"


def test_gzip_when_asked(agent: AgentProcess) -> None:
    import gzip

    request(agent, "PUT", "/v1/kv/gz", b"z" * 5000)
    status, headers, body = request(agent, "GET", "/v1/kv/gz", headers={
        "Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("content-encoding") == "gzip"
    assert b"CreateIndex" in gzip.decompress(body)


def test_garbage_on_the_socket_does_not_stop_the_agent(agent: AgentProcess) -> None:
    with socket.create_connection(("127.0.0.1", agent.http_port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01 this is not http\r\n\r\n")
        data = s.recv(1024)
        assert data.startswith(b"HTTP/1.1 400")
    assert request(agent, "GET", "/v1/status/leader")[0] == 200


def test_index_and_metrics(agent: AgentProcess) -> None:
    status, _, body = request(agent, "GET", "/")
    assert status == 200 and body.startswith(b"Consul Agent")
    status, _, body = request(agent, "GET", "/v1/agent/metrics")
    assert status == 200 and b'"Gauges"' in body
    status, headers, body = request(agent, "GET", "/v1/agent/metrics?format=prometheus")
    assert status == 200 and body == b"" and "x-consul-reason" in headers
    status, _, body = request(agent, "GET", "/v1/agent/self")
    assert status == 200 and b'"NodeName": "test-node"' in body


def test_oversized_chunked_kv_body_is_413(agent: AgentProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", agent.http_port, timeout=10)
    try:
        conn.putrequest("PUT", "/v1/kv/bigchunks")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        chunk = b"y" * 65536
        try:
            for _ in range(9):
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
        except OSError:
            pass  # the server may close before the rest is sent
        resp = conn.getresponse()
        assert resp.status == 413
        assert resp.read() == b"Request body too large. Max allowed is 524288 bytes."
    finally:
        conn.close()
    assert request(agent, "GET", "/v1/kv/bigchunks")[0] == 404

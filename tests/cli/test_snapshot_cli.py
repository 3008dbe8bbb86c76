"""`proconsul snapshot save|restore|inspect`: Consul's lines and exit codes, and the file promises.

`inspect` needs no agent.  `save` and `restore` are checked two ways: against a small scripted
HTTP server (so a damaged download, a failing agent and the exact bytes sent can be controlled),
and end to end against a real `proconsul agent -dev`, which is skipped with the reason when that
agent does not serve `/v1/snapshot`.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgpack
import pytest

from proconsul.cli.main import main
from proconsul.cli.snapshot import appended_filename, byte_size
from proconsul.snapshot import inspect_archive, read_archive, write_archive
from tests.support import AgentProcess, run_cli


def make_state(kvs: dict[str, bytes]) -> bytes:
    dump = {
        "Version": 1,
        "Index": {"kvs": 9, "sessions": 0},
        "KVs": [{"Key": k, "Value": v, "Flags": 0, "Session": "", "LockIndex": 0,
                 "CreateIndex": 5, "ModifyIndex": 9} for k, v in kvs.items()],
        "Tombstones": [["old/key", 4]],
        "Sessions": [],
        "Nodes": [{"ID": "", "Node": "n1", "Address": "127.0.0.1", "Datacenter": "dc1",
                   "TaggedAddresses": {}, "Meta": {}, "CreateIndex": 1, "ModifyIndex": 1}],
        "Checks": [],
    }
    packed: bytes = msgpack.packb(dump, use_bin_type=True)
    return packed


def make_archive(kvs: dict[str, bytes] | None = None, index: int = 9) -> bytes:
    state = make_state(kvs if kvs is not None else {"app/a": b"1", "app/b/c": b"22",
                                                      "top": b"x" * 2000})
    meta = {"Version": 1, "ID": f"2-{index}-1700000000000", "Index": index, "Term": 2,
            "Peers": None, "Configuration": None, "ConfigurationIndex": 0, "Size": len(state)}
    return write_archive(meta, state, mtime=1_700_000_000)


def damaged(archive: bytes) -> bytes:
    """A well-compressed archive whose state.bin no longer matches its sum."""
    tar = bytearray(gzip.decompress(archive))
    tar[512 * 3 + 10] ^= 0x01  # inside state.bin (meta.json takes one header + one data block)
    return gzip.compress(bytes(tar), mtime=0)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----------------------------------------------------------------------------------------------
# A scripted agent


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Script:
    replies: dict[tuple[str, str], Reply] = field(default_factory=dict)
    seen: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def fake_agent(monkeypatch: pytest.MonkeyPatch) -> Iterator[Script]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            script.seen.append((self.command, self.path, dict(self.headers), body))
            reply = script.replies.get((self.command, path), Reply(404, b"no such route"))
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_PUT = _answer

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    monkeypatch.setenv("CONSUL_HTTP_ADDR", f"{host!s}:{port}")
    for name in ("CONSUL_HTTP_TOKEN", "CONSUL_HTTP_SSL", "CONSUL_HTTP_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield script
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def serve_snapshot(script: Script, archive: bytes, index: str | None = "9") -> None:
    headers = {"Content-Type": "application/x-gzip"}
    if index is not None:
        headers["X-Consul-Index"] = index
    script.replies[("GET", "/v1/snapshot")] = Reply(200, archive, headers)


# ----------------------------------------------------------------------------------------------
# save


def test_save_writes_a_verified_file(fake_agent: Script, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    archive = make_archive()
    serve_snapshot(fake_agent, archive, index="17")
    target = tmp_path / "backup.snap"
    code, out, err = run(["snapshot", "save", str(target)], capsys)
    assert (code, out, err) == (0, "Saved and verified snapshot to index 17\n", "")
    assert target.read_bytes() == archive
    assert os.stat(target).st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.snap"]
    method, path, _, _ = fake_agent.seen[-1]
    assert (method, path) == ("GET", "/v1/snapshot")


def test_save_takes_the_index_from_meta_without_the_header(
        fake_agent: Script, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    serve_snapshot(fake_agent, make_archive(index=33), index=None)
    code, out, _ = run(["snapshot", "save", str(tmp_path / "b.snap")], capsys)
    assert (code, out) == (0, "Saved and verified snapshot to index 33\n")


def test_save_passes_stale(fake_agent: Script, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    serve_snapshot(fake_agent, make_archive())
    code, _, _ = run(["snapshot", "save", "-stale", str(tmp_path / "b.snap")], capsys)
    assert code == 0
    assert fake_agent.seen[-1][1] == "/v1/snapshot?stale="


def test_save_never_leaves_a_bad_file(fake_agent: Script, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "backup.snap"
    target.write_bytes(b"previous good backup")
    for bad in (damaged(make_archive()), make_archive()[:-20], b"<html>oops</html>"):
        serve_snapshot(fake_agent, bad)
        code, out, err = run(["snapshot", "save", str(target)], capsys)
        assert code == 1 and out == ""
        assert err.startswith("Error verifying snapshot file: "), err
        assert target.read_bytes() == b"previous good backup"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.snap"]


def test_save_reports_agent_errors(fake_agent: Script, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    fake_agent.replies[("GET", "/v1/snapshot")] = Reply(500, b"No cluster leader")
    code, out, err = run(["snapshot", "save", str(tmp_path / "b.snap")], capsys)
    assert (code, out) == (1, "")
    assert err == "Error saving snapshot: Unexpected response code: 500 (No cluster leader)\n"
    assert list(tmp_path.iterdir()) == []


def test_save_into_a_missing_directory_fails_cleanly(
        fake_agent: Script, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    serve_snapshot(fake_agent, make_archive())
    target = tmp_path / "nope" / "b.snap"
    code, _, err = run(["snapshot", "save", str(target)], capsys)
    assert code == 1
    assert err == (f"Error writing unverified snapshot file: open {target}.unverified: "
                   "no such file or directory\n")


def test_save_appends_version_and_datacenter(fake_agent: Script, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    serve_snapshot(fake_agent, make_archive())
    fake_agent.replies[("GET", "/v1/agent/self")] = Reply(200, json.dumps(
        {"Config": {"Version": "1.17.0", "Datacenter": "east"}}).encode())
    code, _, _ = run(["snapshot", "save", "-append-filename=dc,version",
                      str(tmp_path / "backup.snap")], capsys)
    assert code == 0
    assert (tmp_path / "backup-1.17.0-east.snap").exists()


def test_appended_filename_follows_go_extension_rules() -> None:
    config = {"Version": "1.2.3", "Datacenter": "dc1"}
    assert appended_filename("b.snap", ["version"], config) == "b-1.2.3.snap"
    assert appended_filename("dir.d/b", ["dc"], config) == "dir.d/b-dc1"
    assert appended_filename("x/.snap", ["dc"], config) == "x/-dc1.snap"
    assert appended_filename("a.tar.gz", ["version", "dc"], config) == "a.tar-1.2.3-dc1.gz"


@pytest.mark.parametrize(("argv", "message"), [
    (["snapshot", "save"], "Missing FILE argument\n"),
    (["snapshot", "save", "a", "b"], "Too many arguments (expected 1 or 3, got 2)\n"),
    (["snapshot", "restore"], "Missing FILE argument\n"),
    (["snapshot", "restore", "a", "b"], "Too many arguments (expected 1, got 2)\n"),
    (["snapshot", "inspect"], "Missing FILE argument\n"),
    (["snapshot", "inspect", "a", "b", "c"], "Too many arguments (expected 1, got 3)\n"),
])
def test_argument_errors(argv: list[str], message: str,
                         capsys: pytest.CaptureFixture[str]) -> None:
    assert run(argv, capsys) == (1, "", message)


def test_snapshot_alone_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["snapshot"], capsys)
    assert code == 1 and out == ""
    assert err.startswith("Usage: consul snapshot <subcommand> [options] [args]")
    for sub in ("inspect", "restore", "save"):
        assert f"\n    {sub}" in err


def test_subcommand_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["snapshot", "save", "-h"], capsys)
    assert code == 0
    assert out.startswith("Usage: consul snapshot save [options] FILE")
    assert "-append-filename=<value>" in out and "-stale" in out


# ----------------------------------------------------------------------------------------------
# restore


def test_restore_sends_the_file_unchanged(fake_agent: Script, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    archive = make_archive()
    source = tmp_path / "b.snap"
    source.write_bytes(archive)
    fake_agent.replies[("PUT", "/v1/snapshot")] = Reply(200, b"")
    code, out, err = run(["snapshot", "restore", str(source)], capsys)
    assert (code, out, err) == (0, "Restored snapshot\n", "")
    method, path, headers, body = fake_agent.seen[-1]
    assert (method, path, body) == ("PUT", "/v1/snapshot", archive)
    assert headers["Content-Type"] == "application/octet-stream"


def test_restore_refuses_a_bad_archive_without_sending_it(
        fake_agent: Script, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "b.snap"
    for bad in (damaged(make_archive()), make_archive()[:100], b""):
        source.write_bytes(bad)
        code, out, err = run(["snapshot", "restore", str(source)], capsys)
        assert code == 1 and out == ""
        assert err.startswith("Error verifying snapshot file: "), err
    assert fake_agent.seen == []


def test_restore_reports_a_missing_file(fake_agent: Script, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.snap"
    code, _, err = run(["snapshot", "restore", str(missing)], capsys)
    assert code == 1
    assert err == f"Error opening snapshot file: open {missing}: no such file or directory\n"


def test_restore_reports_agent_errors(fake_agent: Script, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "b.snap"
    source.write_bytes(make_archive())
    fake_agent.replies[("PUT", "/v1/snapshot")] = Reply(403, b"Permission denied")
    code, out, err = run(["snapshot", "restore", str(source)], capsys)
    assert (code, out) == (1, "")
    assert err == "Error restoring snapshot: Unexpected response code: 403 (Permission denied)\n"


# ----------------------------------------------------------------------------------------------
# inspect (no agent)


def test_inspect_pretty_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = make_archive()
    path = tmp_path / "b.snap"
    path.write_bytes(archive)
    info = inspect_archive(archive)
    code, out, err = run(["snapshot", "inspect", str(path)], capsys)
    assert (code, err) == (0, "")
    size = info["Meta"]["Size"]
    stats = {row["Name"]: row for row in info["Stats"]}
    assert [row["Name"] for row in info["Stats"]] == ["KVS", "Register", "Index", "Tombstone"]
    lines = [
        " ID           2-9-1700000000000",
        f" Size         {size}",
        " Index        9",
        " Term         2",
        " Version      1",
        "",
        " Type           Count      Size",
        " ----           ----       ----",
        f" KVS            3          {byte_size(stats['KVS']['Sum'])}",
        f" Register       1          {byte_size(stats['Register']['Sum'])}",
        f" Index          2          {byte_size(stats['Index']['Sum'])}",
        f" Tombstone      1          {byte_size(stats['Tombstone']['Sum'])}",
        " ----           ----       ----",
        f" Total                     {byte_size(info['TotalSize'])}",
    ]
    assert out == "\n".join(lines) + "\n"


def test_inspect_kv_details(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "b.snap"
    path.write_bytes(make_archive())
    code, out, _ = run(["snapshot", "inspect", "-kvdetails", "-kvdepth=1", str(path)], capsys)
    assert code == 0
    tail = out.split("\n\n")[-1].rstrip("\n").split("\n")
    assert tail[0].split() == ["Key", "Name", "Count", "Size"]
    assert [line.split()[:2] for line in tail[2:-2]] == [["top", "1"], ["app", "2"]]
    assert tail[-1].split()[0] == "Total"
    code, out, _ = run(["snapshot", "inspect", "-kvdetails", "-kvfilter=app/b", str(path)],
                       capsys)
    assert code == 0
    rows = out.split("\n\n")[-1].rstrip("\n").split("\n")[2:-2]
    assert [line.split()[0] for line in rows] == ["app/b"]


def test_inspect_json_matches_consuls_shape(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    archive = make_archive()
    path = tmp_path / "b.snap"
    path.write_bytes(archive)
    code, out, _ = run(["snapshot", "inspect", "-format=json", str(path)], capsys)
    assert code == 0
    doc = json.loads(out)
    assert list(doc) == ["Meta", "Stats", "StatsKV", "TotalSize", "TotalSizeKV"]
    assert list(doc["Meta"]) == ["ID", "Size", "Index", "Term", "Version"]
    assert doc == inspect_archive(archive)
    assert out.startswith('{\n   "Meta": {\n      "ID": "2-9-1700000000000",')


def test_inspect_raw_state_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Raft snapshot directory (meta.json beside state.bin) is inspected as Consul allows."""
    meta, state = read_archive(make_archive())
    (tmp_path / "state.bin").write_bytes(state)
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    code, out, _ = run(["snapshot", "inspect", str(tmp_path / "state.bin")], capsys)
    assert code == 0 and out.startswith(" ID           2-9-1700000000000\n")
    (tmp_path / "meta.json").unlink()
    code, _, err = run(["snapshot", "inspect", str(tmp_path / "state.bin")], capsys)
    assert code == 1 and err.startswith("Error reading meta.json from internal snapshot dir: ")


def test_inspect_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "b.snap"
    path.write_bytes(damaged(make_archive()))
    code, out, err = run(["snapshot", "inspect", str(path)], capsys)
    assert (code, out) == (1, "")
    assert err == ('Error reading snapshot: failed to read snapshot file: failed checking '
                   'integrity of snapshot: hash check failed for "state.bin"\n')
    missing = tmp_path / "none.snap"
    assert run(["snapshot", "inspect", str(missing)], capsys) == (
        1, "", f"Error opening snapshot file: open {missing}: no such file or directory\n")
    path.write_bytes(make_archive())
    assert run(["snapshot", "inspect", "-format=xml", str(path)], capsys) == (
        1, "", "Error outputting enhanced snapshot data: Unknown format: xml\n")
    code, _, err = run(["snapshot", "inspect", "-kvdetails", "-kvdepth=-1", str(path)], capsys)
    assert code == 1 and err.startswith("Error extracting snapshot data: ")


def test_byte_size_matches_consul() -> None:
    assert [byte_size(n) for n in (0, 1, 1023, 1024, 1536, 12595, 17228, 1 << 20, 5 << 40)] == [
        "0", "1B", "1023B", "1KB", "1.5KB", "12.3KB", "16.8KB", "1MB", "5TB"]


# ----------------------------------------------------------------------------------------------
# Against a real agent


def _snapshot_support(agent: AgentProcess) -> str | None:
    """None when the agent serves /v1/snapshot, else why the end-to-end tests cannot run."""
    try:
        with urllib.request.urlopen(agent.url + "/v1/snapshot", timeout=30) as resp:
            resp.read()
            return None
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace").strip()
        if exc.code in (404, 405) or (exc.code == 500 and "not supported" in body):
            return f"this agent does not serve /v1/snapshot yet ({exc.code} {body})"
        raise


@pytest.fixture(scope="module")
def snapshot_agent(agent: AgentProcess) -> AgentProcess:
    reason = _snapshot_support(agent)
    if reason is not None:
        pytest.skip(reason)
    return agent


def kv_put(agent: AgentProcess, key: str, value: bytes) -> None:
    req = urllib.request.Request(f"{agent.url}/v1/kv/{key}", data=value, method="PUT")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.read() == b"true"


def kv_raw(agent: AgentProcess, key: str) -> bytes | None:
    try:
        with urllib.request.urlopen(f"{agent.url}/v1/kv/{key}?raw", timeout=10) as resp:
            data: bytes = resp.read()
            return data
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def test_save_restore_round_trip_against_an_agent(snapshot_agent: AgentProcess,
                                                  tmp_path: Path) -> None:
    agent = snapshot_agent
    kv_put(agent, "snap/a", b"one")
    kv_put(agent, "snap/bin", bytes(range(256)))
    target = tmp_path / "backup.snap"
    saved = run_cli(["snapshot", "save", str(target)], agent.http_addr)
    assert saved.returncode == 0, saved.stderr
    prefix = b"Saved and verified snapshot to index "
    assert saved.stdout.startswith(prefix) and saved.stdout.endswith(b"\n")
    index = int(saved.stdout[len(prefix):])
    meta, _ = read_archive(target.read_bytes())
    assert index == max(meta["Index"], 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.snap"]

    kv_put(agent, "snap/a", b"changed")
    kv_put(agent, "snap/new", b"later")
    restored = run_cli(["snapshot", "restore", str(target)], agent.http_addr)
    assert (restored.returncode, restored.stdout) == (0, b"Restored snapshot\n"), restored.stderr
    assert kv_raw(agent, "snap/a") == b"one"
    assert kv_raw(agent, "snap/bin") == bytes(range(256))
    assert kv_raw(agent, "snap/new") is None

    inspected = run_cli(["snapshot", "inspect", "-format=json", str(target)], agent.http_addr)
    doc = json.loads(inspected.stdout)
    assert any(row["Name"] == "KVS" and row["Count"] >= 2 for row in doc["Stats"])


def test_bad_archive_leaves_the_agent_untouched(snapshot_agent: AgentProcess,
                                                tmp_path: Path) -> None:
    agent = snapshot_agent
    kv_put(agent, "guard/key", b"before")
    source = tmp_path / "bad.snap"
    source.write_bytes(damaged(make_archive()))
    result = run_cli(["snapshot", "restore", str(source)], agent.http_addr)
    assert result.returncode == 1
    assert result.stderr.startswith(b"Error verifying snapshot file: ")
    assert kv_raw(agent, "guard/key") == b"before"
    # The agent itself also refuses a damaged archive sent past the CLI's own check.
    req = urllib.request.Request(agent.url + "/v1/snapshot", data=source.read_bytes(),
                                 method="PUT")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    info.value.close()
    assert kv_raw(agent, "guard/key") == b"before"

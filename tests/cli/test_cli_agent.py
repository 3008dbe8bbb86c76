"""The `proconsul` commands run as processes against a real `proconsul agent -dev`.

Each test uses its own key prefix, so the tests of this module can share one agent.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request
from pathlib import Path

import pytest

from tests.support import AgentProcess, free_port, run_cli


def _ok(args: list[str], agent: AgentProcess, input: bytes | None = None) -> str:
    proc = run_cli(args, agent.http_addr, input=input)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return proc.stdout.decode()


def _http(agent: AgentProcess, method: str, path: str, body: bytes | None = None) -> object:
    req = urllib.request.Request(agent.url + path, data=body, method=method)
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip() else None


def test_put_get_delete(agent: AgentProcess) -> None:
    assert _ok(["kv", "put", "t1/foo", "bar"], agent) == "Success! Data written to: t1/foo\n"
    assert _ok(["kv", "get", "t1/foo"], agent) == "bar\n"
    assert _ok(["kv", "get", "/t1/foo"], agent) == "bar\n"
    assert _ok(["kv", "delete", "t1/foo"], agent) == "Success! Deleted key: t1/foo\n"
    proc = run_cli(["kv", "get", "t1/foo"], agent.http_addr)
    assert proc.returncode == 1
    assert proc.stdout == b""
    assert proc.stderr == b"Error! No key exists at: t1/foo\n"


def test_put_data_sources(agent: AgentProcess, tmp_path: Path) -> None:
    data = tmp_path / "value.bin"
    data.write_bytes(b"\x00\xffbinary\n")
    _ok(["kv", "put", "t2/file", f"@{data}"], agent)
    proc = run_cli(["kv", "get", "t2/file"], agent.http_addr)
    assert proc.stdout == b"\x00\xffbinary\n\n"
    _ok(["kv", "put", "t2/stdin", "-"], agent, input=b"from stdin")
    assert _ok(["kv", "get", "t2/stdin"], agent) == "from stdin\n"
    _ok(["kv", "put", "-base64", "t2/b64", base64.b64encode(b"decoded").decode()], agent)
    assert _ok(["kv", "get", "t2/b64"], agent) == "decoded\n"
    _ok(["kv", "put", "t2/empty"], agent)
    assert _ok(["kv", "get", "t2/empty"], agent) == "\n"
    proc = run_cli(["kv", "put", "t2/x", f"@{tmp_path / 'nope'}"], agent.http_addr)
    assert proc.returncode == 1
    assert re.fullmatch(rb"Error! Failed to read file: open .*nope: no such file or directory\n",
                        proc.stderr)
    proc = run_cli(["kv", "put", "/t2/lead", "v"], agent.http_addr)
    assert proc.returncode == 1
    assert proc.stderr == (b"Error! Failed writing data: Invalid key. Key must not begin with a "
                           b"'/': /t2/lead\n")


def test_detailed_flags_and_base64(agent: AgentProcess) -> None:
    _ok(["kv", "put", "-flags=42", "t3/k", "hello"], agent)
    text = _ok(["kv", "get", "-detailed", "t3/k"], agent)
    lines = text.splitlines()
    assert [line.split()[0] for line in lines] == ["CreateIndex", "Flags", "Key", "LockIndex",
                                                   "ModifyIndex", "Session", "Value"]
    assert all(line[17:] == line[17:].lstrip() and line[11:17].strip() == "" for line in lines)
    assert lines[1] == "Flags            42"
    assert lines[2] == "Key              t3/k"
    assert lines[5] == "Session          -"
    assert lines[6] == "Value            hello"
    b64 = _ok(["kv", "get", "-detailed", "-base64", "t3/k"], agent)
    assert b64.splitlines()[6] == "Value            aGVsbG8="


def test_recurse_and_keys(agent: AgentProcess) -> None:
    for key, value in (("t4/a", "1"), ("t4/b/c", "2"), ("t4/b/d", "3")):
        _ok(["kv", "put", key, value], agent)
    assert _ok(["kv", "get", "-recurse", "t4"], agent) == "t4/a:1\nt4/b/c:2\nt4/b/d:3\n"
    assert _ok(["kv", "get", "-recurse", "-base64", "t4/a"], agent) == "t4/a:MQ==\n"
    assert _ok(["kv", "get", "-keys", "t4/"], agent) == "t4/a\nt4/b/\n"
    assert _ok(["kv", "get", "-keys", "-separator=", "t4/"], agent) == "t4/a\nt4/b/c\nt4/b/d\n"
    assert _ok(["kv", "get", "-keys", "t4-none/"], agent) == ""
    detailed = _ok(["kv", "get", "-recurse", "-detailed", "t4/b"], agent)
    assert detailed.count("CreateIndex") == 2 and "\n\nCreateIndex" in detailed
    assert _ok(["kv", "delete", "-recurse", "t4"], agent) == \
        "Success! Deleted keys with prefix: t4\n"
    assert _ok(["kv", "get", "-recurse", "t4"], agent) == ""


def test_cas(agent: AgentProcess) -> None:
    _ok(["kv", "put", "t5/k", "v1"], agent)
    index = int(_ok(["kv", "get", "-detailed", "t5/k"], agent).splitlines()[4].split()[1])
    proc = run_cli(["kv", "put", "-cas", f"-modify-index={index + 1000}", "t5/k", "v2"],
                   agent.http_addr)
    assert proc.returncode == 1
    assert proc.stderr == b"Error! Did not write to t5/k: CAS failed\n"
    assert _ok(["kv", "put", "-cas", f"-modify-index={index}", "t5/k", "v2"], agent) == \
        "Success! Data written to: t5/k\n"
    proc = run_cli(["kv", "delete", "-cas", f"-modify-index={index}", "t5/k"], agent.http_addr)
    assert proc.returncode == 1
    assert proc.stderr == b"Error! Did not delete key t5/k: CAS failed\n"
    index = int(_ok(["kv", "get", "-detailed", "t5/k"], agent).splitlines()[4].split()[1])
    assert _ok(["kv", "delete", "-cas", f"-modify-index={index}", "t5/k"], agent) == \
        "Success! Deleted key: t5/k\n"


def test_export_import(agent: AgentProcess, tmp_path: Path) -> None:
    _ok(["kv", "put", "-flags=7", "t6/a", "<one>"], agent)
    _ok(["kv", "put", "t6/b/", ""], agent)
    text = _ok(["kv", "export", "t6"], agent)
    assert text == (
        "[\n"
        "\t{\n\t\t\"key\": \"t6/a\",\n\t\t\"flags\": 7,\n\t\t\"value\": \"PG9uZT4=\"\n\t},\n"
        "\t{\n\t\t\"key\": \"t6/b/\",\n\t\t\"flags\": 0,\n\t\t\"value\": \"\"\n\t}\n"
        "]\n")
    assert _ok(["kv", "export", "t6-none"], agent) == "[]\n"
    dump = tmp_path / "dump.json"
    dump.write_text(text)
    assert _ok(["kv", "import", "-prefix=t6copy", f"@{dump}"], agent) == \
        "Imported: t6copy/t6/a\nImported: t6copy/t6/b/\n"
    assert _ok(["kv", "get", "-detailed", "t6copy/t6/a"], agent).splitlines()[1].split()[1] == "7"
    assert _ok(["kv", "import", "-"], agent, input=b'[{"key": "t6in", "flags": 0, "value": '
               b'"aGk="}]') == "Imported: t6in\n"
    assert _ok(["kv", "get", "t6in"], agent) == "hi\n"
    proc = run_cli(["kv", "import", "not json"], agent.http_addr)
    assert proc.returncode == 1 and proc.stderr.startswith(b"Cannot unmarshal data: ")


def test_acquire_release(agent: AgentProcess) -> None:
    session = _http(agent, "PUT", "/v1/session/create", b'{"Name": "cli-test"}')
    assert isinstance(session, dict)
    sid = session["ID"]
    assert _ok(["kv", "put", "-acquire", f"-session={sid}", "t7/lock", "me"], agent) == \
        "Success! Lock acquired on: t7/lock\n"
    detailed = _ok(["kv", "get", "-detailed", "t7/lock"], agent).splitlines()
    assert detailed[3] == "LockIndex        1"
    assert detailed[5] == f"Session          {sid}"
    assert _ok(["kv", "put", "-release", f"-session={sid}", "t7/lock"], agent) == \
        "Success! Lock released on: t7/lock\n"
    proc = run_cli(["kv", "put", "-release", f"-session={sid}", "t7/other"], agent.http_addr)
    assert proc.returncode == 1 and proc.stderr == b"Error! Did not release lock\n"
    _http(agent, "PUT", f"/v1/session/destroy/{sid}")


def test_members(agent: AgentProcess) -> None:
    lines = _ok(["members"], agent).splitlines()
    assert lines[0].split() == ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC",
                                "Partition", "Segment"]
    row = lines[1].split()
    assert row[0] == "test-node" and row[2] == "alive" and row[3] == "server"
    assert row[-2:] == ["default", "<all>"]
    assert re.fullmatch(r"\S+:\d+", row[1])
    header = lines[0]
    assert header.index("Address") == max(len("Node"), len("test-node")) + 2
    detailed = _ok(["members", "-detailed"], agent).splitlines()
    assert detailed[0].split() == ["Node", "Address", "Status", "Tags"]
    assert "role=consul" in detailed[1] and "ap=default" in detailed[1]
    proc = run_cli(["members", "-status=failed"], agent.http_addr)
    assert proc.returncode == 2 and proc.stdout == b""


def test_info(agent: AgentProcess) -> None:
    text = _ok(["info"], agent)
    sections = [line[:-1] for line in text.splitlines() if not line.startswith("\t")]
    assert sections == sorted(sections)
    assert {"agent", "build", "consul", "raft"} <= set(sections)
    for line in text.splitlines():
        if line.startswith("\t"):
            assert re.fullmatch(r"\t\S+ = .*", line)
    assert "\tleader = true" in text


def test_reload(agent: AgentProcess) -> None:
    assert _ok(["reload"], agent) == "Configuration reload triggered\n"


def test_address_flag_overrides_environment(agent: AgentProcess) -> None:
    dead = f"127.0.0.1:{free_port()}"
    proc = run_cli(["kv", "put", f"-http-addr=http://{agent.http_addr}", "t8/k", "v"], dead)
    assert proc.returncode == 0
    proc = run_cli(["kv", "get", "t8/k"], dead)
    assert proc.returncode == 1
    assert proc.stderr.decode().startswith(
        f'Error querying Consul agent: Get "http://{dead}/v1/kv/t8/k": dial tcp {dead}: ')


def test_datacenter_flag(agent: AgentProcess) -> None:
    proc = run_cli(["kv", "get", "-datacenter=nowhere", "t9/k"], agent.http_addr)
    assert proc.returncode == 1
    assert proc.stderr.startswith(b"Error querying Consul agent: Unexpected response code: 500")


def test_validate(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"datacenter": "east", "node_name": "n1",
                                "data_dir": str(tmp_path / "data")}))
    assert run_cli(["validate", str(good)], "127.0.0.1:1").stdout == \
        b"Configuration is valid!\n"
    quiet = run_cli(["validate", "-quiet", str(good)], "127.0.0.1:1")
    assert quiet.returncode == 0 and quiet.stdout == b""
    bad = tmp_path / "bad.json"
    bad.write_text('{"no_such_key_anywhere": 1}')
    proc = run_cli(["validate", str(bad)], "127.0.0.1:1")
    assert proc.returncode == 1
    assert proc.stderr.startswith(b"Config validation failed: ")
    assert b"no_such_key_anywhere" in proc.stderr


def test_leave(tmp_path: Path) -> None:
    own = AgentProcess(tmp_path).start()
    try:
        proc = run_cli(["leave"], own.http_addr)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == b"Graceful leave complete\n"
        assert own.proc is not None
        own.proc.wait(timeout=20)
    finally:
        own.stop()


@pytest.mark.parametrize("args", [["members"], ["info"], ["kv", "get", "x"]])
def test_unreachable_agent(args: list[str]) -> None:
    dead = f"127.0.0.1:{free_port()}"
    proc = run_cli(args, dead)
    assert proc.returncode == 1
    assert b"connect: connection refused" in proc.stderr

"""`proconsul lock` and `proconsul watch` as processes against a real `proconsul agent -dev`.

Contenders are real `lock` processes; their children are small shell loops that leave marker
files behind, so the tests can see who held the lock when.  Every wait is bounded.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support import AgentProcess, proconsul_cmd, run_cli

LOCK_FLAG = 0x2DDCCBC058A50C18


def wait_for(pred: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


@contextmanager
def cli(agent: AgentProcess, args: list[str], group: bool = False
        ) -> Iterator[subprocess.Popen[bytes]]:
    """A long-running `proconsul` process, killed (with its children when `group`) at the end."""
    env = {**os.environ, "CONSUL_HTTP_ADDR": agent.http_addr}
    proc = subprocess.Popen([*proconsul_cmd(), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=group)
    try:
        yield proc
    finally:
        if group:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        elif proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


def http(agent: AgentProcess, method: str, path: str) -> Any:
    req = urllib.request.Request(agent.url + path, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    return json.loads(raw) if raw.strip() else None


def holding_child(marker: Path, release: Path) -> str:
    """A child that records it started and then waits for the test to let it go."""
    return (f'echo "$CONSUL_LOCK_HELD" > {marker}; '
            f"while [ ! -f {release} ]; do sleep 0.05; done")


# ----------------------------------------------------------------------------------------------
# lock


def test_lock_runs_child_and_cleans_up(agent: AgentProcess, tmp_path: Path) -> None:
    marker = tmp_path / "held"
    proc = run_cli(["lock", "lk1", f'echo "$CONSUL_LOCK_HELD" > {marker}'], agent.http_addr)
    assert proc.returncode == 0, proc.stderr
    assert marker.read_text() == "true\n"
    assert http(agent, "GET", "/v1/kv/lk1/.lock") is None
    sessions = http(agent, "GET", "/v1/session/list") or []
    assert not [s for s in sessions if "lk1" in s.get("Name", "")]


def test_child_exit_code(agent: AgentProcess) -> None:
    proc = run_cli(["lock", "lk2", "exit 3"], agent.http_addr)
    assert proc.returncode == 0
    assert proc.stderr == b"Error running handler: exit status 3\n"
    proc = run_cli(["lock", "-child-exit-code", "lk2", "exit 3"], agent.http_addr)
    assert proc.returncode == 2


def test_second_contender_waits_for_release(agent: AgentProcess, tmp_path: Path) -> None:
    a_held, a_release, b_held = tmp_path / "a", tmp_path / "a.release", tmp_path / "b"
    with cli(agent, ["lock", "lk3", holding_child(a_held, a_release)]) as a:
        assert wait_for(a_held.exists, 15)
        entry = http(agent, "GET", "/v1/kv/lk3/.lock")[0]
        assert entry["Flags"] == LOCK_FLAG and entry["Session"]
        session = http(agent, "GET", f"/v1/session/info/{entry['Session']}")[0]
        assert session["TTL"] == "15s"
        assert session["Name"] == f"Consul lock for '{holding_child(a_held, a_release)}' at 'lk3'"
        with cli(agent, ["lock", "lk3", f"touch {b_held}"]) as b:
            assert not wait_for(b_held.exists, 1.5)
            a_release.touch()
            assert a.wait(timeout=15) == 0
            assert wait_for(b_held.exists, 15)
            assert b.wait(timeout=15) == 0


def test_sigterm_to_holder_stops_child_and_releases(agent: AgentProcess, tmp_path: Path) -> None:
    a_held, a_term, b_held = tmp_path / "a", tmp_path / "a.term", tmp_path / "b"
    child = (f"trap 'echo term > {a_term}; exit 0' TERM; touch {a_held}; "
             "while true; do sleep 0.05; done")
    with cli(agent, ["lock", "lk4", child]) as a:
        assert wait_for(a_held.exists, 15)
        with cli(agent, ["lock", "lk4", f"touch {b_held}"]) as b:
            assert not wait_for(b_held.exists, 1.0)
            a.send_signal(signal.SIGTERM)
            assert a.wait(timeout=15) == 0
            assert a_term.read_text() == "term\n"
            assert wait_for(b_held.exists, 15)
            assert b.wait(timeout=15) == 0


def test_lost_lock_terminates_child(agent: AgentProcess, tmp_path: Path) -> None:
    held, term = tmp_path / "held", tmp_path / "term"
    child = (f"trap 'echo term > {term}; exit 0' TERM; touch {held}; "
             "while true; do sleep 0.05; done")
    with cli(agent, ["lock", "-verbose", "lk5", child]) as a:
        assert wait_for(held.exists, 15)
        session = http(agent, "GET", "/v1/kv/lk5/.lock")[0]["Session"]
        http(agent, "PUT", f"/v1/session/destroy/{session}")
        assert a.wait(timeout=20) == 0
        assert a.stdout is not None
        output = a.stdout.read().decode()
        assert "Lock lost, killing child" in output
        assert term.read_text() == "term\n"


def test_timeout_while_held(agent: AgentProcess, tmp_path: Path) -> None:
    held, release = tmp_path / "held", tmp_path / "release"
    with cli(agent, ["lock", "lk6", holding_child(held, release)]):
        assert wait_for(held.exists, 15)
        started = time.monotonic()
        proc = run_cli(["lock", "-timeout=1s", "lk6", "true"], agent.http_addr)
        assert time.monotonic() - started < 10
        assert proc.returncode == 1
        assert proc.stderr == b"Shutdown triggered or timeout during lock acquisition\n"
        release.touch()


def test_semaphore_admits_limit_holders(agent: AgentProcess, tmp_path: Path) -> None:
    names = ["a", "b", "c"]
    held = {n: tmp_path / n for n in names}
    release = {n: tmp_path / f"{n}.release" for n in names}
    with cli(agent, ["lock", "-n=2", "sem1", holding_child(held["a"], release["a"])]) as a, \
            cli(agent, ["lock", "-n=2", "sem1", holding_child(held["b"], release["b"])]) as b:
        assert wait_for(lambda: held["a"].exists() and held["b"].exists(), 15)
        with cli(agent, ["lock", "-n=2", "sem1", holding_child(held["c"], release["c"])]) as c:
            assert not wait_for(held["c"].exists, 1.5)
            pairs = http(agent, "GET", "/v1/kv/sem1?recurse")
            lock = next(p for p in pairs if p["Key"] == "sem1/.lock")
            doc = json.loads(base64.b64decode(lock["Value"]))
            assert doc["Limit"] == 2 and len(doc["Holders"]) == 2
            release["a"].touch()
            assert a.wait(timeout=15) == 0
            assert wait_for(held["c"].exists, 15)
            release["b"].touch()
            release["c"].touch()
            assert b.wait(timeout=15) == 0
            assert c.wait(timeout=15) == 0
    assert http(agent, "GET", "/v1/kv/sem1?recurse") is None


@pytest.mark.slow
def test_killed_holder_frees_lock_after_ttl_and_lock_delay(agent: AgentProcess,
                                                           tmp_path: Path) -> None:
    """SIGKILL leaves the session unrenewed: the server invalidates it after its TTL (up to 2x
    15s) and the lock-delay (15s) then holds the key back; the waiter acquires after both."""
    a_held, b_held = tmp_path / "a", tmp_path / "b"
    with cli(agent, ["lock", "lk7", f"touch {a_held}; sleep 120"], group=True) as a:
        assert wait_for(a_held.exists, 15)
        with cli(agent, ["lock", "lk7", f"touch {b_held}"]) as b:
            assert not wait_for(b_held.exists, 1.0)
            killed = time.monotonic()
            os.kill(a.pid, signal.SIGKILL)
            assert wait_for(b_held.exists, 58, interval=0.2)
            waited = time.monotonic() - killed
            assert waited >= 15, waited
            assert b.wait(timeout=15) == 0


# ----------------------------------------------------------------------------------------------
# watch


def test_watch_without_handler_prints_once(agent: AgentProcess) -> None:
    run_cli(["kv", "put", "wk1/k", "v"], agent.http_addr)
    proc = run_cli(["watch", "-type=key", "-key=wk1/k"], agent.http_addr, timeout=20)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode()
    doc = json.loads(text)
    assert list(doc) == ["Key", "CreateIndex", "ModifyIndex", "LockIndex", "Flags", "Value",
                         "Session"]
    assert text.startswith('{\n    "Key": "wk1/k",\n') and text.endswith("}\n")
    assert base64.b64decode(doc["Value"]) == b"v"
    missing = run_cli(["watch", "-type=key", "-key=wk1/none"], agent.http_addr, timeout=20)
    assert missing.stdout == b"null\n"
    prefix = run_cli(["watch", "-type=keyprefix", "-prefix=wk1/"], agent.http_addr, timeout=20)
    assert [p["Key"] for p in json.loads(prefix.stdout)] == ["wk1/k"]


def test_watch_handler_runs_on_change_only(agent: AgentProcess, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    calls.mkdir()
    # write under a temporary name and rename, so the test never reads a half-written file
    handler = (f"n=$(ls {calls} | wc -l); cat > {calls}/.part && "
               f"mv {calls}/.part {calls}/call-$n-$CONSUL_INDEX.json")

    def seen() -> list[Path]:
        done = [p for p in calls.iterdir() if p.name.startswith("call-")]
        return sorted(done, key=lambda p: int(p.name.split("-")[1]))

    with cli(agent, ["watch", "-type=keyprefix", "-prefix=wk2/", handler]) as w:
        assert wait_for(lambda: len(seen()) == 1, 15)
        assert json.loads(seen()[0].read_text()) is None
        run_cli(["kv", "put", "wk2/a", "1"], agent.http_addr)
        assert wait_for(lambda: len(seen()) == 2, 15)
        second = seen()[1]
        pairs = json.loads(second.read_text())
        assert [p["Key"] for p in pairs] == ["wk2/a"]
        assert second.name.endswith(f"-{pairs[0]['ModifyIndex']}.json")
        run_cli(["kv", "put", "wk2-outside", "x"], agent.http_addr)
        run_cli(["kv", "put", "other/key", "x"], agent.http_addr)
        assert not wait_for(lambda: len(seen()) > 2, 1.5)
        run_cli(["kv", "put", "wk2/b", "2"], agent.http_addr)
        assert wait_for(lambda: len(seen()) == 3, 15)
        assert [p["Key"] for p in json.loads(seen()[2].read_text())] == ["wk2/a", "wk2/b"]
        w.send_signal(signal.SIGTERM)
        assert w.wait(timeout=10) == 0


def test_watch_handler_failure_stops_watch(agent: AgentProcess) -> None:
    proc = run_cli(["watch", "-type=key", "-key=wk3/k", "exit 3"], agent.http_addr, timeout=20)
    assert proc.returncode == 1
    assert proc.stderr == b"Error executing handler: exit status 3\n"


def _catalog_ready(agent: AgentProcess) -> bool:
    """The catalog endpoints are served (a 404 means the HTTP layer does not route them yet)."""
    return http(agent, "GET", "/v1/catalog/nodes") is not None


def test_watch_catalog_types(agent: AgentProcess) -> None:
    if not _catalog_ready(agent):
        pytest.skip("the agent does not serve /v1/catalog yet")
    nodes = run_cli(["watch", "-type=nodes"], agent.http_addr, timeout=20)
    assert nodes.returncode == 0, nodes.stderr
    assert "test-node" in [n["Node"] for n in json.loads(nodes.stdout)]
    services = run_cli(["watch", "-type=services"], agent.http_addr, timeout=20)
    assert services.returncode == 0, services.stderr
    doc = json.loads(services.stdout)
    assert list(doc) == sorted(doc) and "consul" in doc

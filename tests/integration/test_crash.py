"""Acknowledged writes survive SIGKILL of a durable server, and indexes never go backwards.

Several clients stream writes through /v1/txn (whose answer carries the index each write got)
while the agent is killed with SIGKILL at a random moment; after each restart from the same
data dir, every acknowledged write must be there with exactly its value and index. Bounded in
rounds and time.
"""

from __future__ import annotations

import base64
import json
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support import AgentProcess, free_port

ROUNDS = 12
CLIENTS = 4


def server_agent(workdir: Path, data_dir: Path, server_port: int) -> AgentProcess:
    return AgentProcess(workdir, [
        "-server", "-bootstrap-expect=1", f"-data-dir={data_dir}", "-bind=127.0.0.1",
        f"-server-port={server_port}", f"-serf-lan-port={free_port()}",
        f"-serf-wan-port={free_port()}", "-hcl", "raft_snapshot_threshold = 200",
        "-hcl", "raft_trailing_logs = 50",
    ], dev=False)


def put(url: str, key: str, value: str) -> int:
    """Write through /v1/txn; returns the ModifyIndex the write was acknowledged with."""
    body = json.dumps([{"KV": {"Verb": "set", "Key": key,
                               "Value": base64.b64encode(value.encode()).decode()}}]).encode()
    req = urllib.request.Request(f"{url}/v1/txn", data=body, method="PUT")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return int(json.loads(resp.read())["Results"][0]["KV"]["ModifyIndex"])


def writer(url: str, client: int, start: int, acked: dict[str, tuple[str, int]],
           stop: threading.Event) -> None:
    n = start
    while not stop.is_set():
        key, value = f"crash/{client}/{n:06d}", f"v{client}-{n}"
        try:
            index = put(url, key, value)
        except (OSError, urllib.error.URLError, ValueError):
            return  # the agent is gone: this write was never acknowledged
        acked[key] = (value, index)
        n += 1


def check(url: str, acked: dict[str, tuple[str, int]]) -> int:
    try:
        with urllib.request.urlopen(f"{url}/v1/kv/crash/?recurse", timeout=10) as resp:
            stored = {e["Key"]: e for e in json.loads(resp.read())}
            index = int(resp.headers["X-Consul-Index"])
    except urllib.error.HTTPError as err:
        assert err.code == 404  # nothing written yet
        stored, index = {}, int(err.headers["X-Consul-Index"])
    for key, (value, mod) in acked.items():
        assert key in stored, f"acknowledged write {key} at index {mod} was lost"
        assert base64.b64decode(stored[key]["Value"]).decode() == value
        assert stored[key]["ModifyIndex"] == mod
    return index


@pytest.mark.slow
def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server_port = free_port()
    acked: dict[str, tuple[str, int]] = {}
    rng = random.Random(1234)
    highest = 0
    next_n = 0
    deadline = time.monotonic() + 150
    for _ in range(ROUNDS):
        assert time.monotonic() < deadline, "crash test ran out of time"
        agent = server_agent(tmp_path, data_dir, server_port).start(timeout=60)
        try:
            url = agent.url
            highest_now = check(url, acked)
            assert highest_now >= highest, "index went backwards after restart"
            highest = highest_now
            stop = threading.Event()
            threads = [
                threading.Thread(target=writer, args=(url, c, next_n, acked, stop))
                for c in range(CLIENTS)
            ]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.3, 1.5))
        finally:
            agent.stop(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join(10)
        next_n += 100_000
        highest = max([highest, *(i for _, i in acked.values())])
    agent = server_agent(tmp_path, data_dir, server_port).start(timeout=60)
    try:
        assert check(agent.url, acked) >= highest
        assert len(acked) > ROUNDS * CLIENTS
    finally:
        agent.stop()


def test_second_agent_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = server_agent(tmp_path, data_dir, free_port()).start(timeout=60)
    try:
        second = server_agent(tmp_path, data_dir, free_port())
        with pytest.raises(RuntimeError, match="is in use by another agent"):
            second.start(timeout=30)
    finally:
        first.stop()

"""Restart time of a durable server holding many KV entries (snapshot + log replay).

Starts `proconsul agent -server -bootstrap-expect=1` on a temporary data dir, loads N keys
(default 1,000,000, 64-byte values) through /v1/txn in batches of 128 with a bounded number of
concurrent writers (a snapshot is taken every 4,096 log entries), then stops the agent (SIGTERM,
and in a second round SIGKILL) and measures, for each restart: the time until /v1/status/leader
answers, until a read of the last key written returns it, the agent's RSS, and the sizes of the
snapshot and log directories. Everything runs on 127.0.0.1 and the children are stopped by PID.

    .venv/bin/python bench/restart.py [--keys N] [--writers W]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

from ports import free_dual_port, free_port

RESULTS = Path(__file__).resolve().parent / "results"




def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Agent:
    def __init__(self, data_dir: Path, log: Path) -> None:
        self.http = free_port()
        self.args = [
            sys.executable, "-m", "proconsul", "agent", "-server", "-bootstrap-expect=1",
            f"-data-dir={data_dir}", "-bind=127.0.0.1", f"-http-port={self.http}",
            f"-server-port={free_port()}", f"-serf-lan-port={free_dual_port()}",
            f"-serf-wan-port={free_dual_port()}", "-dns-port=-1", "-node=restart-bench",
            # each /v1/txn of 128 keys is one log entry: snapshot every 4,096 entries (~524k
            # keys) so a restart reads a snapshot and then replays the log behind it
            "-hcl", "raft_snapshot_threshold = 4096",
        ]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def start(self, deadline: float = 900.0) -> float:
        """Start and return seconds until /v1/status/leader names a leader."""
        started = time.perf_counter()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT)
        while time.perf_counter() - started < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"agent exited {self.proc.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(self.url + "/v1/status/leader", timeout=2) as r:
                    if json.loads(r.read()):
                        return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(0.02)
        raise SystemExit("agent did not start in time")

    def rss_mb(self) -> float:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def raft_stats(url: str) -> dict[str, str]:
    with urllib.request.urlopen(url + "/v1/agent/self", timeout=10) as r:
        return dict(json.loads(r.read())["Stats"]["raft"])


async def load(url: str, keys: int, writers: int, value: bytes) -> float:
    b64 = base64.b64encode(value).decode()
    batches = [range(i, min(i + 128, keys)) for i in range(0, keys, 128)]
    pending = iter(batches)
    done = 0
    started = time.perf_counter()

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done
        for batch in pending:
            ops = [{"KV": {"Verb": "set", "Key": f"restart/{i:08d}", "Value": b64}} for i in batch]
            async with session.put(f"{url}/v1/txn", data=json.dumps(ops)) as r:
                if r.status != 200:
                    raise SystemExit(f"load failed: {r.status} {await r.text()}")
            done += len(batch)
            if done % 100_000 < 128:
                progress(f"loaded {done:,} keys")

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(writers)))
    return time.perf_counter() - started


def read_back(url: str, key: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(f"{url}/v1/kv/{key}", timeout=30) as r:
        assert r.status == 200
    return time.perf_counter() - started


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / (1 << 20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--writers", type=int, default=8)
    args = parser.parse_args(argv)
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="proconsul-restart-") as tmp:
        data = Path(tmp) / "data"
        log = Path(tmp) / "agent.log"
        agent = Agent(data, log)
        try:
            agent.start()
            progress(f"loading {args.keys:,} keys with {args.writers} writers")
            took = asyncio.run(load(agent.url, args.keys, args.writers, b"x" * 64))
            progress(f"loaded in {took:.1f}s ({args.keys / took:,.0f} keys/s)")
            stats = raft_stats(agent.url)
            rows.append(f"| load | {args.keys:,} keys in {took:.1f}s | "
                        f"{args.keys / took:,.0f} keys/s | RSS {agent.rss_mb():.0f} MB | "
                        f"snapshot index {stats['last_snapshot_index']}, last index "
                        f"{stats['last_log_index']} |")
            last_key = f"restart/{args.keys - 1:08d}"
            for how, sig in (("SIGTERM", signal.SIGTERM), ("SIGKILL", signal.SIGKILL)):
                agent.stop(sig)
                snaps = dir_mb(data / "raft" / "snapshots")
                logs = dir_mb(data / "raft") - snaps
                progress(f"restarting after {how}")
                agent = Agent(data, log)
                ready = agent.start()
                read = read_back(agent.url, last_key)
                rows.append(f"| restart after {how} | leader after {ready:.2f}s | "
                            f"first read {read * 1000:.1f} ms | RSS {agent.rss_mb():.0f} MB | "
                            f"snapshots {snaps:.1f} MB, log {logs:.1f} MB |")
                progress(rows[-1])
        finally:
            agent.stop(signal.SIGTERM)
    report = "\n".join([
        f"# Restart with {args.keys:,} KV entries", "",
        "| step | time | | memory | on disk |", "| --- | --- | --- | --- | --- |", *rows, "",
    ])
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "restart.md").write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The pieces bench/checks.py and bench/health_watch.py share: a `proconsul agent -dev` child
process (started on a free port, optionally pinned to core 0, stopped by PID only) and the
/proc readings both report (CPU seconds, RSS)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ports import free_dual_port, free_port

START_TIMEOUT = 30.0
_T0 = time.monotonic()

_CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The agent did not start, or the bench could not reach the state it measures."""


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", flush=True)




def cpu_seconds(pid: int) -> float:
    """utime+stime of the whole process (every thread), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Agent:
    """The `proconsul agent -dev` child; stopped by PID only."""

    def __init__(self, tmp: Path, pin: bool) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "proconsul", "agent", "-dev", f"-http-port={self.port}",
                "-dns-port=-1", "-node=bench", f"-serf-lan-port={free_dual_port()}",
                f"-serf-wan-port={free_dual_port()}", f"-server-port={free_port()}",
                "-hcl", "limits { http_max_conns_per_client = 20000 }"]
        if pin:
            argv = ["taskset", "-c", "0", *argv]
        self.log_path = tmp / "agent.log"
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=tmp, env=env)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"agent exited {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(
                    self.base + "/v1/status/leader", timeout=1) as r:
                if r.read().strip() not in (b"", b'""'):
                    return
            time.sleep(0.1)
        raise BenchError(f"agent did not answer within {START_TIMEOUT:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)



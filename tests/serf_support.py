"""Real `serf` agents for interoperability tests: started on free ports, stopped by PID."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tests.support import free_dual_port, free_port

T = TypeVar("T")


@dataclass
class SerfProcess:
    name: str
    gossip: int
    rpc: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.gossip}"

    def cli(self, *args: str, timeout: float = 20.0, check: bool = True) -> str:
        done = subprocess.run(["serf", args[0], f"-rpc-addr=127.0.0.1:{self.rpc}", *args[1:]],
                              capture_output=True, timeout=timeout)
        text = (done.stdout + done.stderr).decode()
        if check:
            assert done.returncode == 0, f"serf {' '.join(args)}: {text}"
        return text

    def members(self) -> dict[str, dict[str, Any]]:
        """name -> member (Status, Tags, Addr) from `serf members -format=json`."""
        out = json.loads(self.cli("members", "-format=json"))
        return {m["name"]: m for m in out["members"]}

    def status_of(self, name: str) -> str:
        try:
            member = self.members().get(name)
        except (AssertionError, ValueError, subprocess.TimeoutExpired):
            return "unknown"
        return str(member["status"]) if member else "none"

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def start_serf(name: str, workdir: Path, tags: dict[str, str] | None = None,
               encrypt: str | None = None, extra: list[str] | None = None) -> SerfProcess:
    gossip, rpc = free_dual_port(), free_port()
    log = workdir / f"serf-{name}.log"
    args = ["serf", "agent", f"-node={name}", f"-bind=127.0.0.1:{gossip}",
            f"-rpc-addr=127.0.0.1:{rpc}", "-log-level=debug"]
    for key, value in (tags or {}).items():
        args += ["-tag", f"{key}={value}"]
    if encrypt:
        args.append(f"-encrypt={encrypt}")
    args += extra or []
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    agent = SerfProcess(name, gossip, rpc, proc, log)
    wait_for(lambda: agent.status_of(name) == "alive", 15, f"serf agent {name} up")
    return agent


def wait_for(check: Callable[[], T], timeout: float = 30.0, what: str = "condition",
             every: float = 0.2) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(every)

"""Helpers for tests that run real agent processes on 127.0.0.1 with free ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it, so parallel tests do not collide)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_dual_port() -> int:
    """A port free on 127.0.0.1 for both TCP and UDP now (DNS and gossip listen on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise OSError("no port free for both TCP and UDP")


def proconsul_cmd() -> list[str]:
    """The command that runs the CLI from the installed package under this interpreter."""
    return [sys.executable, "-m", "proconsul"]


def _flag_port(args: list[str], flag: str) -> int:
    for arg in args:
        if arg.startswith(flag + "="):
            return int(arg.split("=", 1)[1])
    return 0


class AgentProcess:
    """A `proconsul agent -dev` child process with its own HTTP port; stopped by PID only."""

    def __init__(self, workdir: Path, extra: list[str] | None = None, dev: bool = True,
                 dns: bool = False) -> None:
        self.http_port = free_port()
        #: the DNS port (UDP and TCP) when `dns` is on, else None
        self.dns_port: int | None = free_dual_port() if dns else None
        self.workdir = workdir
        self.log_path = workdir / f"agent-{self.http_port}.log"
        args = [*proconsul_cmd(), "agent"]
        if dev:
            args.append("-dev")
        extra = list(extra or [])
        #: the gossip ports (UDP and TCP), unless the caller chose its own
        self.serf_lan_port = _flag_port(extra, "-serf-lan-port") or free_dual_port()
        self.serf_wan_port = _flag_port(extra, "-serf-wan-port") or free_dual_port()
        #: the server RPC port (client agents reach this agent there when it is a server)
        self.server_port = _flag_port(extra, "-server-port") or free_port()
        args += [
            f"-http-port={self.http_port}",
            f"-dns-port={self.dns_port or -1}",
            f"-serf-lan-port={self.serf_lan_port}",
            f"-serf-wan-port={self.serf_wan_port}",
            f"-server-port={self.server_port}",
            *([] if any(a.startswith("-node=") for a in extra) else ["-node=test-node"]),
            *[a for a in extra
              if not a.startswith(("-serf-lan-port=", "-serf-wan-port=", "-server-port="))],
        ]
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http_addr(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def url(self) -> str:
        return f"http://{self.http_addr}"

    def start(self, timeout: float = 20.0, require_leader: bool = True) -> AgentProcess:
        """Start and wait until the HTTP API answers (and, by default, knows a leader)."""
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.args, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.workdir,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.close()
                raise RuntimeError(f"agent exited {self.proc.returncode}:\n{self.read_log()}")
            try:
                with urllib.request.urlopen(self.url + "/v1/status/leader", timeout=1) as r:
                    if json.loads(r.read()) or not require_leader:
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"agent did not become ready:\n{self.read_log()}")

    def read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc is None or (self.log.closed and self.proc.returncode is not None):
            return self.proc.returncode if self.proc is not None else None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        return self.proc.returncode


def run_cli(args: list[str], http_addr: str, timeout: float = 30.0,
            input: bytes | None = None, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[bytes]:
    """Run `proconsul <args>` against the agent at http_addr and capture its output."""
    full_env = {**os.environ, "CONSUL_HTTP_ADDR": http_addr, **(env or {})}
    return subprocess.run([*proconsul_cmd(), *args], capture_output=True, timeout=timeout,
                          input=input, env=full_env)

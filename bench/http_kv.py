"""HTTP KV benchmark: the -dev agent's /v1/kv against etcd 3.4's JSON gateway, and the HTTP stacks.

What it measures, all with wrk (a C load generator, ≥25x cheaper per request than a Python
client; see perf-anchors §0) on 127.0.0.1, 1,000 keys with 256-byte values:

a. **ours vs etcd.** `proconsul agent -dev` (compiled twins when built) and a single etcd 3.4
   node (own temp data dir) run as child processes. For PUT and GET at 1, 16 and 64 connections:
   req/s, p50 and p99 of each, and the ratio ours/etcd. Ours: `PUT /v1/kv/bench/%08d` with the
   raw value and `GET /v1/kv/bench/%08d` (the -dev agent's indented JSON answer); etcd:
   `POST /v3/kv/put` and `POST /v3/kv/range` with base64 JSON bodies (perf-anchors A1). Both
   cycle over the 1,000 keys. Targets printed beside the table: GET at 64 connections at least
   1.5x etcd, every PUT cell at least 1.0x etcd.
b. **HTTP stacks.** The same in-memory server and API application served by bench/serve_stack.py
   through our httptools protocol (compiled and pure `wire` module) and through aiohttp on
   uvloop, KV GET at 64 and 1 connections, compact JSON; plus the -dev default (indented JSON) on
   httptools with the compiled module. The rule being checked: take the httptools protocol if it
   is at least 1.5x aiohttp on KV GET; the compiled/pure ratio shows what the compiled
   per-request module buys.
c. **CPU.** Server CPU seconds (utime+stime of /proc/<pid>/stat, all threads) around each wrk
   run, printed as µs of CPU per request and as a share of one core, beside wrk's share and
   the share of everything else on the machine (from /proc/stat). Runs disturbed by other work
   are marked and listed under "notes" in the report.

Servers are pinned to core 0 and wrk to core 1 with taskset when it exists and there are two
cores (perf-anchors §A6); `--etcd-cpus` can give etcd more. The machine is shared: repeat cells
(`--repeat 3`) and read the min–max spread before trusting a ratio.

    .venv/bin/python bench/http_kv.py [--quick] [--duration S] [--repeat N]
                                      [--skip-etcd] [--skip-stacks] [--etcd-cpus LIST]
                                      [--server]

Progress lines go to stdout as cells finish; the final markdown report is printed and written to
bench/results/http_kv.md. Exit status 0, or 2 when a server does not start.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import FrameType

from ports import free_dual_port, free_port

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WRK_DIR = BENCH_DIR / "wrk"
RESULTS = BENCH_DIR / "results" / "http_kv.md"

KEYS = 1000
VALUE_SIZE = 256
PREFIX = "bench/"
START_TIMEOUT = 30.0
WARMUP_SECONDS = 1
GET_TARGET = 1.5
PUT_TARGET = 1.0
STACK_RULE = 1.5
STALL_SHARE = 0.8
OTHER_SHARE = 0.35

_T0 = time.monotonic()
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class PeerError(Exception):
    """A server did not start or does not answer as expected."""


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", flush=True)


def value_bytes(size: int = VALUE_SIZE) -> bytes:
    """'a'..'z' repeated: the value bench/wrk/*.lua writes."""
    return bytes(97 + k % 26 for k in range(size))


def key_name(k: int) -> str:
    return f"{PREFIX}{k:08d}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")




# ----------------------------------------------------------------------------- child processes


@dataclass
class Child:
    """A server started by this script; stopped by PID only."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int

    def cpu_seconds(self) -> float:
        """utime+stime of the whole process (every thread), in seconds."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        # fields[0] is the state (field 3 of proc(5)); utime and stime are fields 14 and 15.
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


class Children:
    """Every child process of the run, so that one `finally` stops them all."""

    def __init__(self, tmp: Path, pin: bool) -> None:
        self.tmp = tmp
        self.pin = pin
        self.items: list[Child] = []

    def start(self, name: str, argv: list[str], port: int, cpus: str | None,
              env: dict[str, str] | None = None) -> Child:
        if self.pin and cpus is not None:
            argv = ["taskset", "-c", cpus, *argv]
        log_path = self.tmp / f"{name}.log"
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, cwd=self.tmp)
        child = Child(name, proc, log_path, port)
        self.items.append(child)
        return child

    def stop(self, child: Child) -> None:
        child.stop()
        if child in self.items:
            self.items.remove(child)

    def stop_all(self) -> None:
        for child in reversed(self.items):
            with contextlib.suppress(Exception):
                child.stop()
        self.items.clear()


def child_env(pure: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PROCONSUL_NO_EXTENSIONS", None)
    if pure:
        env["PROCONSUL_NO_EXTENSIONS"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
    own = conn is None
    if conn is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        if own:
            conn.close()


def wait_ready(child: Child, probe: Callable[[], bool]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not child.alive():
            raise PeerError(f"{child.name} exited with status {child.proc.returncode}:\n"
                            f"{child.log_tail()}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if probe():
                return
        time.sleep(0.1)
    raise PeerError(f"{child.name} did not answer within {START_TIMEOUT:.0f}s:\n"
                    f"{child.log_tail()}")


def consul_ready(port: int) -> bool:
    status, body = request(port, "GET", "/v1/status/leader")
    return status == 200 and body.strip() not in (b"", b'""')


def start_agent(children: Children, server: bool = False) -> Child:
    port = free_port()
    mode = ["-dev", f"-server-port={free_port()}", f"-serf-lan-port={free_dual_port()}",
            f"-serf-wan-port={free_dual_port()}"]
    if server:
        mode = ["-server", "-bootstrap-expect=1", f"-data-dir={children.tmp / 'agent-data'}",
                "-bind=127.0.0.1", f"-server-port={free_port()}",
                f"-serf-lan-port={free_dual_port()}", f"-serf-wan-port={free_dual_port()}"]
    argv = [sys.executable, "-m", "proconsul", "agent", *mode, f"-http-port={port}",
            "-dns-port=-1", "-node=bench"]
    child = children.start("proconsul-agent", argv, port, "0", child_env())
    wait_ready(child, lambda: consul_ready(port))
    return child


def start_etcd(children: Children, cpus: str | None) -> Child:
    etcd = shutil.which("etcd")
    if etcd is None:
        raise PeerError("etcd not found (Debian package etcd-server); use --skip-etcd to run "
                        "without it")
    client, peer = free_port(), free_port()
    curl, purl = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    argv = [etcd, "--name", "s1", "--data-dir", str(children.tmp / "etcd"),
            "--listen-client-urls", curl, "--advertise-client-urls", curl,
            "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
            "--initial-cluster", f"s1={purl}", "--logger", "zap", "--log-level", "warn"]
    child = children.start("etcd", argv, client, cpus, dict(os.environ))

    def ready() -> bool:
        status, body = request(client, "GET", "/health")
        return status == 200 and json.loads(body).get("health") == "true"

    wait_ready(child, ready)
    return child


def start_stack(children: Children, stack: str, pure: bool, pretty: bool) -> tuple[Child, str]:
    """Start bench/serve_stack.py; returns the child and the wire module it reports."""
    port = free_port()
    argv = [sys.executable, str(BENCH_DIR / "serve_stack.py"), "--stack", stack,
            "--port", str(port)]
    if pure:
        argv.append("--pure")
    if pretty:
        argv.append("--pretty")
    name = f"stack-{stack}{'-pure' if pure else ''}{'-pretty' if pretty else ''}"
    child = children.start(name, argv, port, "0", child_env(pure))
    wait_ready(child, lambda: consul_ready(port))
    match = re.search(r"^READY .*wire=(\S+)", child.log_path.read_text(errors="replace"), re.M)
    return child, match.group(1) if match else "?"


def seed_consul(port: int) -> None:
    value = value_bytes()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for k in range(KEYS):
            status, body = request(port, "PUT", f"/v1/kv/{key_name(k)}", value, conn=conn)
            if status != 200 or body.strip() != b"true":
                raise PeerError(f"seeding PUT on :{port} answered {status} {body[:200]!r}")
    finally:
        conn.close()
    status, body = request(port, "GET", f"/v1/kv/{key_name(KEYS - 1)}")
    if status != 200 or json.loads(body)[0]["Value"] != b64(value):
        raise PeerError(f"GET after seeding on :{port} answered {status} {body[:200]!r}")


def seed_etcd(port: int) -> None:
    value = b64(value_bytes())
    headers = {"Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for k in range(KEYS):
            body = json.dumps({"key": b64(key_name(k).encode()), "value": value}).encode()
            status, answer = request(port, "POST", "/v3/kv/put", body, headers, conn=conn)
            if status != 200:
                raise PeerError(f"seeding etcd answered {status} {answer[:200]!r}")
    finally:
        conn.close()
    body = json.dumps({"key": b64(key_name(KEYS - 1).encode())}).encode()
    status, answer = request(port, "POST", "/v3/kv/range", body, headers)
    kvs = json.loads(answer).get("kvs") if status == 200 else None
    if not kvs or kvs[0].get("value") != value:
        raise PeerError(f"etcd range after seeding answered {status} {answer[:200]!r}")


# ----------------------------------------------------------------------------- wrk


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    seconds: float
    cpu_s: float
    client_cpu_s: float
    other_cpu_s: float
    non2xx: int
    socket_errors: int
    #: Why this run is suspect (see `disturbance`), or "" when it looked clean.
    disturbed: str = ""

    @property
    def server_share(self) -> float:
        return self.cpu_s / self.seconds if self.seconds else 0.0

    @property
    def client_share(self) -> float:
        return self.client_cpu_s / self.seconds if self.seconds else 0.0

    @property
    def other_share(self) -> float:
        return self.other_cpu_s / self.seconds if self.seconds else 0.0


def vm_busy_seconds() -> float:
    """CPU seconds spent on every CPU of this machine, in any process or in interrupts."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    # cpu user nice system idle iowait irq softirq steal ...
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _latency(text: str, pct: str) -> float:
    match = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
    if match is None:
        return float("nan")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(text: str) -> tuple[float, float, float, int, int, int]:
    """req/s, p50 ms, p99 ms, requests, non-2xx/3xx answers, socket errors from wrk's output."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    total = re.search(r"^\s*(\d+) requests in ", text, re.M)
    if rps is None or total is None:
        raise ValueError(f"unexpected wrk output:\n{text}")
    non2xx = re.search(r"^\s*Non-2xx or 3xx responses:\s+(\d+)", text, re.M)
    errors = re.search(r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), "
                       r"timeout (\d+)", text, re.M)
    return (float(rps.group(1)), _latency(text, "50"), _latency(text, "99"),
            int(total.group(1)), int(non2xx.group(1)) if non2xx else 0,
            sum(int(g) for g in errors.groups()) if errors else 0)


def wrk(child: Child, script: str, op: str, conns: int, seconds: int, pin: bool) -> Run:
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s",
            str(WRK_DIR / script), f"http://127.0.0.1:{child.port}", "--", op, str(KEYS),
            str(VALUE_SIZE), PREFIX]
    if pin:
        argv = ["taskset", "-c", "1", *argv]
    cpu0 = child.cpu_seconds()
    busy0 = vm_busy_seconds()
    # The servers are never reaped during a run, so the children's rusage grows by wrk alone.
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 20,
                          check=False)
    elapsed = time.monotonic() - t0
    cpu = child.cpu_seconds() - cpu0
    busy = vm_busy_seconds() - busy0
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    if done.returncode != 0:
        raise PeerError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    if not child.alive():
        raise PeerError(f"{child.name} died under load:\n{child.log_tail()}")
    rps, p50, p99, total, non2xx, errors = parse_wrk(done.stdout)
    other = max(0.0, busy - cpu - client)
    return Run(rps, p50, p99, total, elapsed, cpu, client, other, non2xx, errors)


@dataclass
class Cell:
    runs: list[Run] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.runs)

    @property
    def p50(self) -> float:
        return statistics.median(r.p50_ms for r in self.runs)

    @property
    def p99(self) -> float:
        return statistics.median(r.p99_ms for r in self.runs)

    @property
    def cpu_us(self) -> float:
        total = sum(r.requests for r in self.runs)
        return sum(r.cpu_s for r in self.runs) / total * 1e6 if total else float("nan")

    @property
    def core_pct(self) -> float:
        wall = sum(r.seconds for r in self.runs)
        return sum(r.cpu_s for r in self.runs) / wall * 100 if wall else float("nan")

    @property
    def client_pct(self) -> float:
        wall = sum(r.seconds for r in self.runs)
        return sum(r.client_cpu_s for r in self.runs) / wall * 100 if wall else float("nan")

    @property
    def other_pct(self) -> float:
        wall = sum(r.seconds for r in self.runs)
        return sum(r.other_cpu_s for r in self.runs) / wall * 100 if wall else float("nan")

    @property
    def disturbed(self) -> list[str]:
        return [r.disturbed for r in self.runs if r.disturbed]

    @property
    def bad(self) -> int:
        return sum(r.non2xx + r.socket_errors for r in self.runs)

    def rps_text(self) -> str:
        if len(self.runs) == 1:
            return f"{self.rps:,.0f}"
        lo, hi = min(r.rps for r in self.runs), max(r.rps for r in self.runs)
        return f"{self.rps:,.0f} ({lo:,.0f}–{hi:,.0f})"


def disturbance(run: Run, cpu_bound: bool) -> str:
    """Why a run is suspect on this shared machine, or "" when it looked clean.

    Other work on the machine (everything but the server and wrk, measured from /proc/stat; it
    includes the kernel's softirq time for our own loopback traffic, ~0.1-0.2 of a core) above
    OTHER_SHARE of a core competes for the two cores. For a single-threaded server under
    enough load to be CPU-bound (`cpu_bound`), neither it nor wrk keeping its core busy means
    the CPU was taken away, by the hypervisor when nothing inside the machine shows it.
    """
    reasons = []
    if run.other_share > OTHER_SHARE:
        reasons.append(f"other work {run.other_share:.0%} of a core")
    if cpu_bound and run.server_share < STALL_SHARE and run.client_share < STALL_SHARE:
        reasons.append(f"server {run.server_share:.0%} and wrk {run.client_share:.0%} of a core")
    return ", ".join(reasons)


def describe(run: Run) -> str:
    per = run.cpu_s / run.requests * 1e6 if run.requests else float("nan")
    text = (f"{run.rps:>9,.0f} req/s  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms  "
            f"CPU {per:6.1f} µs/req  server {run.server_share:4.0%} wrk {run.client_share:4.0%} "
            f"other {run.other_share:4.0%}")
    if run.non2xx or run.socket_errors:
        text += f"  [non-2xx {run.non2xx}, socket errors {run.socket_errors}]"
    return text


def measure(cell: Cell, label: str, child: Child, script: str, op: str, conns: int,
            seconds: int, pin: bool, index: int, repeat: int, cpu_bound: bool) -> None:
    run = wrk(child, script, op, conns, seconds, pin)
    run.disturbed = disturbance(run, cpu_bound)
    cell.runs.append(run)
    flag = f"  <- disturbed: {run.disturbed}" if run.disturbed else ""
    progress(f"{label:<34} {op.upper():<3} c={conns:<3} run {index}/{repeat}  "
             f"{describe(run)}{flag}")


def warm(child: Child, script: str, op: str, pin: bool) -> None:
    wrk(child, script, op, 16, WARMUP_SECONDS, pin)


# ----------------------------------------------------------------------------- report


def ms(value: float) -> str:
    return f"{value:.2f}"


def ratio_text(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs > 0 else "n/a"


@dataclass
class Plan:
    conns: tuple[int, ...]
    seconds: int
    repeat: int
    etcd: bool
    stacks: bool
    pin: bool
    etcd_cpus: str | None
    quick: bool
    #: run ours as a durable server (-server, data dir, fsync per append batch), not -dev
    server: bool = False
    ops: tuple[str, ...] = ("put", "get")

    @property
    def ours(self) -> str:
        return ("`proconsul agent -server -bootstrap-expect=1` (durable: Raft log on disk, "
                "fsync per append batch)" if self.server else
                "`proconsul agent -dev` (indented JSON, as -dev answers)")


@dataclass
class Results:
    plan: Plan
    env: list[str] = field(default_factory=list)
    kv: dict[tuple[str, str, int], Cell] = field(default_factory=dict)
    stacks: dict[tuple[str, int], Cell] = field(default_factory=dict)
    stack_labels: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def cell(self, server: str, op: str, conns: int) -> Cell:
        return self.kv.setdefault((server, op, conns), Cell())


def targets(res: Results) -> list[str]:
    lines = []
    plan = res.plan
    if not plan.etcd:
        return ["- targets: n/a (etcd skipped)"]
    c_max = max(plan.conns)
    get_ours, get_etcd = res.kv.get(("ours", "get", c_max)), res.kv.get(("etcd", "get", c_max))
    if get_ours and get_etcd:
        r = get_ours.rps / get_etcd.rps
        verdict = "MET" if r >= GET_TARGET else "MISSED"
        lines.append(f"- GET c={c_max}: ours/etcd = {r:.2f}x, target >= {GET_TARGET}x: "
                     f"**{verdict}**")
    for conns in plan.conns:
        ours, etcd = res.kv.get(("ours", "put", conns)), res.kv.get(("etcd", "put", conns))
        if ours and etcd:
            r = ours.rps / etcd.rps
            verdict = "MET" if r >= PUT_TARGET else "MISSED"
            lines.append(f"- PUT c={conns}: ours/etcd = {r:.2f}x, target >= {PUT_TARGET}x: "
                         f"**{verdict}**")
    return lines


def report(res: Results) -> str:
    plan = res.plan
    title = ("# HTTP KV benchmark: proconsul " + ("-server" if plan.server else "-dev")
             + (" vs etcd 3.4" if plan.etcd else ""))
    out = [title + (", and the HTTP stacks" if plan.stacks else ""), ""]
    out += [f"- {line}" for line in res.env]
    out.append("")
    if res.kv:
        out += ["## a. ours vs etcd (wrk -t1, keep-alive, 1,000 keys, 256-byte values)", ""]
        out.append(f"Ours: {plan.ours}, "
                   "`PUT|GET /v1/kv/bench/%08d`. "
                   "etcd: `POST /v3/kv/put|range` on the JSON gateway, base64 key/value. "
                   "Both cycle over the 1,000 keys. Latencies in ms; req/s is the median of "
                   f"{plan.repeat} run(s) of {plan.seconds}s (min–max when repeated).")
        out.append("")
        if plan.etcd:
            out.append("| op | conns | ours req/s | ours p50 | ours p99 | etcd req/s | etcd p50 "
                       "| etcd p99 | ours/etcd |")
            out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        else:
            out.append("| op | conns | ours req/s | ours p50 | ours p99 |")
            out.append("| --- | ---: | ---: | ---: | ---: |")
        for op in plan.ops:
            for conns in plan.conns:
                ours = res.kv.get(("ours", op, conns))
                if ours is None:
                    continue
                row = [op.upper(), str(conns), ours.rps_text(), ms(ours.p50), ms(ours.p99)]
                etcd = res.kv.get(("etcd", op, conns))
                if plan.etcd and etcd is not None:
                    row += [etcd.rps_text(), ms(etcd.p50), ms(etcd.p99),
                            f"**{ratio_text(ours.rps, etcd.rps)}**"]
                elif plan.etcd:
                    row += ["-", "-", "-", "-"]
                out.append("| " + " | ".join(row) + " |")
        out += ["", "Targets (informative, never a failure):", ""]
        out += targets(res)
        out += ["", "### c. server CPU (utime+stime of the server process around each run)", ""]
        header = "| op | conns | ours µs CPU/req | ours core use | wrk | other |"
        rule = "| --- | ---: | ---: | ---: | ---: | ---: |"
        if plan.etcd:
            header += " etcd µs CPU/req | etcd core use | wrk | other |"
            rule += " ---: | ---: | ---: | ---: |"
        out += [header, rule]
        for op in plan.ops:
            for conns in plan.conns:
                ours = res.kv.get(("ours", op, conns))
                if ours is None:
                    continue
                row = [op.upper(), str(conns), f"{ours.cpu_us:.1f}", f"{ours.core_pct:.0f}%",
                       f"{ours.client_pct:.0f}%", f"{ours.other_pct:.0f}%"]
                etcd = res.kv.get(("etcd", op, conns))
                if plan.etcd and etcd is not None:
                    row += [f"{etcd.cpu_us:.1f}", f"{etcd.core_pct:.0f}%",
                            f"{etcd.client_pct:.0f}%", f"{etcd.other_pct:.0f}%"]
                out.append("| " + " | ".join(row) + " |")
        out.append("")
        out.append("Core use is CPU seconds over wall seconds (100% = one core busy; etcd is "
                   "multi-threaded and can exceed it when not pinned to one core). wrk: the "
                   "load generator's share; other: everything else on the machine during the "
                   "run, including the kernel's softirq time for the loopback traffic.")
        out.append("")
    if res.stacks:
        out += ["## b. HTTP stacks, KV GET (same -dev server and APIApp; bench/serve_stack.py)",
                ""]
        out.append("JSON is compact (`pretty=False`) in the stack comparison so that encoding "
                   "does not hide the stack; the last rows are the -dev default (indented).")
        out.append("")
        out.append("| stack | conns | req/s | p50 | p99 | µs CPU/req | core use | wrk | other |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for key, label in res.stack_labels.items():
            for conns in (64, 1):
                cell = res.stacks.get((key, conns))
                if cell is None:
                    continue
                out.append(f"| {label} | {conns} | {cell.rps_text()} | {ms(cell.p50)} | "
                           f"{ms(cell.p99)} | {cell.cpu_us:.1f} | {cell.core_pct:.0f}% | "
                           f"{cell.client_pct:.0f}% | {cell.other_pct:.0f}% |")
        out.append("")
        for conns in (64, 1):
            comp = res.stacks.get(("compiled", conns))
            pure = res.stacks.get(("pure", conns))
            aio = res.stacks.get(("aiohttp", conns))
            pretty = res.stacks.get(("pretty", conns))
            parts = []
            if comp and aio:
                parts.append(f"httptools-compiled/aiohttp **{ratio_text(comp.rps, aio.rps)}**")
            if comp and pure:
                parts.append(f"compiled/pure wire **{ratio_text(comp.rps, pure.rps)}**")
            if comp and pretty:
                parts.append(f"compact/indented JSON {ratio_text(comp.rps, pretty.rps)}")
            if parts:
                out.append(f"- c={conns}: " + ", ".join(parts))
        comp, aio = res.stacks.get(("compiled", 64)), res.stacks.get(("aiohttp", 64))
        if comp and aio:
            r = comp.rps / aio.rps
            pick = "the httptools protocol" if r >= STACK_RULE else "aiohttp (rule not met)"
            out.append(f"- rule (httptools protocol if >= {STACK_RULE}x aiohttp on KV GET "
                       f"c=64): {r:.2f}x, pick **{pick}**")
        out.append("")
    if res.notes:
        out += ["## notes", ""]
        out += [f"- {note}" for note in res.notes]
        out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------------------- phases


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src",
                                "ext"], capture_output=True, text=True, timeout=10,
                               check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev.strip() + (" (src/ext modified)" if dirty.strip() else "")


def wire_implementation(pure: bool = False) -> str:
    code = "from proconsul.http import wire; print(wire.IMPLEMENTATION)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=child_env(pure), timeout=60, check=False)
    return done.stdout.strip() or "unavailable"


def tool_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not found"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def environment(plan: Plan) -> list[str]:
    def pkg(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "missing"

    if not plan.pin:
        pinning = "none (taskset missing or fewer than two cores)"
    elif plan.etcd_cpus is None:
        pinning = "ours `taskset -c 0`, wrk `taskset -c 1`, etcd not pinned"
    else:
        pinning = f"ours `taskset -c 0`, etcd `taskset -c {plan.etcd_cpus}`, wrk `taskset -c 1`"
    return [
        f"date {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} CPUs, "
        f"{platform.platform()}, Python {platform.python_version()}",
        f"proconsul {git_rev()}, wire module of the agent: `{wire_implementation()}` "
        f"(c = compiled twin), uvloop {pkg('uvloop')}, httptools {pkg('httptools')}, "
        f"aiohttp {pkg('aiohttp')}",
        f"{tool_version(['wrk', '-v'])}; {tool_version(['etcd', '--version'])}",
        f"pinning: {pinning}",
        f"cells: {plan.seconds}s each, {plan.repeat} run(s) per cell, conns {plan.conns}"
        + (" (--quick)" if plan.quick else ""),
    ]


def kv_phase(res: Results, children: Children) -> None:
    plan = res.plan
    progress("starting proconsul agent " + ("-server (durable)" if plan.server else "-dev"))
    agent = start_agent(children, plan.server)
    servers: list[tuple[str, Child, str]] = [("ours", agent, "consul_kv.lua")]
    if plan.etcd:
        progress("starting etcd")
        etcd = start_etcd(children, plan.etcd_cpus if plan.pin else None)
        servers.append(("etcd", etcd, "etcd_kv.lua"))
    progress(f"seeding {KEYS} keys of {VALUE_SIZE} bytes")
    seed_consul(agent.port)
    if plan.etcd:
        seed_etcd(servers[1][1].port)
    for op in plan.ops:
        for _, child, script in servers:
            warm(child, script, op, plan.pin)
        for conns in plan.conns:
            # Alternate the servers inside each cell so drifting background load hits both.
            for i in range(1, plan.repeat + 1):
                for name, child, script in servers:
                    ours_label = "ours (proconsul -server)" if plan.server else "ours (-dev)"
                    label = ours_label if name == "ours" else "etcd (JSON gateway)"
                    measure(res.cell(name, op, conns), label, child, script, op, conns,
                            plan.seconds, plan.pin, i, plan.repeat,
                            name == "ours" and conns >= 16)
    for _, child, _ in servers:
        children.stop(child)


STACK_VARIANTS: tuple[tuple[str, str, bool, bool, str], ...] = (
    ("compiled", "httptools", False, False, "httptools + compiled wire"),
    ("pure", "httptools", True, False, "httptools + pure wire"),
    ("aiohttp", "aiohttp", False, False, "aiohttp web server on uvloop"),
    ("pretty", "httptools", False, True, "httptools + compiled, indented JSON"),
)


def stack_phase(res: Results, children: Children) -> None:
    plan = res.plan
    running: list[tuple[str, Child]] = []
    for key, stack, pure, pretty, label in STACK_VARIANTS:
        progress(f"starting stack server: {label}")
        child, wire_impl = start_stack(children, stack, pure, pretty)
        expected = "py" if pure else ("-" if stack == "aiohttp" else "c")
        if wire_impl != expected:
            res.notes.append(f"{label}: wire module reported `{wire_impl}`, expected "
                             f"`{expected}`; the compiled/pure ratio is not meaningful")
        seed_consul(child.port)
        res.stack_labels[key] = label
        running.append((key, child))
    for _key, child in running:
        warm(child, "consul_kv.lua", "get", plan.pin)
    for conns in (64, 1):
        for i in range(1, plan.repeat + 1):
            for key, child in running:
                cell = res.stacks.setdefault((key, conns), Cell())
                measure(cell, res.stack_labels[key], child, "consul_kv.lua", "get", conns,
                        plan.seconds, plan.pin, i, plan.repeat, conns >= 16)
    for _, child in running:
        children.stop(child)


# ----------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="1s per cell, 1 and 64 connections (CI smoke)")
    parser.add_argument("--duration", type=int, default=None, help="seconds per wrk run (5)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per cell, median reported (3 recommended)")
    parser.add_argument("--skip-etcd", action="store_true", help="ours only in part a")
    parser.add_argument("--skip-stacks", action="store_true", help="skip part b")
    parser.add_argument("--conns", default="",
                        help="comma list of connection counts (default 1,16,64)")
    parser.add_argument("--ops", default="put,get", choices=["put,get", "put", "get"],
                        help="which operations part a measures")
    parser.add_argument("--server", action="store_true",
                        help="run ours as a durable server on a temp data dir instead of -dev")
    parser.add_argument("--etcd-cpus", default="0",
                        help="taskset CPU list for etcd (default 0, like ours); 'all' leaves "
                             "etcd unpinned")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.repeat > 9:
        parser.error("--repeat must be between 1 and 9")
    if args.duration is not None and not 1 <= args.duration <= 60:
        parser.error("--duration must be between 1 and 60 seconds")
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    seconds = args.duration or (1 if args.quick else 5)
    pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    return Plan(
        conns=(tuple(int(c) for c in args.conns.split(",")) if args.conns
               else (1, 64) if args.quick else (1, 16, 64)),
        seconds=seconds,
        repeat=args.repeat,
        etcd=not args.skip_etcd,
        stacks=not args.skip_stacks,
        pin=pin,
        etcd_cpus=None if args.etcd_cpus == "all" else args.etcd_cpus,
        quick=args.quick,
        server=args.server,
        ops=tuple(op for op in args.ops.split(",") if op),
    )


def estimate(plan: Plan) -> float:
    servers = 2 if plan.etcd else 1
    kv = 2 * len(plan.conns) * plan.repeat * servers * (plan.seconds + 0.3)
    kv += 2 * servers * (WARMUP_SECONDS + 0.3) + 8
    stacks = 0.0
    if plan.stacks:
        stacks = 2 * plan.repeat * len(STACK_VARIANTS) * (plan.seconds + 0.3)
        stacks += len(STACK_VARIANTS) * (WARMUP_SECONDS + 4)
    return kv + stacks


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    if shutil.which("wrk") is None:
        print("wrk not found (Debian package wrk)", file=sys.stderr)
        return 2
    res = Results(plan)
    res.env = environment(plan)
    for line in res.env:
        progress(line)
    progress(f"planned duration about {estimate(plan) / 60:.1f} min; load average {loadavg()}")
    load_start = loadavg()
    with sigterm_as_exit(), tempfile.TemporaryDirectory(prefix="http_kv_") as tmp:
        children = Children(Path(tmp), plan.pin)
        try:
            kv_phase(res, children)
            if plan.stacks:
                stack_phase(res, children)
        except PeerError as err:
            children.stop_all()
            print(f"\nhttp_kv: a server failed: {err}", file=sys.stderr)
            return 2
        finally:
            children.stop_all()
    res.env.append(f"load average (1/5/15 min) at start {load_start}, at end {loadavg()}; "
                   f"total {time.monotonic() - _T0:.0f}s")
    bad = [f"{server} {op.upper()} c={conns}: {cell.bad} non-2xx answers or socket errors"
           for (server, op, conns), cell in res.kv.items() if cell.bad]
    bad += [f"stack {key} c={conns}: {cell.bad} non-2xx answers or socket errors"
            for (key, conns), cell in res.stacks.items() if cell.bad]
    res.notes += bad
    suspects = [(f"{server} {op.upper()} c={conns}", cell)
                for (server, op, conns), cell in res.kv.items()]
    suspects += [(f"stack {key} c={conns}", cell) for (key, conns), cell in res.stacks.items()]
    res.notes += [f"{name}: {len(cell.disturbed)} of {len(cell.runs)} run(s) disturbed "
                  f"({'; '.join(cell.disturbed)}): compare with the min–max and rerun before "
                  "trusting that cell" for name, cell in suspects if cell.disturbed]
    text = report(res)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n")
    print()
    print(text)
    print(f"(written to {RESULTS.relative_to(REPO)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""DNS load benchmark: the -dev agent's DNS interface against NSD, a native authoritative server.

What it measures, with dnsperf (a C load generator) over UDP on 127.0.0.1:

- **servers.** `proconsul agent -dev` twice, once with the compiled twins (`c`) and once with
  `PROCONSUL_NO_EXTENSIONS=1` (`py`, pure twins), and NSD 4 (`nsd`, one server process,
  response rate limiting off) serving a zone `consul.` with the same records.
- **data.** One service `web` with 100 instances, one per node `node-000`..`node-099`
  (10.0.x.y, port 8080+i, no checks), registered through `PUT /v1/catalog/register`; for NSD
  the same answers as static records with TTL 0 (bench/dns_zone.py): 100 A records at
  `web.service.consul.`, 100 SRV records `1 1 <port> node-XXX.node.dc1.consul.` at
  `_web._tcp.service.consul.`, and the nodes' A records.
- **load.** For each query (`web.service.consul A`, `_web._tcp.service.consul SRV`) and server:
  `dnsperf -c 1 -T 1 -q 100 -l <seconds>` (`-e` with `--edns`: EDNS0, so large answers fit in
  UDP), repeated; queries/s (median, min–max), average latency, lost queries, answer size, and
  the server's CPU (utime+stime from /proc of the server and its child processes) as a share
  of one core. Ratios: each of ours against NSD, and compiled/pure.
- **answers.** Before loading, one probe per server and query without and with EDNS (4096),
  so the report shows whether the servers answer alike (a server that sets TC and sends an
  empty answer is doing much less work than one that fills 512 bytes).

Servers are pinned to core 0 and dnsperf to core 1 with taskset when it exists and there are two
cores. All three servers run for the whole measurement (idle when not loaded) and the servers
alternate inside each repeat, so drifting background load hits all of them. The machine is
shared: repeat (`--repeat 3`, the default) and read the min–max spread before trusting a ratio.

    .venv/bin/python bench/dns_load.py [--quick] [--seconds S] [--repeat N]
                                       [--only c,py,nsd] [--edns]

Needs `dnsperf` and `nsd` (Debian packages dnsperf, nsd). Progress lines go to stdout; the
report is printed and written to bench/results/dns_load-<timestamp>.txt (git-ignored). Exit
status 0, or 2 when a server does not start or does not answer DNS (e.g. an agent built
without the DNS server: run `--only nsd` to measure NSD alone).
"""

from __future__ import annotations

import argparse
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
from pathlib import Path
from types import FrameType

from dns_zone import (
    DATACENTER,
    DOMAIN,
    SERVICE,
    Answer,
    catalog_registrations,
    instances,
    probe,
    zone_text,
)
from ports import free_dual_port, free_port

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

START_TIMEOUT = 30.0
DNS_READY_TIMEOUT = 10.0
WARMUP_SECONDS = 1
OUTSTANDING = 100
PROBE_EDNS = 4096
OTHER_SHARE = 0.35

#: (label, query name, type), in the order the report lists them.
QUERIES: tuple[tuple[str, str, str], ...] = (
    ("A", f"{SERVICE}.service.{DOMAIN}", "A"),
    ("SRV", f"_{SERVICE}._tcp.service.{DOMAIN}", "SRV"),
)
SERVERS: dict[str, str] = {
    "c": "proconsul -dev (compiled)",
    "py": "proconsul -dev (pure)",
    "nsd": "NSD",
}

_T0 = time.monotonic()
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class PeerError(Exception):
    """A server did not start or does not answer as expected."""


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", flush=True)






# ----------------------------------------------------------------------------- /proc readings


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        # Everything after the ")" that closes the command name; fields[0] is the state.
        return f.read().rpartition(")")[2].split()


def start_time(pid: int) -> int:
    """Field 22 of proc(5), to tell a process from a later one that reuses its PID."""
    return int(_stat_fields(pid)[19])


def _same_process(pid: int, started: int) -> bool:
    """True while `pid` is the process that started at `started` and has not exited."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return False
    return fields[0] != "Z" and int(fields[19]) == started


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (NSD forks its server processes)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry))[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for kid in parents.get(todo.pop(), []):
            out.append(kid)
            todo.append(kid)
    return out


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of `pid` and its live descendants (every thread), in seconds."""
    total = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = _stat_fields(p)
            total += int(fields[11]) + int(fields[12])
    return total / _CLK_TCK


def vm_busy_seconds() -> float:
    """CPU seconds spent on every CPU of this machine, in any process or in interrupts."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


# ----------------------------------------------------------------------------- child processes


@dataclass
class Child:
    """A server started by this script; stopped by PID only (its descendants too)."""

    key: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    dns_port: int
    http_port: int = 0
    #: (pid, start time) of the descendants seen once the server was up.
    kids: list[tuple[int, int]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return SERVERS[self.key]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.proc.pid)

    def note_kids(self) -> None:
        for pid in descendants(self.proc.pid):
            with contextlib.suppress(OSError, ValueError, IndexError):
                self.kids.append((pid, start_time(pid)))

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.note_kids()  # NSD may have re-forked its server process since it started
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        # A descendant that outlives its parent is still ours while its start time matches:
        # give it a moment to exit on its own (NSD's server processes do), then kill it.
        deadline = time.monotonic() + 3.0
        left = self.kids
        while left:
            left = [(pid, started) for pid, started in left if _same_process(pid, started)]
            if left and time.monotonic() > deadline:
                for pid, _ in left:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)


class Children:
    """Every child process of the run, so that one `finally` stops them all."""

    def __init__(self, tmp: Path, pin: bool) -> None:
        self.tmp = tmp
        self.pin = pin
        self.items: list[Child] = []

    def start(self, key: str, argv: list[str], dns_port: int, http_port: int = 0,
              env: dict[str, str] | None = None) -> Child:
        if self.pin:
            argv = ["taskset", "-c", "0", *argv]
        log_path = self.tmp / f"{key}.log"
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, cwd=self.tmp)
        child = Child(key, proc, log_path, dns_port, http_port)
        self.items.append(child)
        return child

    def stop_all(self) -> None:
        for child in reversed(self.items):
            with contextlib.suppress(Exception):
                child.stop()
        self.items.clear()


def wait_until(child: Child, probe_ok: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise PeerError(f"{child.label} exited with status {child.proc.returncode}:\n"
                            f"{child.log_tail()}")
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
            if probe_ok():
                return
        time.sleep(0.1)
    raise PeerError(f"{child.label} {what} within {timeout:.0f}s:\n{child.log_tail()}")


def child_env(pure: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PROCONSUL_NO_EXTENSIONS", None)
    if pure:
        env["PROCONSUL_NO_EXTENSIONS"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def request(port: int, method: str, path: str, body: bytes | None = None,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
    own = conn is None
    if conn is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        if own:
            conn.close()


def dns_answers(port: int) -> bool:
    """True when the server answers the A query over UDP with NOERROR (EDNS probe).

    NOERROR is enough: a server may set TC and leave the answer empty; what each server puts
    in its answers is compared (and NSD's checked over TCP) in `check_answers`."""
    ans = probe(port, QUERIES[0][1], QUERIES[0][2], PROBE_EDNS, timeout=0.5)
    return ans.rcode == "NOERROR"


def start_agent(children: Children, key: str) -> Child:
    http_port, dns_port = free_port(), free_dual_port()
    argv = [sys.executable, "-m", "proconsul", "agent", "-dev", f"-http-port={http_port}",
            f"-dns-port={dns_port}", f"-node=bench-{key}",
            f"-serf-lan-port={free_dual_port()}", f"-serf-wan-port={free_dual_port()}",
            f"-server-port={free_port()}"]
    child = children.start(key, argv, dns_port, http_port, child_env(pure=key == "py"))

    def leader() -> bool:
        status, body = request(http_port, "GET", "/v1/status/leader")
        return status == 200 and body.strip() not in (b"", b'""')

    wait_until(child, leader, START_TIMEOUT, "did not answer HTTP")
    register(http_port)
    try:
        wait_until(child, lambda: dns_answers(dns_port), DNS_READY_TIMEOUT,
                   f"gave no answer to `{QUERIES[0][1]} A` on 127.0.0.1:{dns_port}/udp")
    except PeerError as err:
        raise PeerError(f"{err}\nThe agent's DNS interface does not answer (is the DNS server "
                        "in this build?). Run `--only nsd` to measure NSD alone.") from None
    child.note_kids()
    return child


def register(http_port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
    try:
        for body in catalog_registrations(instances()):
            status, answer = request(http_port, "PUT", "/v1/catalog/register",
                                     json.dumps(body).encode(), conn=conn)
            if status != 200 or answer.strip() != b"true":
                raise PeerError(f"catalog register on :{http_port} answered {status} "
                                f"{answer[:200]!r}")
    finally:
        conn.close()
    status, answer = request(http_port, "GET", f"/v1/catalog/service/{SERVICE}")
    if status != 200 or len(json.loads(answer)) != len(instances()):
        raise PeerError(f"catalog on :{http_port} does not hold {len(instances())} "
                        f"`{SERVICE}` instances after registering: {status}")


NSD_CONF = """\
server:
    ip-address: 127.0.0.1@{port}
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "{tmp}"
    database: "{tmp}/nsd.db"
    zonelistfile: "{tmp}/zone.list"
    xfrdfile: "{tmp}/xfrd.state"
    xfrdir: "{tmp}"
    pidfile: "{tmp}/nsd.pid"
    logfile: "{tmp}/nsd-server.log"
    verbosity: 0
    hide-version: yes
    rrl-ratelimit: 0
    ipv4-edns-size: {edns}
remote-control:
    control-enable: no
zone:
    name: "{domain}."
    zonefile: "{domain}.zone"
"""


def start_nsd(children: Children) -> Child:
    nsd = shutil.which("nsd") or "/usr/sbin/nsd"
    if not os.path.exists(nsd):
        raise PeerError("nsd not found (Debian package nsd)")
    ntmp = children.tmp / "nsd"
    ntmp.mkdir()
    port = free_dual_port()
    (ntmp / f"{DOMAIN}.zone").write_text(zone_text(instances()))
    conf = ntmp / "nsd.conf"
    conf.write_text(NSD_CONF.format(port=port, tmp=ntmp, domain=DOMAIN, edns=PROBE_EDNS))
    child = children.start("nsd", [nsd, "-d", "-c", str(conf)], port, env=dict(os.environ))
    wait_until(child, lambda: dns_answers(port), START_TIMEOUT,
               f"gave no answer to `{QUERIES[0][1]} A` on 127.0.0.1:{port}/udp")
    child.note_kids()
    return child


# ----------------------------------------------------------------------------- dnsperf


@dataclass
class Run:
    qps: float
    latency_ms: float
    sent: int
    lost: int
    response_size: int
    rcodes: str
    seconds: float
    cpu_s: float
    client_cpu_s: float
    other_cpu_s: float

    @property
    def server_share(self) -> float:
        return self.cpu_s / self.seconds if self.seconds else 0.0

    @property
    def client_share(self) -> float:
        return self.client_cpu_s / self.seconds if self.seconds else 0.0

    @property
    def other_share(self) -> float:
        return self.other_cpu_s / self.seconds if self.seconds else 0.0

    @property
    def disturbed(self) -> str:
        if self.other_share > OTHER_SHARE:
            return f"other work {self.other_share:.0%} of a core"
        return ""


def _search(pattern: str, text: str) -> re.Match[str]:
    match = re.search(pattern, text, re.M)
    if match is None:
        raise ValueError(f"unexpected dnsperf output (no {pattern!r}):\n{text}")
    return match


def parse_dnsperf(text: str) -> tuple[float, float, int, int, int, str]:
    """queries/s, average latency in ms, sent, lost, average response size, response codes."""
    qps = float(_search(r"^\s*Queries per second:\s+([\d.]+)", text).group(1))
    latency = float(_search(r"^\s*Average Latency \(s\):\s+([\d.]+)", text).group(1)) * 1000
    sent = int(_search(r"^\s*Queries sent:\s+(\d+)", text).group(1))
    lost = int(_search(r"^\s*Queries lost:\s+(\d+)", text).group(1))
    size = re.search(r"^\s*Average packet size:\s+request \d+, response (\d+)", text, re.M)
    codes = re.search(r"^\s*Response codes:\s+(.+)$", text, re.M)
    return (qps, latency, sent, lost, int(size.group(1)) if size else 0,
            codes.group(1).strip() if codes else "")


def dnsperf(child: Child, query_file: Path, seconds: int, edns: bool, pin: bool) -> Run:
    argv = ["dnsperf", "-s", "127.0.0.1", "-p", str(child.dns_port), "-d", str(query_file),
            "-l", str(seconds), "-c", "1", "-T", "1", "-q", str(OUTSTANDING)]
    if edns:
        argv.append("-e")
    if pin:
        argv = ["taskset", "-c", "1", *argv]
    if not child.alive():
        raise PeerError(f"{child.label} has exited:\n{child.log_tail()}")
    cpu0 = child.cpu_seconds()
    busy0 = vm_busy_seconds()
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    # dnsperf waits up to its 5 s query timeout for the last answers after -l.
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30,
                          check=False)
    elapsed = time.monotonic() - t0
    cpu = child.cpu_seconds() - cpu0
    busy = vm_busy_seconds() - busy0
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    if done.returncode != 0:
        raise PeerError(f"dnsperf against {child.label} exited {done.returncode}:\n"
                        f"{done.stdout}\n{done.stderr}")
    qps, latency, sent, lost, size, codes = parse_dnsperf(done.stdout)
    other = max(0.0, busy - cpu - client)
    return Run(qps, latency, sent, lost, size, codes, elapsed, cpu, client, other)


@dataclass
class Cell:
    runs: list[Run] = field(default_factory=list)

    @property
    def qps(self) -> float:
        return statistics.median(r.qps for r in self.runs)

    @property
    def latency_ms(self) -> float:
        return statistics.median(r.latency_ms for r in self.runs)

    @property
    def lost(self) -> int:
        return sum(r.lost for r in self.runs)

    @property
    def sent(self) -> int:
        return sum(r.sent for r in self.runs)

    @property
    def response_size(self) -> int:
        return round(statistics.median(r.response_size for r in self.runs))

    @property
    def core_pct(self) -> float:
        wall = sum(r.seconds for r in self.runs)
        return sum(r.cpu_s for r in self.runs) / wall * 100 if wall else float("nan")

    @property
    def cpu_us(self) -> float:
        answered = sum(r.sent - r.lost for r in self.runs)
        return sum(r.cpu_s for r in self.runs) / answered * 1e6 if answered else float("nan")

    def qps_text(self) -> str:
        if len(self.runs) == 1:
            return f"{self.qps:,.0f}"
        lo, hi = min(r.qps for r in self.runs), max(r.qps for r in self.runs)
        return f"{self.qps:,.0f} ({lo:,.0f}–{hi:,.0f})"


# ----------------------------------------------------------------------------- plan and report


@dataclass
class Plan:
    servers: tuple[str, ...]
    seconds: int
    repeat: int
    edns: bool
    pin: bool
    quick: bool


@dataclass
class Results:
    plan: Plan
    env: list[str] = field(default_factory=list)
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    #: (server, query) -> the answer over UDP without EDNS, UDP with EDNS, and TCP
    answers: dict[tuple[str, str], tuple[Answer | str, ...]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def cell(self, server: str, query: str) -> Cell:
        return self.cells.setdefault((server, query), Cell())


def ratio_text(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs > 0 else "n/a"


def answer_text(ans: Answer | str) -> str:
    return ans.text() if isinstance(ans, Answer) else ans


def report(res: Results) -> str:
    plan = res.plan
    out = ["# DNS load: proconsul -dev against NSD (dnsperf, UDP)", ""]
    out += [f"- {line}" for line in res.env]
    out.append("")
    out.append(f"dnsperf -c 1 -T 1 -q {OUTSTANDING} -l {plan.seconds}"
               + (" -e (EDNS0)" if plan.edns else " (no EDNS: answers limited to 512 bytes)")
               + f"; qps is the median of {plan.repeat} run(s) (min–max when repeated); "
               "latency is the median of the runs' averages; lost is summed over the runs; "
               "CPU is the server's utime+stime over the runs (100% = one core busy).")
    out.append("")
    out.append("| server | query | qps median (min–max) | avg latency ms | lost | "
               "answer B | server CPU | µs CPU/answer | vs NSD |")
    out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, _, _ in QUERIES:
        nsd = res.cells.get(("nsd", label))
        for key in plan.servers:
            cell = res.cells.get((key, label))
            if cell is None or not cell.runs:
                continue
            vs = ("1.00x" if key == "nsd" else
                  f"**{ratio_text(cell.qps, nsd.qps)}**" if nsd and nsd.runs else "-")
            out.append(f"| {SERVERS[key]} | {label} | {cell.qps_text()} | "
                       f"{cell.latency_ms:.3f} | {cell.lost}/{cell.sent} | "
                       f"{cell.response_size} | {cell.core_pct:.0f}% | {cell.cpu_us:.1f} | "
                       f"{vs} |")
    out.append("")
    ratios = []
    for label, _, _ in QUERIES:
        comp, pure = res.cells.get(("c", label)), res.cells.get(("py", label))
        if comp and pure and comp.runs and pure.runs:
            ratios.append(f"{label} **{ratio_text(comp.qps, pure.qps)}**")
    if ratios:
        out.append("compiled/pure qps: " + ", ".join(ratios))
        out.append("")
    if res.answers:
        out += ["## answers (one UDP probe per server and query before the load)", ""]
        out.append(f"| server | query | UDP, no EDNS | UDP, EDNS {PROBE_EDNS} | TCP |")
        out.append("| --- | --- | --- | --- | --- |")
        for (key, label), answers in res.answers.items():
            out.append(f"| {SERVERS[key]} | {label} | "
                       + " | ".join(answer_text(a) for a in answers) + " |")
        out.append("")
        out.append("an/ns/ar: records in the answer, authority and additional sections; "
                   "TC: truncated (a client would retry over TCP; dnsperf does not).")
        out.append("")
    if res.notes:
        out += ["## notes", ""]
        out += [f"- {note}" for note in res.notes]
        out.append("")
    return "\n".join(out)


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


def dns_wire_implementation(pure: bool) -> str:
    code = "from proconsul.dns import wire; print(wire.IMPLEMENTATION)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=child_env(pure), timeout=60, check=False)
    return done.stdout.strip() or "unavailable"


def tool_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not found"
    for line in (done.stdout + done.stderr).splitlines():
        if "ersion" in line:
            return line.strip()
    return "unknown"


def environment(plan: Plan) -> list[str]:
    lines = [
        f"date {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} CPUs, "
        f"{platform.platform()}, Python {platform.python_version()}",
        f"proconsul {git_rev()}; dns wire module: compiled run "
        f"`{dns_wire_implementation(False)}`, pure run `{dns_wire_implementation(True)}`",
        f"dnsperf {tool_version(['dnsperf', '-h'])}; NSD {tool_version(['nsd', '-v'])}",
        "pinning: " + ("servers `taskset -c 0`, dnsperf `taskset -c 1`" if plan.pin
                       else "none (taskset missing or fewer than two cores)"),
        f"data: `{SERVICE}` x {len(instances())} instances on {len(instances())} nodes, "
        f"datacenter {DATACENTER}, TTL 0",
        f"runs: {plan.seconds}s each, {plan.repeat} per cell, servers {','.join(plan.servers)}"
        + (", EDNS0" if plan.edns else ", no EDNS") + (" (--quick)" if plan.quick else ""),
    ]
    return lines


# ----------------------------------------------------------------------------- phases


PROBES: tuple[tuple[str, int | None, bool], ...] = (
    ("UDP", None, False), (f"UDP EDNS {PROBE_EDNS}", PROBE_EDNS, False), ("TCP", None, True))


def check_answers(res: Results, servers: list[Child]) -> None:
    """Probe every server and query over UDP (without and with EDNS) and TCP.

    NSD must hold every record (TCP answers carry all 100), else its zone is wrong and the
    bench stops; differences between the servers are listed under notes."""
    expected = len(instances())
    for child in servers:
        for label, name, qtype in QUERIES:
            got: list[Answer | str] = []
            for _, edns, tcp in PROBES:
                try:
                    got.append(probe(child.dns_port, name, qtype, edns, tcp=tcp))
                except OSError as err:
                    got.append(f"no answer ({err.__class__.__name__}: {err})")
            res.answers[(child.key, label)] = tuple(got)
            progress(f"{child.label:<27} {label:<3} "
                     + "; ".join(f"{what}: {answer_text(a)}"
                                 for (what, _, _), a in zip(PROBES, got, strict=True)))
            full = got[2]
            complete = isinstance(full, Answer) and full.answers == expected
            if child.key == "nsd" and not complete:
                raise PeerError(f"NSD's TCP answer to `{name} {qtype}` is "
                                f"{answer_text(full)}, expected {expected} records")
            if not complete:
                res.notes.append(f"{child.label} {label}: TCP answer {answer_text(full)}, "
                                 f"expected {expected} records")
    loaded = 1 if res.plan.edns else 0
    for label, _, _ in QUERIES:
        counts: dict[str, tuple[int, bool]] = {}
        for (key, lab), answers in res.answers.items():
            ans = answers[loaded]
            if lab != label or not isinstance(ans, Answer):
                continue
            counts[key] = (ans.answers, ans.truncated)
            if ans.truncated:
                res.notes.append(
                    f"{SERVERS[key]} answers the loaded {label} query (UDP"
                    f"{', EDNS' if res.plan.edns else ', no EDNS'}) with TC set and "
                    f"{ans.answers} records ({ans.size} B): its qps is for that short "
                    "answer (a real client would retry over TCP)")
        if len(set(counts.values())) > 1:
            detail = ", ".join(f"{key} an={an}{' TC' if tc else ''}"
                               for key, (an, tc) in counts.items())
            res.notes.append(f"{label}: the servers answer the loaded query differently "
                             f"({detail}); compare qps with the answer sizes in mind")


def load_phase(res: Results, servers: list[Child], tmp: Path) -> None:
    plan = res.plan
    for label, name, qtype in QUERIES:
        query_file = tmp / f"query-{label}.txt"
        query_file.write_text(f"{name} {qtype}\n")
        for child in servers:
            dnsperf(child, query_file, WARMUP_SECONDS, plan.edns, plan.pin)
        for i in range(1, plan.repeat + 1):
            for child in servers:
                run = dnsperf(child, query_file, plan.seconds, plan.edns, plan.pin)
                res.cell(child.key, label).runs.append(run)
                flag = f"  <- disturbed: {run.disturbed}" if run.disturbed else ""
                if run.disturbed:
                    res.notes.append(f"{child.label} {label} run {i}: {run.disturbed}")
                progress(f"{child.label:<27} {label:<3} run {i}/{plan.repeat}  "
                         f"{run.qps:>9,.0f} q/s  avg {run.latency_ms:6.3f} ms  "
                         f"lost {run.lost}/{run.sent}  resp {run.response_size} B  "
                         f"server {run.server_share:4.0%} dnsperf {run.client_share:4.0%} "
                         f"other {run.other_share:4.0%}  [{run.rcodes}]{flag}")


# ----------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="seconds per dnsperf run (10)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per cell, median and min–max reported (3)")
    parser.add_argument("--only", default="c,py,nsd",
                        help="comma list of servers: c (compiled), py (pure), nsd")
    parser.add_argument("--edns", action="store_true",
                        help="send EDNS0 (dnsperf -e) so large answers fit in UDP")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 s x 1")
    args = parser.parse_args(argv)
    if not 1 <= args.repeat <= 9:
        parser.error("--repeat must be between 1 and 9")
    if not 1 <= args.seconds <= 120:
        parser.error("--seconds must be between 1 and 120")
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = [s for s in only if s not in SERVERS]
    if unknown or not only:
        parser.error(f"--only takes a comma list of {','.join(SERVERS)}; got {args.only!r}")
    args.only = tuple(key for key in SERVERS if key in only)
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    return Plan(servers=args.only, seconds=2 if args.quick else args.seconds,
                repeat=1 if args.quick else args.repeat, edns=args.edns, pin=pin,
                quick=args.quick)


def estimate(plan: Plan) -> float:
    per_server = len(QUERIES) * (plan.repeat * (plan.seconds + 0.3) + WARMUP_SECONDS + 0.3)
    return len(plan.servers) * (per_server + 3)


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
    if shutil.which("dnsperf") is None:
        print("dnsperf not found (Debian package dnsperf)", file=sys.stderr)
        return 2
    res = Results(plan)
    res.env = environment(plan)
    for line in res.env:
        progress(line)
    progress(f"planned duration about {estimate(plan) / 60:.1f} min; load average {loadavg()}")
    load_start = loadavg()
    with sigterm_as_exit(), tempfile.TemporaryDirectory(prefix="dns_load_") as tmp_name:
        tmp = Path(tmp_name)
        children = Children(tmp, plan.pin)
        try:
            servers: list[Child] = []
            for key in plan.servers:
                progress(f"starting {SERVERS[key]}"
                         + (f" and registering {len(instances())} instances"
                            if key != "nsd" else f" with the zone {DOMAIN}."))
                servers.append(start_nsd(children) if key == "nsd"
                               else start_agent(children, key))
            check_answers(res, servers)
            load_phase(res, servers, tmp)
        except PeerError as err:
            print(f"\ndns_load: {err}", file=sys.stderr)
            return 2
        finally:
            children.stop_all()
    res.env.append(f"load average (1/5/15 min) at start {load_start}, at end {loadavg()}; "
                   f"total {time.monotonic() - _T0:.0f}s")
    text = report(res)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"dns_load-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    path.write_text(text + "\n")
    print()
    print(text)
    print(f"(written to {path.relative_to(REPO)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

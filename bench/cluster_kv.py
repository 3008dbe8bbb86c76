"""Cluster KV benchmark: a 3-server proconsul cluster against a 3-member etcd 3.4 cluster.

Both clusters run on 127.0.0.1 in the same run, each member a child process with its own free
ports and a data directory in one temp dir; every process is stopped by PID when the run ends.

- ours: three `proconsul agent -server -bootstrap-expect=3` joined by -retry-join on the LAN
  pool, `performance { raft_multiplier = 1 }` (as tests/integration/test_cluster.py), durable
  Raft log on disk;
- etcd: three members of one static `--initial-cluster`, as perf-anchors §A2 started them.

The same wrk load (bench/wrk/consul_kv.lua, etcd_kv.lua: 1,000 keys, 256-byte values) goes to
the LEADER's HTTP port of each cluster, PUT then GET, at 1, 16 and 64 connections; `--follower`
adds PUT/GET rows at 64 connections (or `--follower-conns`) sent to a follower (ours forwards
writes to the leader over server RPC and asks it for a read index per batch of reads, etcd uses
its peer link). `--follower-only` leaves the leader rows out and `--ours-only` the etcd cluster
(no ratios then: for quick iteration, never for a comparison). Cells alternate ours/etcd run
by run so that drifting background load hits both. Each run prints a progress line; the report
is a markdown table of ours, etcd and ours/etcd for req/s, p50 and p99, with the targets of the
cluster issue marked MET/MISSED: PUT at 64 connections at least 1.0x etcd's req/s, and a p99 at
most 2.0x etcd's.

CPU is the sum of utime+stime over the three members of a cluster around each run. Nothing is
pinned: the six servers and wrk share the machine's cores, as §A2 measured etcd.

    .venv/bin/python bench/cluster_kv.py [--quick] [--duration S] [--repeat N] [--follower]
                                         [--follower-conns 16,64] [--follower-only]
                                         [--ours-only] [--conns 1,16,64] [--ops put,get]

Writes bench/results/cluster_kv.md and cluster_kv.json. Exit status 0, or 2 when a server
does not start or wrk/etcd are missing and cannot be installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import http_kv
from http_kv import Cell, Child, Children, PeerError, progress
from ports import free_dual_port, free_port

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_MD = BENCH_DIR / "results" / "cluster_kv.md"
RESULTS_JSON = BENCH_DIR / "results" / "cluster_kv.json"

MEMBERS = 3
START_TIMEOUT = 90.0
PUT_TARGET = 1.0
P99_TARGET = 2.0
TARGET_CONNS = 64
IDLE_SECONDS = 3.0
SYSTEMS = ("ours", "etcd")
SCRIPTS = {"ours": "consul_kv.lua", "etcd": "etcd_kv.lua"}
LABELS = {"ours": "ours (3 servers)", "etcd": "etcd (3 members)"}
#: Debian packages for the peers, installed with apt-get when missing and running as root.
PACKAGES = {"wrk": "wrk", "etcd": "etcd-server"}




def ensure_tools() -> None:
    """Install wrk and etcd from Debian when they are missing (as tools/test installs serf)."""
    missing = [pkg for tool, pkg in PACKAGES.items() if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise PeerError(f"missing Debian packages {' '.join(missing)}: run as root or install "
                        "them")
    progress(f"installing Debian packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, timeout=600,
                   stdout=subprocess.DEVNULL)
    done = subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env, check=False,
                          timeout=900, capture_output=True, text=True)
    still = [tool for tool in PACKAGES if shutil.which(tool) is None]
    if still:
        raise PeerError(f"apt-get install {' '.join(missing)} failed ({done.returncode}): "
                        f"{done.stderr.strip()[-500:]}")


# ----------------------------------------------------------------------------- clusters


@dataclass
class Member:
    child: Child
    #: what the cluster calls this member as leader: our server RPC address, etcd's member id
    ident: str = ""


@dataclass
class ClusterTarget(Child):
    """One member as the load's target, with CPU and liveness taken over the whole cluster.

    wrk() in http_kv reads `port` (where the load goes), `cpu_seconds()` and `alive()`; here
    they mean the target member's port and the sum and conjunction over every member.
    """

    members: list[Child] = field(default_factory=list)

    def cpu_seconds(self) -> float:
        return sum(m.cpu_seconds() for m in self.members)

    def alive(self) -> bool:
        return all(m.alive() for m in self.members)

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(f"--- {m.name}\n{m.log_tail(lines)}" for m in self.members)


@dataclass
class Cluster:
    system: str
    members: list[Member]
    leader: int = -1

    def target(self, index: int) -> ClusterTarget:
        child = self.members[index].child
        return ClusterTarget(f"{self.system} {child.name}", child.proc, child.log_path,
                             child.port, [m.child for m in self.members])

    def follower(self) -> int:
        return next(i for i in range(len(self.members)) if i != self.leader)

    def cpu_seconds(self) -> float:
        return sum(m.child.cpu_seconds() for m in self.members)


def wait_until(what: str, cluster: Cluster, probe: Callable[[], bool],
               timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in cluster.members:
            if not m.child.alive():
                raise PeerError(f"{m.child.name} exited with status "
                                f"{m.child.proc.returncode}:\n{m.child.log_tail()}")
        try:
            if probe():
                return
        except (OSError, ValueError, KeyError, http.client.HTTPException):
            pass
        time.sleep(0.2)
    tails = "\n".join(f"--- {m.child.name}\n{m.child.log_tail()}" for m in cluster.members)
    raise PeerError(f"{cluster.system}: {what} not reached within {timeout:.0f}s\n{tails}")


def start_ours(children: Children) -> Cluster:
    ports = [{"http": free_port(), "lan": free_dual_port(), "wan": free_dual_port(),
              "rpc": free_port()} for _ in range(MEMBERS)]
    joins = [f"-retry-join=127.0.0.1:{p['lan']}" for p in ports]
    members = []
    for i, p in enumerate(ports):
        argv = [sys.executable, "-m", "proconsul", "agent", "-server",
                f"-bootstrap-expect={MEMBERS}", f"-data-dir={children.tmp / f'ours{i}'}",
                "-bind=127.0.0.1", f"-node=s{i}", f"-http-port={p['http']}", "-dns-port=-1",
                f"-serf-lan-port={p['lan']}", f"-serf-wan-port={p['wan']}",
                f"-server-port={p['rpc']}", "-retry-interval=1s",
                *[j for k, j in enumerate(joins) if k != i],
                "-hcl", "performance { raft_multiplier = 1 }"]
        child = children.start(f"ours-s{i}", argv, p["http"], None, http_kv.child_env())
        members.append(Member(child, f"127.0.0.1:{p['rpc']}"))
    cluster = Cluster("ours", members)

    def agreed() -> bool:
        leaders = set()
        for m in members:
            status, body = http_kv.request(m.child.port, "GET", "/v1/status/leader")
            leaders.add(json.loads(body) if status == 200 else "")
        return len(leaders) == 1 and "" not in leaders

    wait_until("one leader known to every server", cluster, agreed)
    find_leader(cluster)
    return cluster


def etcd_status(port: int) -> tuple[str, str]:
    """(this member's id, its leader's id) from the gateway's maintenance status."""
    status, body = http_kv.request(port, "POST", "/v3/maintenance/status", b"{}",
                                   {"Content-Type": "application/json"})
    if status != 200:
        raise ValueError(f"status answered {status}")
    doc = json.loads(body)
    return str(doc["header"]["member_id"]), str(doc.get("leader", ""))


def start_etcd(children: Children) -> Cluster:
    etcd = shutil.which("etcd")
    if etcd is None:
        raise PeerError("etcd not found (Debian package etcd-server)")
    ports = [(free_port(), free_port()) for _ in range(MEMBERS)]
    initial = ",".join(f"e{i}=http://127.0.0.1:{peer}" for i, (_, peer) in enumerate(ports))
    members = []
    for i, (client, peer) in enumerate(ports):
        curl, purl = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        argv = [etcd, "--name", f"e{i}", "--data-dir", str(children.tmp / f"etcd{i}"),
                "--listen-client-urls", curl, "--advertise-client-urls", curl,
                "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", "cluster-kv-bench",
                "--logger", "zap", "--log-level", "warn"]
        members.append(Member(children.start(f"etcd-e{i}", argv, client, None,
                                             dict(os.environ))))
    cluster = Cluster("etcd", members)

    def healthy() -> bool:
        for m in members:
            status, body = http_kv.request(m.child.port, "GET", "/health")
            if status != 200 or json.loads(body).get("health") != "true":
                return False
        return True

    wait_until("every member healthy", cluster, healthy)
    for m in members:
        m.ident = etcd_status(m.child.port)[0]
    find_leader(cluster)
    return cluster


def find_leader(cluster: Cluster) -> int:
    """Record and return the index of the current leader (asked of every member)."""
    answers = set()
    for m in cluster.members:
        if cluster.system == "ours":
            status, body = http_kv.request(m.child.port, "GET", "/v1/status/leader")
            answers.add(json.loads(body) if status == 200 else "")
        else:
            answers.add(etcd_status(m.child.port)[1])
    idents = [m.ident for m in cluster.members]
    if len(answers) != 1 or (leader := answers.pop()) not in idents:
        raise PeerError(f"{cluster.system}: members disagree on the leader: {sorted(answers)}")
    cluster.leader = idents.index(leader)
    return cluster.leader


def idle_share(clusters: dict[str, Cluster]) -> dict[str, float]:
    """Share of a core each cluster uses with no load (heartbeats, gossip, timers)."""
    before = {name: c.cpu_seconds() for name, c in clusters.items()}
    t0 = time.monotonic()
    time.sleep(IDLE_SECONDS)
    wall = time.monotonic() - t0
    return {name: (c.cpu_seconds() - before[name]) / wall for name, c in clusters.items()}


# ----------------------------------------------------------------------------- plan and results


@dataclass
class Plan:
    conns: tuple[int, ...]
    seconds: int
    repeat: int
    quick: bool
    follower: bool
    ops: tuple[str, ...]
    follower_conns: tuple[int, ...] = (TARGET_CONNS,)
    leader_rows: bool = True
    systems: tuple[str, ...] = SYSTEMS


@dataclass
class Results:
    plan: Plan
    env: list[str] = field(default_factory=list)
    #: (system, op, conns, "leader"|"follower") -> cell
    cells: dict[tuple[str, str, int, str], Cell] = field(default_factory=dict)
    idle: dict[str, float] = field(default_factory=dict)
    leaders: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def cell(self, system: str, op: str, conns: int, role: str) -> Cell:
        return self.cells.setdefault((system, op, conns, role), Cell())


def spread(values: list[float]) -> str:
    """Median, with min–max when there is more than one value."""
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.2f}"
    return f"{med:.2f} ({min(values):.2f}–{max(values):.2f})"


def ratio(ours: float, etcd: float) -> float:
    return ours / etcd if etcd > 0 else float("nan")


def targets(res: Results) -> list[str]:
    ours = res.cells.get(("ours", "put", TARGET_CONNS, "leader"))
    etcd = res.cells.get(("etcd", "put", TARGET_CONNS, "leader"))
    if ours is None or etcd is None:
        return [f"- targets: n/a (no PUT c={TARGET_CONNS} cell for both)"]
    r_rps, r_p99 = ratio(ours.rps, etcd.rps), ratio(ours.p99, etcd.p99)
    beyond = [f"{op.upper()} c={conns} {role} {ratio(o.p99, e.p99):.2f}x"
              for (system, op, conns, role), o in res.cells.items() if system == "ours"
              and (e := res.cells.get(("etcd", op, conns, role))) is not None
              and ratio(o.p99, e.p99) > P99_TARGET]
    return [
        f"- PUT c={TARGET_CONNS} throughput: ours/etcd = {r_rps:.2f}x, target >= "
        f"{PUT_TARGET:.1f}x: **{'MET' if r_rps >= PUT_TARGET else 'MISSED'}**",
        f"- PUT c={TARGET_CONNS} p99: ours/etcd = {r_p99:.2f}x, target <= {P99_TARGET:.1f}x: "
        f"**{'MET' if r_p99 <= P99_TARGET else 'MISSED'}**",
        f"- cells (any op, conns, target) with a p99 above {P99_TARGET:.1f}x etcd's: "
        + (", ".join(beyond) if beyond else "none"),
    ]


def table_rows(res: Results) -> list[tuple[str, str, int]]:
    """(op, target, conns) in report order: the leader cells, then the follower ones."""
    rows = [(op, "leader", c) for op in res.plan.ops for c in res.plan.conns
            if res.plan.leader_rows]
    if res.plan.follower:
        rows += [(op, "follower", c) for op in res.plan.ops for c in res.plan.follower_conns]
    return rows


def paired_cells(res: Results) -> Iterator[tuple[str, str, int, Cell, Cell | None]]:
    """(op, target, conns, ours, etcd) for every row of ours in report order; etcd is None
    when it was not run (--ours-only)."""
    for op, role, conns in table_rows(res):
        ours = res.cells.get(("ours", op, conns, role))
        if ours is not None:
            yield op, role, conns, ours, res.cells.get(("etcd", op, conns, role))


def report(res: Results) -> str:
    plan = res.plan
    out = ["# Cluster KV benchmark: 3 proconsul servers vs 3 etcd 3.4 members", ""]
    out += [f"- {line}" for line in res.env]
    out += ["", "## PUT and GET through each cluster (wrk -t1, keep-alive, 1,000 keys, "
            "256-byte values)", ""]
    out.append("Load goes to the **leader's** HTTP port of each cluster (`follower` rows: to a "
               "follower). Ours: `PUT|GET /v1/kv/bench/%08d` (default consistency); etcd: "
               "`POST /v3/kv/put|range` on the JSON gateway (linearizable range). req/s, p50 "
               f"and p99 (ms) are medians of {plan.repeat} run(s) of {plan.seconds}s, min–max "
               "in brackets when repeated; ratios are ours/etcd of the medians (req/s: higher "
               "is better for ours, latency: lower is).")
    out.append("")
    out.append("| op | target | conns | ours req/s | etcd req/s | **req/s ratio** | ours p50 | "
               "etcd p50 | p50 ratio | ours p99 | etcd p99 | **p99 ratio** |")
    out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
               "| ---: |")
    for op, role, conns, ours, etcd in paired_cells(res):
        if etcd is None:  # --ours-only
            out.append(f"| {op.upper()} | {role} | {conns} | {ours.rps_text()} | – | – | "
                       f"{spread([r.p50_ms for r in ours.runs])} | – | – | "
                       f"{spread([r.p99_ms for r in ours.runs])} | – | – |")
            continue
        out.append(
            f"| {op.upper()} | {role} | {conns} | {ours.rps_text()} | {etcd.rps_text()} | "
            f"**{ratio(ours.rps, etcd.rps):.2f}x** | "
            f"{spread([r.p50_ms for r in ours.runs])} | {spread([r.p50_ms for r in etcd.runs])} "
            f"| {ratio(ours.p50, etcd.p50):.2f}x | "
            f"{spread([r.p99_ms for r in ours.runs])} | {spread([r.p99_ms for r in etcd.runs])} "
            f"| **{ratio(ours.p99, etcd.p99):.2f}x** |")
    out += ["", "Targets (informative, never a failure):", ""]
    out += targets(res)
    out += ["", "## CPU (utime+stime summed over the three members of a cluster)", ""]
    out.append("| op | target | conns | ours µs CPU/req | ours cores | etcd µs CPU/req | "
               "etcd cores | wrk (ours / etcd) | other (ours / etcd) |")
    out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for op, role, conns, ours, etcd in paired_cells(res):
        if etcd is None:  # --ours-only
            out.append(f"| {op.upper()} | {role} | {conns} | {ours.cpu_us:.0f} | "
                       f"{ours.core_pct / 100:.2f} | – | – | {ours.client_pct / 100:.2f} / – | "
                       f"{ours.other_pct / 100:.2f} / – |")
            continue
        out.append(f"| {op.upper()} | {role} | {conns} | {ours.cpu_us:.0f} | "
                   f"{ours.core_pct / 100:.2f} | {etcd.cpu_us:.0f} | {etcd.core_pct / 100:.2f} "
                   f"| {ours.client_pct / 100:.2f} / {etcd.client_pct / 100:.2f} | "
                   f"{ours.other_pct / 100:.2f} / {etcd.other_pct / 100:.2f} |")
    out.append("")
    out.append("cores: CPU seconds over wall seconds (1.00 = one core busy). other: everything "
               "else on the machine during the run, including the idle other cluster "
               f"(measured at rest: ours {res.idle.get('ours', float('nan')):.2f}, etcd "
               f"{res.idle.get('etcd', float('nan')):.2f} of a core) and the kernel's loopback "
               "work.")
    out.append("")
    if res.notes:
        out += ["## notes", ""]
        out += [f"- {note}" for note in res.notes]
        out.append("")
    return "\n".join(out)


def to_json(res: Results) -> dict[str, object]:
    return {
        "plan": dataclasses.asdict(res.plan),
        "env": res.env,
        "idle_core_share": res.idle,
        "leaders": res.leaders,
        "notes": res.notes,
        "cells": [
            {"system": system, "op": op, "conns": conns, "target": role,
             "rps": cell.rps, "p50_ms": cell.p50, "p99_ms": cell.p99,
             "cpu_us_per_req": cell.cpu_us,
             "runs": [dataclasses.asdict(r) for r in cell.runs]}
            for (system, op, conns, role), cell in res.cells.items()],
    }


# ----------------------------------------------------------------------------- phases


def environment(plan: Plan) -> list[str]:
    return [
        f"date {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} CPUs, "
        f"{platform.platform()}, Python {platform.python_version()}",
        f"proconsul {http_kv.git_rev()}, wire module `{http_kv.wire_implementation()}` "
        "(c = compiled twin)",
        f"{http_kv.tool_version(['wrk', '-v'])}; {http_kv.tool_version(['etcd', '--version'])}",
        "ours: 3 x `proconsul agent -server -bootstrap-expect=3` (-retry-join, raft_multiplier "
        "1, data dirs in a temp dir); etcd: 3 members, static --initial-cluster (perf-anchors "
        "§A2); nothing pinned",
        f"cells: {plan.seconds}s each, {plan.repeat} run(s) per cell, conns {plan.conns}"
        + (f", follower rows at {plan.follower_conns}" if plan.follower else "")
        + ("" if plan.leader_rows else ", no leader rows (--follower-only)")
        + ("" if "etcd" in plan.systems else ", ours only (--ours-only)")
        + (" (--quick)" if plan.quick else ""),
    ]


def run_cell(res: Results, clusters: dict[str, Cluster], op: str, conns: int, role: str,
             index: int) -> None:
    plan = res.plan
    for system in plan.systems:
        cluster = clusters[system]
        member = cluster.leader if role == "leader" else cluster.follower()
        target = cluster.target(member)
        label = f"{LABELS[system]} -> {role}"
        http_kv.measure(res.cell(system, op, conns, role), label, target, SCRIPTS[system], op,
                        conns, plan.seconds, False, index, plan.repeat, False)


def load_phase(res: Results, clusters: dict[str, Cluster]) -> None:
    plan = res.plan
    for op in plan.ops:
        for system in plan.systems:
            cluster = clusters[system]
            http_kv.warm(cluster.target(cluster.leader), SCRIPTS[system], op, False)
        for conns in plan.conns if plan.leader_rows else ():
            for i in range(1, plan.repeat + 1):
                run_cell(res, clusters, op, conns, "leader", i)
        for conns in plan.follower_conns if plan.follower else ():
            for i in range(1, plan.repeat + 1):
                run_cell(res, clusters, op, conns, "follower", i)
        for system, cluster in clusters.items():
            before = cluster.leader
            if find_leader(cluster) != before:
                res.notes.append(f"{system}: the leader changed during the {op.upper()} cells "
                                 f"(member {before} -> {cluster.leader}); rerun")


def estimate(plan: Plan) -> float:
    rows = (len(plan.conns) if plan.leader_rows else 0) + \
        (len(plan.follower_conns) if plan.follower else 0)
    cells = len(plan.ops) * rows * plan.repeat
    systems = len(plan.systems)
    return systems * cells * (plan.seconds + 0.4) + systems * len(plan.ops) * 1.5 + 40


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="2s per cell, 1 and 64 connections (smoke run, about 1 min)")
    parser.add_argument("--duration", type=int, default=None, help="seconds per wrk run (5)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per cell, median and min-max reported (3 recommended)")
    parser.add_argument("--conns", default="",
                        help="comma list of connection counts (default 1,16,64)")
    parser.add_argument("--ops", default="put,get", choices=["put,get", "put", "get"])
    parser.add_argument("--follower", action="store_true",
                        help="also send the 64-connection cells to a follower")
    parser.add_argument("--follower-conns", default="",
                        help="comma list of connection counts for the follower rows (64); "
                             "implies --follower")
    parser.add_argument("--follower-only", action="store_true",
                        help="only the follower rows (implies --follower)")
    parser.add_argument("--ours-only", action="store_true",
                        help="start no etcd cluster (no ratios; for quick iteration)")
    args = parser.parse_args(argv)
    if not 1 <= args.repeat <= 9:
        parser.error("--repeat must be between 1 and 9")
    if args.duration is not None and not 1 <= args.duration <= 60:
        parser.error("--duration must be between 1 and 60 seconds")
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    return Plan(
        conns=(tuple(int(c) for c in args.conns.split(",")) if args.conns
               else (1, 64) if args.quick else (1, 16, 64)),
        seconds=args.duration or (2 if args.quick else 5),
        repeat=args.repeat,
        quick=args.quick,
        follower=args.follower or args.follower_only or bool(args.follower_conns),
        ops=tuple(op for op in args.ops.split(",") if op),
        follower_conns=(tuple(int(c) for c in args.follower_conns.split(","))
                        if args.follower_conns else (TARGET_CONNS,)),
        leader_rows=not args.follower_only,
        systems=("ours",) if args.ours_only else SYSTEMS,
    )


def main(argv: Sequence[str] | None = None) -> int:
    plan = make_plan(parse_args(argv))
    try:
        ensure_tools()
    except PeerError as err:
        print(f"cluster_kv: {err}", file=sys.stderr)
        return 2
    res = Results(plan)
    res.env = environment(plan)
    for line in res.env:
        progress(line)
    load_start = http_kv.loadavg()
    progress(f"planned duration about {estimate(plan) / 60:.1f} min; load average {load_start}")
    with http_kv.sigterm_as_exit(), tempfile.TemporaryDirectory(prefix="cluster_kv_") as tmp:
        children = Children(Path(tmp), pin=False)
        try:
            progress("starting 3 proconsul servers")
            ours = start_ours(children)
            progress(f"ours: leader is {ours.members[ours.leader].child.name}")
            clusters = {"ours": ours}
            if "etcd" in plan.systems:
                progress("starting 3 etcd members")
                etcd = start_etcd(children)
                progress(f"etcd: leader is {etcd.members[etcd.leader].child.name}")
                clusters["etcd"] = etcd
            progress(f"seeding {http_kv.KEYS} keys of {http_kv.VALUE_SIZE} bytes through each "
                     "leader")
            http_kv.seed_consul(ours.members[ours.leader].child.port)
            if "etcd" in clusters:
                http_kv.seed_etcd(clusters["etcd"].members[clusters["etcd"].leader].child.port)
            res.idle = idle_share(clusters)
            progress("idle CPU: " + ", ".join(f"{name} {share:.2f}" for name, share in
                                              res.idle.items()) + " of a core")
            res.leaders = {name: [c.members[c.leader].child.name] for name, c in
                           clusters.items()}
            load_phase(res, clusters)
        except PeerError as err:
            print(f"\ncluster_kv: a server failed: {err}", file=sys.stderr)
            return 2
        finally:
            children.stop_all()
    res.env.append(f"load average (1/5/15 min) at start {load_start}, at end "
                   f"{http_kv.loadavg()}; total {time.monotonic() - http_kv._T0:.0f}s")
    res.notes += [f"{system} {op.upper()} c={conns} ({role}): {cell.bad} non-2xx answers or "
                  "socket errors" for (system, op, conns, role), cell in res.cells.items()
                  if cell.bad]
    res.notes += [f"{system} {op.upper()} c={conns} ({role}): {len(cell.disturbed)} of "
                  f"{len(cell.runs)} run(s) disturbed ({'; '.join(cell.disturbed)})"
                  for (system, op, conns, role), cell in res.cells.items() if cell.disturbed]
    text = report(res)
    RESULTS_MD.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_MD.write_text(text + "\n")
    RESULTS_JSON.write_text(json.dumps(to_json(res), indent=1) + "\n")
    print()
    print(text)
    print(f"(written to {RESULTS_MD.relative_to(REPO)} and {RESULTS_JSON.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

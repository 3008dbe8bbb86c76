"""Gossip cluster benchmark: N of our Serf nodes beside N real serf agents, on one machine.

    .venv/bin/python bench/gossip_cluster.py [--sizes 10,50,200] [--ours-only] [--workers K]
        [--steady S] [--hog S] [--grace S] [--max-minutes M] [--out DIR] [--quick]

For each size N, first the real agents, then ours (never both at once, so neither disturbs the
other), each through the same phases, every one bounded in time:

1. **start.** serf: N `serf agent -node=serf-I -bind=127.0.0.1:P -rpc-addr=127.0.0.1:R
   -log-level=info` (Debian's serf 0.9.4; memberlist's LAN profile). Ours: K worker processes
   (bench/gossip_nodes.py; K = one per 100 nodes, at most one per core, `--workers`), each
   running its share of N `Serf` nodes (src/proconsul/gossip/serf/serf.py) on one uvloop loop,
   every node a real UDP socket and TCP listener on 127.0.0.1 (`NetTransport`) with Consul's
   LAN pool settings (`consul_pool` over `consul_lan`: the same memberlist LAN timings).
   Neither side has tags, encryption or a snapshot; both compute Vivaldi coordinates.
2. **join and convergence.** Every node but the first joins the first, one after another
   (`--join-window W` keeps W joins in flight; W = N is one burst, which real serf agents answer
   with "Too many pending push/pull requests" beyond 128 at once): serf over each agent's
   msgpack RPC `join` (what `serf join` sends; connections opened and handshaken before the
   clock starts), ours by one command per join to the node's worker. Convergence = from the
   first join request until every node sees all N members alive; repeated on fresh clusters
   (`--converge-runs`), median reported. Both implementations spread news by the same
   epidemic, which now and then misses one node for one member; that node then waits for its
   next push/pull (up to 30 s), so a run is either about a second or tens of seconds. Runs
   other than the last are not waited for past 10 + N/10 s and count as "short" (slower than
   any); the median is over all of them.
3. **steady state.** After a settling pause (the join news retransmits for a few seconds), CPU
   (utime+stime from /proc/<pid>/stat) and RSS (VmRSS from /proc/<pid>/status) of all the
   side's processes over `--steady` seconds, divided by N: CPU seconds per node per minute,
   the same as a share of one core, MB RSS per node and its growth per minute. The machine's
   other load over the same window (busy time from /proc/stat minus the side's own) is
   reported, and a window where it exceeds a third of a core is marked as disturbed.
4. **failure detection.** The last nodes are killed one after another (`--kills`): serf agent
   SIGKILL; ours closed hard in its worker (no leave, sockets shut). Detection = time until
   every remaining node marks it failed (median over the kills; also the first node to).
5. **CPU hog.** `--hog-procs` busy-loop processes for `--hog` seconds, then `--grace` seconds:
   false alarms about nodes never killed.

False alarms (steady window and hog) count three things both sides log alike: a node marking
another failed (`serf: EventMemberFailed`), a node's own probe failing (`memberlist: Suspect X
has failed, no acks received`: a suspicion it starts), and a node refuting a suspicion of
itself (`Refuting a suspect message`: someone suspected it). Gossiped suspicions are not logged
by serf, so they are counted on neither side.

**How the clusters are observed, and why that does not bend the CPU figures.** Nothing is
polled during any measurement. Each serf agent's INFO log goes to a pipe that one reader
thread in this process watches with a selector; lines are stamped with `time.monotonic()` on
arrival (serf writes them unbuffered), and give member joins, failures, suspicions and
refutations per agent. At steady state a serf agent logs nothing, so observing costs it nothing;
`serf members` (a Go process per call, ~10 ms CPU) is never run — only a members RPC on three
agents after convergence, outside the windows, to cross-check the log view. Our workers report
the same events as JSON lines from their Serf event callback and each node's memberlist logger,
stamped where they happen (CLOCK_MONOTONIC is one clock for all processes). This process
spends its CPU outside both sides' accounting.

Output: progress on stderr; the report (markdown) on stdout and in `--out` (default
bench/results/, git-ignored) as gossip_cluster-<time>.md with the raw figures as .json, and a
plot (.png) when matplotlib is importable. Every process started is killed by PID when the run
ends, also on Ctrl-C or SIGTERM; `--max-minutes` caps the whole run (default 14.5). Exit status
0, or 2 when a cluster could not be started.

Typical commands (about 12 and 3 minutes):

    .venv/bin/python bench/gossip_cluster.py --sizes 10,50,200
    .venv/bin/python bench/gossip_cluster.py --ours-only --sizes 400
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from gossip_sides import (
    BenchError,
    EventHub,
    OursSide,
    Procs,
    SerfSide,
    Tracker,
    cpu_seconds,
    machine_busy_seconds,
    progress,
    rss_bytes,
)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"

#: perf-anchors §A4: the real agents on this machine, median (min–max) of 2–3 runs.
REFERENCE_CONVERGENCE = {10: "0.32 (0.22–0.42)", 50: "0.95", 100: "2.4", 200: "13.8–33.2",
                         400: "collapse"}
REFERENCE_DETECTION = {10: "5.6", 50: "9.0", 100: "9.8", 200: "10.7–11.6"}
REFERENCE_CORE_PCT = 0.19
REFERENCE_RSS_MB = 15.0
#: a window whose other load exceeds this share of one core is marked disturbed
OTHER_LOAD_LIMIT = 0.35
HOG_CODE = ("import sys, time\nend = time.monotonic() + float(sys.argv[1])\n"
            "while time.monotonic() < end:\n    pass\n")


@dataclass
class Plan:
    sizes: list[int]
    ours_only: bool
    workers: int
    loop: str
    steady: float
    hog: float
    hog_procs: int
    grace: float
    converge_timeout: float
    converge_runs: int
    join_window: int
    kills: int
    detect_timeout: float
    max_minutes: float
    out: Path
    serf: str

    def converge_limit(self, n: int) -> float:
        return self.converge_timeout or 20 + 0.35 * n

    def settle(self, n: int) -> float:
        return 3 + n / 50

    def converge_runs_for(self, n: int) -> int:
        # a small cluster converges in one or two gossip rounds (0.2 s each), so its time is
        # mostly which round: many cheap runs; a large one is dominated by the joins themselves
        return self.converge_runs or (9 if n <= 20 else 5 if n <= 50 else 1)

    def extra_run_limit(self, n: int) -> float:
        """How long a convergence-only run waits: the gossip epidemic either reaches every
        node within seconds or leaves a node to the next push/pull, up to 30 s later; such a
        run is counted as slow rather than waited for."""
        return min(self.converge_limit(n), 10 + n / 10)

    def kills_for(self, n: int) -> int:
        return min(self.kills or (4 if n <= 50 else 3), max(1, n - 2))

    def workers_for(self, n: int) -> int:
        if self.workers:
            return self.workers
        return max(1, min(os.cpu_count() or 1, math.ceil(n / 100)))

    def estimate(self) -> float:
        sides = 1 if self.ours_only else 2
        per = sum(self.converge_runs_for(n) * (3 + n / 25 + min(self.converge_limit(n),
                                                                 1 + n * n / 1500))
                  + self.settle(n) + self.steady
                  + self.kills_for(n) * (5 + 4 * max(1.0, math.log10(n)))
                  + self.hog + self.grace for n in self.sizes)
        return sides * per


@dataclass
class SideResult:
    side: str
    n: int
    processes: int
    start_s: float = 0.0
    idle_rss_mb_per_node: float = 0.0
    #: per join cycle: time until every node saw all N alive (None: not within the bound)
    converge_runs: list[float | None] = field(default_factory=list)
    #: per join cycle: time until half the nodes did
    converge_p50_runs: list[float | None] = field(default_factory=list)
    converge_s: float | None = None
    converge_p50_s: float | None = None
    converge_cpu_s: float = 0.0
    #: per join cycle: time until every join call had returned
    join_runs: list[float | None] = field(default_factory=list)
    join_errors: list[str] = field(default_factory=list)
    steady_s: float = 0.0
    cpu_s_per_node_min: float = 0.0
    core_pct_per_node: float = 0.0
    rss_mb_per_node: float = 0.0
    rss_growth_kb_per_node_min: float = 0.0
    other_load_cores: float = 0.0
    #: per killed node: victim, first / median / all (None: not all within the bound), by
    detections: list[dict[str, Any]] = field(default_factory=list)
    detect_first_s: float | None = None
    detect_all_s: float | None = None
    false_steady: dict[str, int] = field(default_factory=dict)
    false_hog: dict[str, int] = field(default_factory=dict)
    hog_other_load_cores: float = 0.0
    cross_check: Any = None
    warnings: list[tuple[str, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Budget:
    """The whole run's time cap; phases take the smaller of their own bound and what is left."""

    def __init__(self, minutes: float) -> None:
        self.deadline = time.monotonic() + minutes * 60

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def bound(self, seconds: float, what: str) -> float:
        left = self.left()
        if left <= 1:
            raise BenchError(f"run time cap reached before {what}")
        return min(seconds, left)

    def sleep(self, seconds: float, what: str) -> None:
        time.sleep(self.bound(seconds, what))


# ----------------------------------------------------------------------------- phases


Side = SerfSide | OursSide


def median_or_none(values: Sequence[float | None]) -> float | None:
    """The median, a run that fell short counting as longer than any; None when there is no
    run or the median itself fell short."""
    if not values:
        return None
    ranked = sorted(math.inf if v is None else v for v in values)
    mid = len(ranked) // 2
    median = ranked[mid] if len(ranked) % 2 else (ranked[mid - 1] + ranked[mid]) / 2
    return None if math.isinf(median) else median


def spread(values: Sequence[float | None], unit: str = "runs") -> str:
    done = [v for v in values if v is not None]
    if len(values) < 2:
        return ""
    text = f"{min(done):.2f}–{max(done):.2f}, " if done else ""
    short = len(values) - len(done)
    return text + f"{len(values)} {unit}" + (f", {short} short" if short else "")


def converge(side: Side, hub: EventHub, res: SideResult, plan: Plan, budget: Budget,
             bound: float) -> None:
    """One round of joins; appends this cycle's convergence times to `res`."""
    n = res.n
    pids = side.pids()
    cpu0 = cpu_seconds(pids)
    t0 = side.join(plan.join_window)

    def tick(t: Tracker) -> None:
        progress(f"{side.label} N={n}: {len(t.converged)}/{n} nodes see all {n} alive "
                 f"({time.monotonic() - t0:.1f}s)")

    def settled(t: Tracker) -> bool:
        # done, or hopeless: every join returned and one failed (that node knows no one)
        return len(t.converged) >= n or (len(t.joined) >= n - 1
                                         and any(err for _, err in t.joined.values()))

    limit = budget.bound(bound, "convergence")
    done = hub.wait(settled, limit, tick) and len(hub_converged(hub)) >= n
    with hub.cond:
        assert hub.tracker is not None
        times = sorted(hub.tracker.converged.values())
        lagging = [name for name in side.node_names(n) if name not in hub.tracker.converged]
        if isinstance(side, SerfSide):
            missing = {name: sorted(hub.tracker.known - hub.tracker.alive.get(name, set()))
                       for name in lagging[:3]}
        joined = dict(hub.tracker.joined)
    res.join_errors.extend(f"{name}: {err}" for name, (_, err) in joined.items() if err)
    res.join_runs.append(max(t for t, _ in joined.values()) - t0
                         if len(joined) >= n - 1 else None)
    res.converge_runs.append(times[-1] - t0 if done else None)
    res.converge_p50_runs.append(times[n // 2] - t0 if len(times) > n // 2 else None)
    res.converge_cpu_s = cpu_seconds(pids) - cpu0
    if done:
        progress(f"{side.label} N={n}: converged in {times[-1] - t0:.2f}s")
    else:
        note = (f"not converged: {len(times)}/{n} nodes saw all {n} alive after "
                f"{time.monotonic() - t0:.0f}s; lagging {lagging[:5]}")
        if isinstance(side, SerfSide):
            short = {name: names[:4] for name, names in missing.items()}
            note += (f"; their logs miss {short}, their members RPC says "
                     f"{side.members_check(lagging[:3])}")
        else:
            lag = {name: node.get("missing") for rec in side.stats()
                   for name, node in rec.get("nodes", {}).items() if "missing" in node}
            note += f"; they miss {dict(list(lag.items())[:3])}"
        res.notes.append(note)
        progress(f"{side.label} N={n}: NOT converged ({len(times)}/{n})")


def hub_converged(hub: EventHub) -> dict[str, float]:
    with hub.cond:
        assert hub.tracker is not None
        return dict(hub.tracker.converged)


def cross_check(side: Side, n: int) -> Any:
    if isinstance(side, SerfSide):
        names = SerfSide.node_names(n)
        return side.members_check([names[0], names[n // 2], names[-1]])
    return alive_histogram(side.stats())


def alive_histogram(stats: list[Any]) -> dict[str, int]:
    """How many of our nodes hold how many members alive (from the workers' stats)."""
    out: dict[str, int] = {}
    for rec in stats:
        for node in rec.get("nodes", {}).values():
            key = f"{node['members'].get('alive', 0)} alive"
            out[key] = out.get(key, 0) + 1
    return out


def steady(side: Side, hub: EventHub, res: SideResult, plan: Plan, budget: Budget) -> None:
    n = res.n
    window = budget.bound(plan.steady, "steady state")
    pids = side.pids()
    c0, r0, b0, t0 = cpu_seconds(pids), rss_bytes(pids), machine_busy_seconds(), time.monotonic()
    progress(f"{side.label} N={n}: steady state, {window:.0f}s")
    time.sleep(window)
    c1, r1, b1, t1 = cpu_seconds(pids), rss_bytes(pids), machine_busy_seconds(), time.monotonic()
    span = t1 - t0
    cpu = c1 - c0
    res.steady_s = span
    res.cpu_s_per_node_min = cpu / n / span * 60
    res.core_pct_per_node = cpu / n / span * 100
    res.rss_mb_per_node = r1 / n / 2**20
    res.rss_growth_kb_per_node_min = (r1 - r0) / n / 1024 / span * 60
    res.other_load_cores = max(0.0, (b1 - b0) - cpu) / span
    if res.other_load_cores > OTHER_LOAD_LIMIT:
        res.notes.append(f"steady window disturbed: other load {res.other_load_cores:.2f} "
                         "cores")
    with hub.cond:
        assert hub.tracker is not None
        res.false_steady = hub.tracker.false_alarms(t0, t1)
    progress(f"{side.label} N={n}: {res.core_pct_per_node:.3f}% of a core and "
             f"{res.rss_mb_per_node:.1f} MB per node; other load {res.other_load_cores:.2f}")


def detect(side: Side, hub: EventHub, res: SideResult, plan: Plan, budget: Budget) -> None:
    """Kill nodes one after another (the last ones, never the seed) and time each failure
    until every remaining node has marked it failed."""
    n = res.n
    names = side.node_names(n)
    for k in range(plan.kills_for(n)):
        victim = names[-1 - k]
        others = n - 1 - k
        tk = side.kill(victim)

        def tick(t: Tracker, victim: str = victim, tk: float = tk, others: int = others) -> None:
            progress(f"{side.label} N={n}: {len(t.failed_by(victim, tk))}/{others} mark "
                     f"{victim} failed ({time.monotonic() - tk:.1f}s)")

        def all_marked(t: Tracker, victim: str = victim, tk: float = tk,
                       others: int = others) -> bool:
            return len(t.failed_by(victim, tk)) >= others

        limit = budget.bound(plan.detect_timeout, "failure detection")
        done = hub.wait(all_marked, limit, tick)
        with hub.cond:
            assert hub.tracker is not None
            seen = sorted(hub.tracker.failed_by(victim, tk).values())
        res.detections.append({
            "victim": victim, "by": len(seen), "of": others,
            "first": seen[0] - tk if seen else None,
            "median": statistics.median(seen) - tk if seen else None,
            "all": seen[-1] - tk if done else None})
        if done:
            progress(f"{side.label} N={n}: all {others} marked {victim} failed in "
                     f"{seen[-1] - tk:.2f}s (first {seen[0] - tk:.2f}s)")
        else:
            res.notes.append(f"detection of {victim} incomplete: {len(seen)}/{others} after "
                             f"{limit:.0f}s")
        budget.sleep(2.0, "the pause after a detection")
    res.detect_all_s = median_or_none([d["all"] for d in res.detections])
    res.detect_first_s = median_or_none([d["first"] for d in res.detections])


def hog(side: Side, hub: EventHub, res: SideResult, plan: Plan, budget: Budget,
        procs: Procs) -> None:
    n = res.n
    seconds = budget.bound(plan.hog, "CPU hog")
    hogs = [procs.start([sys.executable, "-c", HOG_CODE, str(seconds)],
                        stdin=subprocess.DEVNULL) for _ in range(plan.hog_procs)]
    pids = side.pids()
    c0, b0, t0 = cpu_seconds(pids), machine_busy_seconds(), time.monotonic()
    progress(f"{side.label} N={n}: {plan.hog_procs} busy loops for {seconds:.0f}s")
    try:
        end = t0 + seconds
        while time.monotonic() < end:
            time.sleep(min(5.0, max(0.0, end - time.monotonic())))
            with hub.cond:
                assert hub.tracker is not None
                so_far = hub.tracker.false_alarms(t0, time.monotonic())
            progress(f"{side.label} N={n}: under hog, false alarms so far {so_far}")
    finally:
        procs.kill(hogs)
    c1, b1, t1 = cpu_seconds(pids), machine_busy_seconds(), time.monotonic()
    res.hog_other_load_cores = max(0.0, (b1 - b0) - (c1 - c0)) / (t1 - t0)
    budget.sleep(plan.grace, "the grace period after the hog")
    with hub.cond:
        assert hub.tracker is not None
        res.false_hog = hub.tracker.false_alarms(t0, time.monotonic())
    progress(f"{side.label} N={n}: false alarms under hog (+{plan.grace:.0f}s): {res.false_hog}")


def new_side(kind: str, n: int, plan: Plan, procs: Procs, hub: EventHub, tmp: Path) -> Side:
    if kind == "serf":
        return SerfSide(procs, hub, plan.serf, tmp)
    return OursSide(procs, hub, tmp, plan.workers_for(n), plan.loop)


@contextlib.contextmanager
def cluster(side: Side, n: int, hub: EventHub, res: SideResult,
            budget: Budget) -> Iterator[None]:
    """A started cluster with its own tracker; stopped (every process killed) on the way out."""
    with hub.cond:
        hub.tracker = Tracker(side.node_names(n))
    try:
        t = time.monotonic()
        side.start(n, budget.bound(30 + n / 5, "start"))
        res.start_s = time.monotonic() - t
        time.sleep(0.5)
        res.idle_rss_mb_per_node = rss_bytes(side.pids()) / n / 2**20
        yield
    finally:
        with hub.cond:
            if hub.tracker is not None:
                res.warnings = hub.tracker.warnings.most_common(6)
        if isinstance(side, OursSide):
            with contextlib.suppress(BenchError, OSError, ValueError):
                merged: dict[str, int] = {}
                example: dict[str, str] = {}
                for rec in side.stats(5.0):
                    counts: dict[str, int] = rec.get("log_counts", {})
                    for fmt, count in counts.items():
                        merged[fmt] = merged.get(fmt, 0) + count
                        example.setdefault(fmt, rec.get("log_examples", {}).get(fmt, fmt))
                res.warnings = [(example[fmt], count) for fmt, count
                                in sorted(merged.items(), key=lambda kv: -kv[1])[:6]]
        side.stop()
        with hub.cond:
            hub.tracker = None


def run_side(kind: str, n: int, plan: Plan, procs: Procs, hub: EventHub, tmp: Path,
             budget: Budget) -> SideResult:
    """Extra join cycles for convergence alone, then one cycle through every phase."""
    processes = n if kind == "serf" else plan.workers_for(n)
    res = SideResult(kind, n, processes)
    runs = plan.converge_runs_for(n)
    progress(f"{kind} N={n}: {processes} processes, {runs} join cycles")
    try:
        for _ in range(runs - 1):
            side = new_side(kind, n, plan, procs, hub, tmp)
            with cluster(side, n, hub, res, budget):
                converge(side, hub, res, plan, budget, plan.extra_run_limit(n))
        side = new_side(kind, n, plan, procs, hub, tmp)
        with cluster(side, n, hub, res, budget):
            converge(side, hub, res, plan, budget, plan.converge_limit(n))
            budget.sleep(plan.settle(n), "settling")
            res.cross_check = cross_check(side, n)
            steady(side, hub, res, plan, budget)
            detect(side, hub, res, plan, budget)
            hog(side, hub, res, plan, budget, procs)
    except BenchError as exc:
        res.notes.append(f"stopped early: {exc}")
        progress(f"{kind} N={n}: {exc}")
    res.converge_s = median_or_none(res.converge_runs)
    res.converge_p50_s = median_or_none(res.converge_p50_runs)
    return res


# ----------------------------------------------------------------------------- report


def num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def ratio(ours: float | None, serf: float | None) -> str:
    if ours is None or serf is None or serf <= 0:
        return "—"
    return f"{ours / serf:.2f}x"


def verdict(ours: float | None, serf: float | None, limit: float) -> str:
    """MET when ours <= limit x serf."""
    if ours is None or serf is None or serf <= 0:
        return "—"
    return "MET" if ours <= limit * serf else "MISSED"


def convergence_text(r: SideResult | None) -> str:
    if r is None:
        return "—"
    extra = spread(r.converge_runs)
    return (f"{num(r.converge_s)}" + (f" ({extra})" if extra else "")
            + f"; {num(r.converge_p50_s)}")


def detection_text(r: SideResult | None) -> str:
    if r is None:
        return "—"
    extra = spread([d["all"] for d in r.detections], "kills")
    return (f"{num(r.detect_all_s)}" + (f" ({extra})" if extra else "")
            + f"; {num(r.detect_first_s)}")


def alarms(fa: dict[str, int]) -> str:
    if not fa:
        return "—"
    return (f"{fa['failed']} failed ({fa['failed_members']} nodes), {fa['suspect']} suspect "
            f"({fa['suspect_members']}), {fa['refute']} refute")


def report(results: list[SideResult], plan: Plan, started: str, elapsed: float) -> str:
    by = {(r.side, r.n): r for r in results}
    sizes = sorted({r.n for r in results})
    lines = [
        f"# Gossip cluster: ours vs serf agents — {started}",
        "",
        f"Run: {elapsed / 60:.1f} min; " + "; ".join(environment(plan)),
        "",
        "| N | metric | ours | serf | ours/serf | target |",
        "| ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for n in sizes:
        o, s = by.get(("ours", n)), by.get(("serf", n))
        rows: list[tuple[str, str, str, str, str]] = []

        def get(r: SideResult | None, attr: str) -> Any:
            return None if r is None else getattr(r, attr)

        rows.append(("processes (nodes per process)",
                     "—" if o is None else f"{o.processes} ({n / o.processes:.0f})",
                     "—" if s is None else f"{s.processes} (1)", "", ""))
        oc, sc = get(o, "converge_s"), get(s, "converge_s")
        rows.append(("convergence after join, s: median of runs (min–max); half the nodes",
                     convergence_text(o), convergence_text(s),
                     ratio(oc, sc), f"<= 1.10x: {verdict(oc, sc, 1.10)}"))
        od, sd = get(o, "detect_all_s"), get(s, "detect_all_s")
        rows.append(("killed node failed at all others, s: median of kills (min–max); first",
                     detection_text(o), detection_text(s),
                     ratio(od, sd), f"<= 1.10x: {verdict(od, sd, 1.10)}"))
        ocpu, scpu = get(o, "core_pct_per_node"), get(s, "core_pct_per_node")
        rows.append(("CPU per node at steady state, % of a core",
                     num(ocpu, 3) if o else "—", num(scpu, 3) if s else "—",
                     ratio(ocpu, scpu), f"<= 1.00x: {verdict(ocpu, scpu, 1.0)}"))
        rows.append(("CPU per node, s per minute",
                     num(get(o, "cpu_s_per_node_min"), 4) if o else "—",
                     num(get(s, "cpu_s_per_node_min"), 4) if s else "—",
                     ratio(get(o, "cpu_s_per_node_min"), get(s, "cpu_s_per_node_min")), ""))
        orss, srss = get(o, "rss_mb_per_node"), get(s, "rss_mb_per_node")
        rows.append(("RSS per node, MB (idle before join)",
                     f"{num(orss, 1)} ({num(get(o, 'idle_rss_mb_per_node'), 1)})" if o else "—",
                     f"{num(srss, 1)} ({num(get(s, 'idle_rss_mb_per_node'), 1)})" if s else "—",
                     ratio(orss, srss), f"<= 1.00x: {verdict(orss, srss, 1.0)}"))
        rows.append(("RSS growth per node at steady state, KB per minute",
                     num(get(o, "rss_growth_kb_per_node_min"), 1) if o else "—",
                     num(get(s, "rss_growth_kb_per_node_min"), 1) if s else "—", "", ""))
        rows.append(("all join calls returned, s (median of runs)",
                     num(median_or_none(o.join_runs)) if o else "—",
                     num(median_or_none(s.join_runs)) if s else "—", "", ""))
        rows.append(("CPU during join + convergence, s (all nodes)",
                     num(get(o, "converge_cpu_s")) if o else "—",
                     num(get(s, "converge_cpu_s")) if s else "—",
                     ratio(get(o, "converge_cpu_s"), get(s, "converge_cpu_s")), ""))
        rows.append((f"false alarms at steady state ({plan.steady:.0f}s)",
                     alarms(get(o, "false_steady") or {}), alarms(get(s, "false_steady") or {}),
                     "", "0 failed"))
        rows.append((f"false alarms under {plan.hog_procs} busy loops ({plan.hog:.0f}s "
                     f"+ {plan.grace:.0f}s)",
                     alarms(get(o, "false_hog") or {}), alarms(get(s, "false_hog") or {}),
                     "", "<= serf"))
        for metric, ours_text, serf_text, rat, target in rows:
            lines.append(f"| {n} | {metric} | {ours_text} | {serf_text} | {rat} | {target} |")
    lines += ["", "Reference (perf-anchors §A4, real serf on this machine): convergence "
              + ", ".join(f"{k}: {v} s" for k, v in REFERENCE_CONVERGENCE.items())
              + "; detection " + ", ".join(f"{k}: {v} s" for k, v in REFERENCE_DETECTION.items())
              + f"; {REFERENCE_CORE_PCT}% of a core and {REFERENCE_RSS_MB:.0f} MB per agent.",
              ""]
    notes = []
    for r in results:
        label = f"{r.side} N={r.n}"
        notes += [f"- {label}: {note}" for note in r.notes]
        if r.join_errors:
            notes.append(f"- {label}: {len(r.join_errors)} join errors, e.g. {r.join_errors[0]}")
        notes.append(f"- {label}: started in {r.start_s:.1f}s; other load on the machine "
                     f"{r.other_load_cores:.2f} cores (steady), {r.hog_other_load_cores:.2f} "
                     f"(hog, busy loops included); members cross-check {r.cross_check}")
        if r.warnings:
            top = "; ".join(f"{count}x {msg[:160]}" for msg, count in r.warnings[:4])
            notes.append(f"- {label}: most frequent warnings: {top}")
    lines += ["Notes:", "", *notes, ""]
    return "\n".join(lines)


def environment(plan: Plan) -> list[str]:
    rev = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BENCH_DIR,
                             capture_output=True, text=True, timeout=5).stdout.strip()
    serf_version = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        serf_version = subprocess.run([plan.serf, "version"], capture_output=True, text=True,
                                      timeout=5).stdout.splitlines()[0]
    return [f"git {rev}", f"{os.cpu_count()} cores", f"load {os.getloadavg()[0]:.2f}",
            f"Python {platform.python_version()} ({plan.loop})", f"serf {serf_version}",
            f"steady {plan.steady:.0f}s, hog {plan.hog_procs}x{plan.hog:.0f}s"]


def plot(results: list[SideResult], path: Path) -> str:
    """A 2x2 figure of the four headline figures against N; a note when matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not importable (pip install matplotlib)"
    panels = [("converge_s", "convergence after join (s)"),
              ("detect_all_s", "failure detected by all (s)"),
              ("core_pct_per_node", "CPU per node (% of a core)"),
              ("rss_mb_per_node", "RSS per node (MB)")]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (attr, title) in zip(axes.flat, panels, strict=True):
        for side, style in (("ours", "o-"), ("serf", "s--")):
            pts = sorted((r.n, getattr(r, attr)) for r in results
                         if r.side == side and getattr(r, attr) is not None)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=side)
        ax.set_title(title)
        ax.set_xlabel("nodes")
        ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot: {path}"


# ----------------------------------------------------------------------------- main


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def parse_args(argv: Sequence[str] | None) -> Plan:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="10,50,200", help="cluster sizes (10,50,200)")
    parser.add_argument("--ours-only", action="store_true", help="skip the serf agents")
    parser.add_argument("--workers", type=int, default=0,
                        help="our worker processes (0: one per 100 nodes, at most one per core)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--steady", type=float, default=20.0, help="steady window, s (20)")
    parser.add_argument("--hog", type=float, default=30.0, help="CPU hog duration, s (30)")
    parser.add_argument("--hog-procs", type=int, default=2, help="busy-loop processes (2)")
    parser.add_argument("--grace", type=float, default=10.0,
                        help="seconds after the hog still counted (10)")
    parser.add_argument("--converge-timeout", type=float, default=0.0,
                        help="convergence bound, s (0: 20 + 0.35 N)")
    parser.add_argument("--converge-runs", type=int, default=0,
                        help="join cycles per side (0: 9 up to 20 nodes, 5 up to 50, else 1)")
    parser.add_argument("--join-window", type=int, default=1,
                        help="joins in flight at once (1: one after another; N: one burst)")
    parser.add_argument("--kills", type=int, default=0,
                        help="nodes killed one after another (0: 4 up to 50 nodes, else 3)")
    parser.add_argument("--detect-timeout", type=float, default=60.0,
                        help="failure detection bound, s (60)")
    parser.add_argument("--max-minutes", type=float, default=14.5, help="whole-run cap (14.5)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="output directory")
    parser.add_argument("--serf", default=shutil.which("serf") or "serf", help="serf binary")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: N=10, 10 s windows (about 2.5 min)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.steady, args.hog, args.grace = "10", 10.0, 10.0, 5.0
    return Plan(sizes=[int(s) for s in args.sizes.split(",") if s.strip()],
                ours_only=args.ours_only, workers=args.workers, loop=args.loop,
                steady=args.steady, hog=args.hog, hog_procs=args.hog_procs, grace=args.grace,
                converge_timeout=args.converge_timeout, converge_runs=args.converge_runs,
                join_window=args.join_window,
                kills=args.kills, detect_timeout=args.detect_timeout,
                max_minutes=args.max_minutes, out=args.out, serf=args.serf)


def main(argv: Sequence[str] | None = None) -> int:
    plan = parse_args(argv)
    if not plan.ours_only and shutil.which(plan.serf) is None:
        print(f"serf binary not found ({plan.serf}); install Debian's serf or use --ours-only",
              file=sys.stderr)
        return 2
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    t_start = time.monotonic()
    progress(f"sizes {plan.sizes}, {'ours only' if plan.ours_only else 'serf then ours'}; "
             f"estimated {plan.estimate() / 60:.1f} min, capped at {plan.max_minutes:.0f} min")
    budget = Budget(plan.max_minutes)
    procs = Procs()
    hub = EventHub()
    results: list[SideResult] = []
    status = 0
    with sigterm_as_exit(), tempfile.TemporaryDirectory(prefix="gossip-cluster-") as tmp:
        try:
            for n in plan.sizes:
                for kind in (("ours",) if plan.ours_only else ("serf", "ours")):
                    if budget.left() < 30:
                        progress(f"run time cap: skipping {kind} N={n}")
                        continue
                    res = run_side(kind, n, plan, procs, hub, Path(tmp), budget)
                    results.append(res)
                    if not res.converge_runs:
                        status = 2
        finally:
            procs.kill_all()
            hub.close()
    elapsed = time.monotonic() - t_start
    text = report(results, plan, started, elapsed)
    plan.out.mkdir(parents=True, exist_ok=True)
    stem = plan.out / f"gossip_cluster-{time.strftime('%Y%m%d-%H%M%S')}"
    note = plot(results, stem.with_suffix(".png")) if results else "no plot: no results"
    text += f"\n{note}\n"
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    print(text)
    progress(f"report: {stem.with_suffix('.md')}")
    return status


if __name__ == "__main__":
    sys.exit(main())

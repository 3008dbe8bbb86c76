"""Blocking health queries at scale: wake-up latency, isolation, CPU and RSS with 10,000 watchers.

What it measures: one `proconsul agent -dev` child holds 1,000 services, each with one TTL check
(no runner work, so the agent's CPU is the blocking-query machinery alone). This script opens
10,000 concurrent blocking `GET /v1/health/service/<name>?index=N&wait=60s` queries with aiohttp
(10 per service, one connection each; the agent runs with
`limits { http_max_conns_per_client = 20000 }`), waits until the agent holds them all (its open
file descriptors), then flips one service's TTL check between passing and critical a bounded
number of times and records, for each flip:

- wake-up latency: from just before the `PUT /v1/agent/check/pass|fail/<id>` to each woken
  watcher's complete response (p50, p99, max over every wake of every flip);
- how many watchers woke: exactly that service's 10 is correct; a wake of any other service's
  watcher is counted as a failure of isolation (issue 4: a change to service A never wakes a
  watcher of service B);
- agent CPU (utime+stime of /proc/<pid>/stat) over the flips, and while the 10,000 watchers are
  held with nothing changing;
- agent RSS (VmRSS) before the watchers and with all 10,000 held.

Woken watchers re-arm at once with the index they were given, so every flip is seen by all 10.
The agent is pinned to core 0 and this script to core 1 when taskset exists and there are two
cores. The machine is shared: repeat (`--repeat`) and read the spread.

    .venv/bin/python bench/health_watch.py [--services N] [--per-service W] [--flaps F]
                                           [--gap S] [--repeat R]

Progress lines go to stdout; the markdown report is printed and written to
bench/results/health_watch.md. Exit status 0, 1 when isolation failed or a flip was missed,
2 when the agent does not start or the watchers cannot be held.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench_agent import Agent, BenchError, cpu_seconds, progress, rss_mib

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "health_watch.md"
REGISTER_CONCURRENCY = 32
ARM_BATCH = 500
ARM_TIMEOUT = 40.0
WAKE_TIMEOUT = 5.0
WAIT = "60s"
HOLD_SECONDS = 3.0

def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


@dataclass
class Result:
    watchers: int
    arm_s: float
    latencies_ms: list[float]
    wakes_target: list[int]
    wakes_other: list[int]
    hold_early_wakes: int
    watcher_errors: int
    hold_cpu_share: float
    flap_cpu_s: float
    flap_window_s: float
    rss_before_mib: float
    rss_held_mib: float
    fds_held: int
    flaps: int = 0
    missed: list[int] = field(default_factory=list)

    @property
    def flap_cpu_per_flap_ms(self) -> float:
        return self.flap_cpu_s / self.flaps * 1000 if self.flaps else float("nan")


def _service(i: int) -> str:
    return f"watch-{i:04d}"


class Watchers:
    """Every blocking query of the run; each wake is recorded as (service index, time)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.wakes: list[tuple[int, float]] = []
        self.errors = 0
        self.target_woke = asyncio.Event()
        self.target = -1
        self.tasks: list[asyncio.Task[None]] = []

    async def watch(self, svc: int, index: str) -> None:
        url = f"{self.base}/v1/health/service/{_service(svc)}"
        while True:
            try:
                async with self.session.get(url, params={"index": index, "wait": WAIT}) as r:
                    await r.read()
                    new_index = r.headers.get("X-Consul-Index", index)
                    status = r.status
            except (TimeoutError, aiohttp.ClientError):
                self.errors += 1
                await asyncio.sleep(0.5)
                continue
            now = time.monotonic()
            if status != 200:
                self.errors += 1
                await asyncio.sleep(0.5)
                continue
            self.wakes.append((svc, now))
            if svc == self.target:
                self.target_woke.set()
            index = new_index

    def since(self, t0: float) -> list[tuple[int, float]]:
        return [w for w in self.wakes if w[1] >= t0]


async def run_once(args: argparse.Namespace, tmp: Path, pin: bool) -> Result:
    agent = Agent(tmp, pin)
    watchers: Watchers | None = None
    try:
        await asyncio.to_thread(agent.wait_ready)
        pid = agent.proc.pid
        connector = aiohttp.TCPConnector(limit=REGISTER_CONCURRENCY)
        timeout = aiohttp.ClientTimeout(total=120, connect=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            sem = asyncio.Semaphore(REGISTER_CONCURRENCY)

            async def register(i: int) -> None:
                body = {"ID": _service(i), "Name": _service(i), "Port": 20000 + i,
                        "Checks": [{"CheckID": f"{_service(i)}-ttl", "TTL": "10m"}]}
                async with sem, session.put(f"{agent.base}/v1/agent/service/register",
                                            json=body) as r:
                    if r.status != 200:
                        raise BenchError(f"register answered {r.status}: {await r.text()}")

            t0 = time.monotonic()
            await asyncio.gather(*(register(i) for i in range(args.services)))
            progress(f"registered {args.services} services with TTL checks in "
                     f"{time.monotonic() - t0:.1f}s")
            # Wait until the catalog holds every check, so no held query sees a sync later.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                async with session.get(f"{agent.base}/v1/health/state/critical") as r:
                    n = sum(1 for c in await r.json()
                            if str(c.get("ServiceID", "")).startswith("watch-"))
                if n >= args.services:
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)

            async def index_of(i: int) -> str:
                async with sem, session.get(
                        f"{agent.base}/v1/health/service/{_service(i)}") as r:
                    await r.read()
                    return r.headers["X-Consul-Index"]

            indexes = await asyncio.gather(*(index_of(i) for i in range(args.services)))
            rss_before = rss_mib(pid)
            fds0 = open_fds(pid)

            # A session of their own, so no watcher reuses a pooled registration connection
            # and each one is a new descriptor in the agent.
            watch_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                                  timeout=timeout)
            watchers = Watchers(watch_session, agent.base)
            total = args.services * args.per_service
            t0 = time.monotonic()
            for start in range(0, total, ARM_BATCH):
                for n in range(start, min(total, start + ARM_BATCH)):
                    svc = n % args.services
                    watchers.tasks.append(asyncio.create_task(watchers.watch(svc, indexes[svc])))
                await asyncio.sleep(0.05)
            fds = open_fds(pid)
            while fds - fds0 < total and time.monotonic() - t0 < ARM_TIMEOUT:
                await asyncio.sleep(0.2)
                fds = open_fds(pid)
            if fds - fds0 < total:
                raise BenchError(f"agent holds {fds - fds0}/{total} connections after "
                                 f"{ARM_TIMEOUT:.0f}s")
            arm_s = time.monotonic() - t0
            progress(f"{total} blocking queries held ({fds} agent fds) in {arm_s:.1f}s")

            # Let every request be parsed and parked, then measure the idle hold.
            await asyncio.sleep(1.0)
            hold_t0 = time.monotonic()
            cpu0 = cpu_seconds(pid)
            await asyncio.sleep(HOLD_SECONDS)
            hold_share = (cpu_seconds(pid) - cpu0) / (time.monotonic() - hold_t0)
            rss_held = rss_mib(pid)
            early = len(watchers.wakes)
            progress(f"holding: agent {hold_share:.1%} of a core, RSS {rss_held:.0f} MiB "
                     f"(was {rss_before:.0f}), wakes before any flip: {early}")

            target = args.services // 2
            watchers.target = target
            check_id = f"{_service(target)}-ttl"
            latencies: list[float] = []
            wakes_target: list[int] = []
            wakes_other: list[int] = []
            missed: list[int] = []
            cpu0, f0 = cpu_seconds(pid), time.monotonic()
            for k in range(args.flaps):
                verb = "pass" if k % 2 == 0 else "fail"
                watchers.target_woke.clear()
                t_flap = time.monotonic()
                async with session.put(
                        f"{agent.base}/v1/agent/check/{verb}/{check_id}") as r:
                    if r.status != 200:
                        raise BenchError(f"check {verb} answered {r.status}")
                deadline = t_flap + WAKE_TIMEOUT
                while time.monotonic() < deadline:
                    got = sum(1 for s, _ in watchers.since(t_flap) if s == target)
                    if got >= args.per_service:
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(watchers.target_woke.wait(), 0.05)
                    watchers.target_woke.clear()
                await asyncio.sleep(args.gap)
                woke = watchers.since(t_flap)
                mine = [t for s, t in woke if s == target]
                latencies += [(t - t_flap) * 1000 for t in mine]
                wakes_target.append(len(mine))
                wakes_other.append(len(woke) - len(mine))
                if len(mine) < args.per_service:
                    missed.append(k)
            flap_window = time.monotonic() - f0
            flap_cpu = cpu_seconds(pid) - cpu0
            progress(f"{args.flaps} flips: p50 {percentile(latencies, 50):.1f} ms, p99 "
                     f"{percentile(latencies, 99):.1f} ms, target wakes/flip "
                     f"{min(wakes_target)}–{max(wakes_target)}, other wakes {sum(wakes_other)}, "
                     f"agent CPU {flap_cpu:.2f}s over {flap_window:.1f}s")
            if agent.proc.poll() is not None:
                raise BenchError(f"agent died:\n{agent.log_tail()}")
            result = Result(total, arm_s, latencies, wakes_target, wakes_other, early,
                            watchers.errors, hold_share, flap_cpu, flap_window, rss_before,
                            rss_held, fds, args.flaps, missed)
            for task in watchers.tasks:
                task.cancel()
            await asyncio.gather(*watchers.tasks, return_exceptions=True)
            await watch_session.close()
            return result
    finally:
        if watchers is not None:
            for task in watchers.tasks:
                task.cancel()
        agent.stop()


def report(args: argparse.Namespace, results: list[Result], pin: bool) -> str:
    def cell(values: list[float], fmt: str) -> str:
        med = statistics.median(values)
        if len(values) == 1:
            return format(med, fmt)
        return f"{format(med, fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"

    r0 = results[0]
    isolation_ok = all(sum(r.wakes_other) == 0 and r.hold_early_wakes == 0 for r in results)
    complete = all(not r.missed and max(r.wakes_target) == args.per_service for r in results)
    lines = [
        "# Blocking health queries: 10,000 watchers, one service flapping",
        "",
        f"`.venv/bin/python bench/health_watch.py --services {args.services} --per-service "
        f"{args.per_service} --flaps {args.flaps} --gap {args.gap:g} --repeat {args.repeat}`",
        "",
        f"- {args.services} services with one TTL check each; {r0.watchers} concurrent "
        f"`GET /v1/health/service/<name>?index=N&wait={WAIT}` ({args.per_service} per service, "
        "aiohttp, one connection each)",
        f"- {args.flaps} flips of one service's TTL check (pass/fail alternating), "
        f"{args.gap:g} s apart after its watchers woke; latency from just before the PUT to "
        "each woken watcher's full response",
        f"- {'agent on core 0, bench on core 1' if pin else 'not pinned'}; Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs; median (min–max) of "
        f"{len(results)} run(s)",
        "",
        "| metric | value |",
        "| --- | ---: |",
        f"| time to hold all {r0.watchers} queries, s | "
        f"{cell([r.arm_s for r in results], '.1f')} |",
        f"| wake-up latency p50, ms | "
        f"{cell([percentile(r.latencies_ms, 50) for r in results], '.1f')} |",
        f"| wake-up latency p99, ms | "
        f"{cell([percentile(r.latencies_ms, 99) for r in results], '.1f')} |",
        f"| wake-up latency max, ms | "
        f"{cell([max(r.latencies_ms, default=float('nan')) for r in results], '.1f')} |",
        f"| watchers of the flapped service woken per flip (want {args.per_service}) | "
        f"{min(min(r.wakes_target) for r in results)}–"
        f"{max(max(r.wakes_target) for r in results)} |",
        f"| other watchers woken by the flips (want 0) | "
        f"{sum(sum(r.wakes_other) for r in results)} |",
        f"| wakes while holding, before any flip (want 0) | "
        f"{sum(r.hold_early_wakes for r in results)} |",
        f"| watcher errors (connect/read/non-200) | {sum(r.watcher_errors for r in results)} |",
        f"| agent CPU while holding, nothing changing (share of a core) | "
        f"{cell([r.hold_cpu_share * 100 for r in results], '.1f')} % |",
        f"| agent CPU during the flips, share of a core | "
        f"{cell([r.flap_cpu_s / r.flap_window_s * 100 for r in results], '.1f')} % |",
        f"| agent CPU per flip (write + sync + 10 wakes + re-arm), ms | "
        f"{cell([r.flap_cpu_per_flap_ms for r in results], '.1f')} |",
        f"| agent RSS before the watchers, MiB | "
        f"{cell([r.rss_before_mib for r in results], '.0f')} |",
        f"| agent RSS with {r0.watchers} watchers held, MiB | "
        f"{cell([r.rss_held_mib for r in results], '.0f')} |",
        f"| RSS per held watcher, KiB | "
        f"{cell([(r.rss_held_mib - r.rss_before_mib) * 1024 / r.watchers for r in results], '.1f')}"
        " |",
        "",
        f"Isolation: **{'held' if isolation_ok else 'FAILED'}**; every flip woke all "
        f"{args.per_service} of its watchers: **{'yes' if complete else 'NO'}**.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--per-service", type=int, default=10)
    parser.add_argument("--flaps", type=int, default=20)
    parser.add_argument("--gap", type=float, default=0.3)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = args.services * args.per_service + 512
    if hard != resource.RLIM_INFINITY and hard < need:
        print(f"error: RLIMIT_NOFILE hard limit {hard} < {need}", file=sys.stderr)
        return 2
    pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    if pin:
        os.sched_setaffinity(0, {1})
    results: list[Result] = []
    try:
        for n in range(args.repeat):
            progress(f"run {n + 1}/{args.repeat}")
            with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
                results.append(asyncio.run(run_once(args, Path(tmp), pin)))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = report(args, results, pin)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    progress(f"wrote {RESULTS.relative_to(BENCH_DIR.parent)}")
    ok = all(sum(r.wakes_other) == 0 and r.hold_early_wakes == 0 and not r.missed
             for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

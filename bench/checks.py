"""Check-runner cost: agent CPU per 1,000 checks per second of interval, and RSS.

What it measures: one `proconsul agent -dev` child runs N services with C checks each (HTTP and
TCP alternating; every third check is TCP) against targets served by this script on 127.0.0.1
(one aiohttp server answering 200 on every path, four TCP listeners that accept and close).
After every check has reached passing, the agent's CPU (utime+stime of /proc/<pid>/stat, all
threads) is sampled over a steady window of several intervals. The figure reported is

    CPU per 1,000 checks per second of interval = (agent CPU-seconds / wall-seconds)
                                                  / (checks / interval) * 1,000

i.e. the share of one core the agent would spend running 1,000 checks at a 1 s interval, plus
the same cost as µs of CPU per check run, and the agent's RSS (VmRSS) with the checks loaded.
Why: issue 4 requires checks to be spread and run without blocking the loop; this figure tells
how many checks one agent core can carry and whether per-check cost is dominated by the
runner, the state update or the anti-entropy sync.

The agent is pinned to core 0 and this script (the targets) to core 1 when taskset exists and
there are two cores; the machine is shared, so repeat (`--repeat`) and read the spread.

    .venv/bin/python bench/checks.py [--services N] [--checks-per-service C] [--interval S]
                                     [--window S] [--repeat R]

Progress lines go to stdout; the markdown report is printed and written to
bench/results/checks.md. Exit status 0, or 2 when the agent does not start or checks do not pass.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from bench_agent import Agent, BenchError, cpu_seconds, progress, rss_mib

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "checks.md"
TCP_LISTENERS = 4
REGISTER_CONCURRENCY = 32

@dataclass
class Result:
    services: int
    checks: int
    interval: float
    register_s: float
    passing_s: float
    window_s: float
    cpu_s: float
    rss_idle_mib: float
    rss_mib: float

    @property
    def share(self) -> float:
        return self.cpu_s / self.window_s

    @property
    def per_1000(self) -> float:
        return self.share / (self.checks / self.interval) * 1000

    @property
    def us_per_run(self) -> float:
        return self.cpu_s / (self.window_s * self.checks / self.interval) * 1e6


async def _ok(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _on_connect(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


def _definition(i: int, per_service: int, interval: str, http_port: int,
                tcp_ports: list[int]) -> dict[str, object]:
    checks: list[dict[str, str]] = []
    for k in range(per_service):
        check = {"CheckID": f"bench-{i:05d}-{k}", "Interval": interval, "Timeout": "1s"}
        if k % 3 == 2:
            check["TCP"] = f"127.0.0.1:{tcp_ports[(i + k) % len(tcp_ports)]}"
        else:
            check["HTTP"] = f"http://127.0.0.1:{http_port}/svc/{i}/{k}"
        checks.append(check)
    return {"ID": f"bench-{i:05d}", "Name": f"bench-{i:05d}", "Port": 20000 + i % 40000,
            "Checks": checks}


async def _passing(session: aiohttp.ClientSession, base: str) -> int:
    async with session.get(f"{base}/v1/health/state/passing") as r:
        checks = await r.json()
    return sum(1 for c in checks if str(c.get("ServiceID", "")).startswith("bench-"))


async def run_once(args: argparse.Namespace, tmp: Path, pin: bool) -> Result:
    app = web.Application()
    app.router.add_get("/{tail:.*}", _ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
    http_port = int(runner.addresses[0][1])
    listeners = [await asyncio.start_server(_on_connect, "127.0.0.1", 0, backlog=1024)
                 for _ in range(TCP_LISTENERS)]
    tcp_ports = [int(s.sockets[0].getsockname()[1]) for s in listeners]
    agent = Agent(tmp, pin)
    try:
        await asyncio.to_thread(agent.wait_ready)
        pid = agent.proc.pid
        rss_idle = rss_mib(pid)
        interval = f"{args.interval:g}s"
        total = args.services * args.checks_per_service
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            sem = asyncio.Semaphore(REGISTER_CONCURRENCY)

            async def register(i: int) -> None:
                body = _definition(i, args.checks_per_service, interval, http_port, tcp_ports)
                async with sem, session.put(f"{agent.base}/v1/agent/service/register",
                                            json=body) as r:
                    if r.status != 200:
                        raise BenchError(f"register answered {r.status}: {await r.text()}")

            t0 = time.monotonic()
            await asyncio.gather(*(register(i) for i in range(args.services)))
            register_s = time.monotonic() - t0
            progress(f"registered {args.services} services / {total} checks in "
                     f"{register_s:.1f}s")
            deadline = max(60.0, 4 * args.interval)
            passing = 0
            while time.monotonic() - t0 < deadline:
                passing = await _passing(session, agent.base)
                if passing >= total:
                    break
                await asyncio.sleep(0.5)
            passing_s = time.monotonic() - t0
            if passing < total:
                raise BenchError(f"{passing}/{total} checks passing after {deadline:.0f}s")
            progress(f"all {total} checks passing {passing_s:.1f}s after the first register")
        # Let the first (staggered) round and its catalog syncs settle before sampling.
        await asyncio.sleep(args.interval)
        cpu0, w0 = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(args.window)
        cpu, window = cpu_seconds(pid) - cpu0, time.monotonic() - w0
        rss = rss_mib(pid)
        if agent.proc.poll() is not None:
            raise BenchError(f"agent died during the window:\n{agent.log_tail()}")
        result = Result(args.services, total, args.interval, register_s, passing_s, window, cpu,
                        rss_idle, rss)
        progress(f"window {window:.1f}s: agent CPU {cpu:.2f}s ({result.share:.1%} of a core), "
                 f"{result.per_1000:.3f} per 1,000 checks/s, {result.us_per_run:.0f} µs/run, "
                 f"RSS {rss:.0f} MiB")
        return result
    finally:
        agent.stop()
        for server in listeners:
            server.close()
        await runner.cleanup()


def report(args: argparse.Namespace, results: list[Result], pin: bool) -> str:
    def cell(values: list[float], fmt: str) -> str:
        med = statistics.median(values)
        if len(values) == 1:
            return format(med, fmt)
        return f"{format(med, fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"

    r0 = results[0]
    lines = [
        "# Check runners: agent CPU per 1,000 checks per second of interval",
        "",
        f"`.venv/bin/python bench/checks.py --services {args.services} --checks-per-service "
        f"{args.checks_per_service} --interval {args.interval:g} --window {args.window:g} "
        f"--repeat {args.repeat}`",
        "",
        f"- {r0.services} services × {args.checks_per_service} checks = {r0.checks} checks "
        f"(2/3 HTTP, 1/3 TCP), interval {r0.interval:g} s, timeout 1 s, targets on 127.0.0.1 "
        "in the bench process",
        f"- steady window {args.window:g} s after all checks passed plus one interval; "
        f"{'agent on core 0, targets on core 1' if pin else 'not pinned'}",
        f"- Python {platform.python_version()}, {os.cpu_count()} CPUs; "
        f"median (min–max) of {len(results)} run(s)",
        "",
        "| metric | value |",
        "| --- | ---: |",
        f"| register {r0.services} services (32 concurrent PUTs), s | "
        f"{cell([r.register_s for r in results], '.2f')} |",
        f"| first register → all passing, s | {cell([r.passing_s for r in results], '.1f')} |",
        f"| check runs per second | {r0.checks / r0.interval:,.0f} |",
        f"| agent CPU, share of one core | {cell([r.share * 100 for r in results], '.1f')} % |",
        f"| **CPU per 1,000 checks per second of interval** (core-s / s) | "
        f"**{cell([r.per_1000 for r in results], '.3f')}** |",
        f"| CPU per check run, µs | {cell([r.us_per_run for r in results], '.0f')} |",
        f"| agent RSS before registering, MiB | "
        f"{cell([r.rss_idle_mib for r in results], '.0f')} |",
        f"| agent RSS with the checks running, MiB | "
        f"{cell([r.rss_mib for r in results], '.0f')} |",
        "",
        "Read: 0.100 means 1,000 checks at a 1 s interval (or 10,000 at 10 s) cost a tenth of "
        "one core.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--checks-per-service", type=int, default=3)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    if pin:
        os.sched_setaffinity(0, {1})
    results: list[Result] = []
    try:
        for n in range(args.repeat):
            progress(f"run {n + 1}/{args.repeat}")
            with tempfile.TemporaryDirectory(prefix="bench-checks-") as tmp:
                results.append(asyncio.run(run_once(args, Path(tmp), pin)))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = report(args, results, pin)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    progress(f"wrote {RESULTS.relative_to(BENCH_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Raft log append throughput with group commit, against the disk's own sync rate.

python bench/raft_append.py [--duration S] [--writers 1,16,64,256] [--dir DIR] [--quick]

Issue 3 sets the bar: with many concurrent writers, group commit must lift appends/s far above
what one writer gets when every append pays its own fdatasync (this disk syncs in about 0.15 ms,
so the log is CPU-bound and the per-append Python and framing costs decide it). The script:

1. measures the disk's own rate: one writer, one ~2 KB record written and fdatasync'd per
   append, with plain os.write/os.fdatasync (no store), the baseline for the ratios;
2. runs FileLogStore with 1, 16, 64 and 256 concurrent writers, each awaiting store_logs of one
   ~256-byte entry in a loop for `--duration` seconds, and reports appends/s, p50/p99 commit
   latency, entries per sync and process CPU per append. Every cell is run with the compiled
   and with the pure codec twin, injected into FileLogStore(codec=...) in this one process, so
   the store code and everything else are identical between the two columns;
3. times encode_entries, decode_entries and scan of both twins (micro benchmarks);
4. runs bench/http_kv.py --server for durable PUTs through the whole agent against single-node
   etcd 3.4 at the same concurrency (skip with --no-e2e);
5. prints a markdown report with the ratios appends/s at 64 and 256 writers over the disk's
   rate (targets: >= 10x at 64, >= 20x at 256, marked MET or MISSED, never a failure), and
   writes it to bench/results/raft_append.md.

The event loop is uvloop, as the agent runs it (`--loop asyncio` for the stock loop). The whole
run takes about 8 x duration + 15 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from proconsul.raft import log_codec_py
from proconsul.raft.file_log import FileLogStore
from proconsul.raft.log import Log

try:
    from proconsul._speedups import raft_log as log_codec_c
except ImportError:
    log_codec_c = None

RESULTS = Path(__file__).resolve().parent / "results" / "raft_append.md"
TARGETS = {64: 10.0, 256: 20.0}
WARMUP = 0.25


@dataclass
class Cell:
    rate: float
    p50_ms: float
    p99_ms: float
    per_sync: float
    cpu_us: float


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def disk_rate(directory: Path, duration: float) -> Cell:
    """One writer, one ~2 KB record and one fdatasync per append, with no store at all."""
    path = directory / "disk-baseline"
    record = os.urandom(2048)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    latencies: list[float] = []
    try:
        clock = time.perf_counter
        cpu = time.process_time()
        start = clock()
        deadline = start + duration
        while True:
            began = clock()
            if began >= deadline:
                break
            os.write(fd, record)
            os.fdatasync(fd)
            latencies.append(clock() - began)
        elapsed = clock() - start
        cpu = time.process_time() - cpu
    finally:
        os.close(fd)
        path.unlink()
    return Cell(len(latencies) / elapsed, percentile(latencies, 0.5) * 1e3,
                percentile(latencies, 0.99) * 1e3, 1.0, cpu / len(latencies) * 1e6)


async def store_cell(directory: Path, codec: ModuleType, writers: int, duration: float) -> Cell:
    """`writers` tasks, each awaiting store_logs of one ~256-byte entry in a loop."""
    store = FileLogStore(directory, codec=codec)
    payload = os.urandom(256)
    next_index = [1]
    latencies: list[float] = []
    clock = time.perf_counter
    start = clock()
    warm = start + WARMUP
    deadline = warm + duration
    syncs_at_warm: list[int] = []
    cpu_at_warm: list[float] = []

    async def writer() -> None:
        store_logs = store.store_logs
        record = latencies.append
        while True:
            began = clock()
            if began >= deadline:
                return
            # taken after the check and before the await, so indexes reach the store in order
            index = next_index[0]
            next_index[0] = index + 1
            await store_logs((Log(index, 1, 0, payload),))
            if began >= warm:
                record(clock() - began)

    async def mark_warm() -> None:
        await asyncio.sleep(WARMUP)
        syncs_at_warm.append(store.syncs)
        cpu_at_warm.append(time.process_time())

    marker = asyncio.ensure_future(mark_warm())
    await asyncio.gather(*(writer() for _ in range(writers)))
    await marker
    cpu = time.process_time() - cpu_at_warm[0]
    syncs = store.syncs - syncs_at_warm[0]
    elapsed = clock() - warm
    await store.close()
    count = len(latencies)
    return Cell(count / elapsed, percentile(latencies, 0.5) * 1e3,
                percentile(latencies, 0.99) * 1e3, count / max(syncs, 1), cpu / count * 1e6)


def micro(codec: ModuleType) -> dict[str, float]:
    """Nanoseconds per operation for the framing functions of one twin."""
    one = [Log(1, 1, 0, os.urandom(256))]
    batch = [Log(i + 1, 1, 0, os.urandom(256)) for i in range(64)]
    segment = codec.encode_entries([Log(i + 1, 1, 0, b"x" * 256) for i in range(65536)])
    single = codec.encode_entries(one)

    def timed(op: Callable[[], object], rounds: int) -> float:
        best = float("inf")
        for _ in range(3):
            began = time.perf_counter()
            for _ in range(rounds):
                op()
            best = min(best, time.perf_counter() - began)
        return best / rounds * 1e9

    encode, decode, scan = codec.encode_entries, codec.decode_entries, codec.scan
    return {
        "encode 1 x 256 B": timed(lambda: encode(one), 20000),
        "encode 64 x 256 B": timed(lambda: encode(batch), 1000),
        "decode 1 x 256 B": timed(lambda: decode(single), 20000),
        "scan 16 MiB segment (65,536 records)": timed(lambda: scan(segment), 3),
    }


def run_loop(kind: str, coro: Coroutine[Any, Any, Cell]) -> Cell:
    if kind == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per cell")
    parser.add_argument("--writers", default="1,16,64,256")
    parser.add_argument("--dir", default=None, help="where the log goes (default: a temp dir)")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--quick", action="store_true", help="1 s cells (smoke run)")
    parser.add_argument("--no-e2e", action="store_true",
                        help="skip the end-to-end durable PUT comparison with etcd")
    args = parser.parse_args()
    duration = 1.0 if args.quick else args.duration
    writer_counts = [int(w) for w in args.writers.split(",")]
    twins: dict[str, ModuleType] = {"c": log_codec_c} if log_codec_c is not None else {}
    twins["py"] = log_codec_py
    base = Path(tempfile.mkdtemp(prefix="raft-append-", dir=args.dir))
    try:
        print(f"disk baseline: {duration:.0f}s of 2 KB write + fdatasync ...", flush=True)
        disk = disk_rate(base, duration)
        print(f"  {disk.rate:,.0f}/s p50 {disk.p50_ms:.3f} ms p99 {disk.p99_ms:.3f} ms",
              flush=True)
        cells: dict[tuple[int, str], Cell] = {}
        for writers in writer_counts:
            for name, codec in twins.items():
                directory = base / f"w{writers}-{name}"
                cell = run_loop(args.loop, store_cell(directory, codec, writers, duration))
                shutil.rmtree(directory)
                cells[writers, name] = cell
                print(f"  writers={writers:<3} codec={name:<2} {cell.rate:>9,.0f}/s "
                      f"p50 {cell.p50_ms:.3f} ms p99 {cell.p99_ms:.3f} ms "
                      f"{cell.per_sync:.1f}/sync {cell.cpu_us:.1f} us CPU/append", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    micros = {name: micro(codec) for name, codec in twins.items()}
    report = render(disk, cells, micros, writer_counts, list(twins), duration, args.loop)
    if not args.no_e2e:
        report += end_to_end(writer_counts, duration)
    print()
    print(report)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(report)
    print(f"written to {RESULTS}")
    return 0


def end_to_end(writer_counts: list[int], duration: float) -> str:
    """Durable PUT through the whole agent (HTTP, Raft, this log) against single-node etcd 3.4
    at the same concurrency, by running bench/http_kv.py in its --server mode."""
    seconds = str(max(1, round(duration)))
    conns = ",".join(str(w) for w in writer_counts)
    print(f"end to end: durable PUT vs etcd at {conns} connections ...", flush=True)
    cmd = [sys.executable, str(Path(__file__).with_name("http_kv.py")), "--server",
           "--skip-stacks", "--ops", "put", "--conns", conns, "--duration", seconds]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        return ("\n## End to end\n\nbench/http_kv.py --server failed:\n\n"
                f"{done.stdout[-2000:]}\n")
    text = (Path(__file__).parent / "results" / "http_kv.md").read_text()
    start = text.find("## a.")
    end = text.find("### c.", start)
    section = text[start:end].replace("## a. ours vs etcd", "## End to end: durable PUT vs etcd")
    return "\n" + section


def render(disk: Cell, cells: dict[tuple[int, str], Cell], micros: dict[str, dict[str, float]],
           writer_counts: list[int], names: list[str], duration: float, loop: str) -> str:
    lines = [
        "# Raft log append: group commit vs the disk's own sync rate",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}, Python {sys.version.split()[0]}, {loop}, "
        f"{os.cpu_count()} CPUs, {duration:.0f} s per cell. Codec twins injected into "
        f"FileLogStore(codec=...) in one process.",
        "",
        f"Disk baseline (1 writer, 2 KB write + fdatasync per append, no store): "
        f"**{disk.rate:,.0f} appends/s**, p50 {disk.p50_ms:.3f} ms, p99 {disk.p99_ms:.3f} ms.",
        "",
        "| writers | codec | appends/s | x disk | p50 ms | p99 ms | entries/sync | "
        "CPU us/append |",
        "| ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for writers in writer_counts:
        for name in names:
            c = cells[writers, name]
            lines.append(
                f"| {writers} | {name} | {c.rate:,.0f} | {c.rate / disk.rate:.1f} | "
                f"{c.p50_ms:.3f} | {c.p99_ms:.3f} | {c.per_sync:.1f} | {c.cpu_us:.1f} |"
            )
    lines += ["", "Targets (appends/s over the disk baseline):", ""]
    for writers, target in TARGETS.items():
        for name in names:
            if (writers, name) not in cells:
                continue
            ratio = cells[writers, name].rate / disk.rate
            verdict = "MET" if ratio >= target else "MISSED"
            lines.append(f"- {writers} writers, {name}: {ratio:.1f}x (target >= {target:.0f}x) "
                         f"**{verdict}**")
    lines += ["", "Framing micro benchmarks (ns per call, best of 3):", ""]
    ops = list(next(iter(micros.values())))
    header = "| operation | " + " | ".join(names)
    if "c" in micros and "py" in micros:
        header += " | py / c"
    lines += [header + " |", "| --- |" + " ---: |" * (len(names) + ("c" in micros and
                                                                     "py" in micros))]
    for op in ops:
        row = f"| {op} | " + " | ".join(f"{micros[n][op]:,.0f}" for n in names)
        if "c" in micros and "py" in micros:
            row += f" | {micros['py'][op] / micros['c'][op]:.1f}"
        lines.append(row + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

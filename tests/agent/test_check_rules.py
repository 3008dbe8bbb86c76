"""Check rules that need no network: thresholds, output caps, timing and the factory.

These encode Consul's observable contract (status transitions, exact output text), which
clients and dashboards depend on, so they are pinned down here independently of any probe.
"""

from __future__ import annotations

import asyncio
import random
import statistics

import pytest

from proconsul.agent.checks import (
    SCRIPTS_DISABLED_MESSAGE,
    CheckDefinition,
    CheckTypeError,
    DockerCheck,
    HTTPCheck,
    IntervalCheck,
    ScriptCheck,
    ScriptChecksDisabledError,
    TailBuffer,
    TCPCheck,
    ThresholdSink,
    TTLCheck,
    UDPCheck,
    UnsupportedCheckTypeError,
    go_duration,
    make_runner,
    random_stagger,
    truncate_ttl_output,
)


class Recorder:
    def __init__(self) -> None:
        self.updates: list[tuple[str, str, str]] = []

    def update_check(self, check_id: str, status: str, output: str) -> None:
        self.updates.append((check_id, status, output))

    @property
    def statuses(self) -> list[str]:
        return [u[1] for u in self.updates]


def test_threshold_counters_start_saturated() -> None:
    rec = Recorder()
    sink = ThresholdSink(rec, success_before_passing=3, failures_before_critical=3)
    sink.update_check("c", "passing", "first")
    assert rec.updates == [("c", "passing", "first")]
    sink2 = ThresholdSink(rec, success_before_passing=3, failures_before_critical=3)
    sink2.update_check("c", "critical", "boom")
    assert rec.updates[-1] == ("c", "critical", "boom")


def test_threshold_success_before_passing() -> None:
    rec = Recorder()
    sink = ThresholdSink(rec, success_before_passing=2)
    sink.update_check("c", "critical", "down")
    sink.update_check("c", "passing", "up1")
    assert rec.statuses == ["critical"]  # below threshold: neither status nor output moves
    sink.update_check("c", "warning", "up2")
    assert rec.updates[-1] == ("c", "warning", "up2")  # warning counts as success
    sink.update_check("c", "critical", "down")
    sink.update_check("c", "passing", "up")
    assert rec.statuses == ["critical", "warning", "critical"]


def test_threshold_warning_then_critical() -> None:
    rec = Recorder()
    sink = ThresholdSink(rec, failures_before_warning=1, failures_before_critical=3)
    sink.update_check("c", "passing", "ok")
    sink.update_check("c", "critical", "f1")
    sink.update_check("c", "critical", "f2")
    sink.update_check("c", "critical", "f3")
    assert rec.updates == [("c", "passing", "ok"), ("c", "warning", "f1"),
                           ("c", "warning", "f2"), ("c", "critical", "f3")]
    sink.update_check("c", "passing", "ok2")
    assert rec.updates[-1] == ("c", "passing", "ok2")


def test_threshold_unset_warning_follows_critical() -> None:
    rec = Recorder()
    sink = ThresholdSink(rec, failures_before_critical=2)
    sink.update_check("c", "passing", "ok")
    sink.update_check("c", "critical", "f1")
    assert rec.statuses == ["passing"]
    sink.update_check("c", "critical", "f2")
    assert rec.statuses == ["passing", "critical"]


def test_zero_thresholds_follow_every_result() -> None:
    rec = Recorder()
    sink = ThresholdSink(rec)
    for status in ("passing", "critical", "warning", "critical", "passing"):
        sink.update_check("c", status, status)
    assert rec.statuses == ["passing", "critical", "warning", "critical", "passing"]


def test_ttl_output_truncation_text() -> None:
    assert truncate_ttl_output("short", 10) == "short"
    assert truncate_ttl_output("x" * 12, 10) == "x" * 10 + " ... (captured 10 of 12 bytes)"
    assert truncate_ttl_output("y" * 5000, 0).endswith("(captured 4096 of 5000 bytes)")


def test_tail_buffer_keeps_the_end() -> None:
    buf = TailBuffer(8)
    buf.write(b"abcdef")
    assert buf.captured_text() == "abcdef"
    buf.write(b"ghijkl")
    assert buf.text() == "efghijkl"
    assert buf.captured_text() == "Captured 8 of 12 bytes\n...\nefghijkl"
    big = TailBuffer(4)
    big.write(b"0123456789")
    assert big.text() == "6789"


def test_go_duration_strings() -> None:
    assert go_duration(30) == "30s"
    assert go_duration(0.5) == "500ms"
    assert go_duration(1.5) == "1.5s"
    assert go_duration(90) == "1m30s"
    assert go_duration(60) == "1m0s"
    assert go_duration(3600) == "1h0m0s"
    assert go_duration(0) == "0s"


def test_first_runs_spread_over_the_interval() -> None:
    rng = random.Random(42)
    offsets = [random_stagger(10.0, rng) for _ in range(1000)]
    assert all(0.0 <= o < 10.0 for o in offsets)
    # no herd: at most a few percent land in any one 100ms slice, and the spread is uniform-ish
    buckets = [0] * 100
    for o in offsets:
        buckets[int(o * 10)] += 1
    assert max(buckets) < 40
    assert sum(1 for o in offsets if o < 0.1) < 40
    assert 4.0 < statistics.mean(offsets) < 6.0
    assert statistics.pstdev(offsets) > 2.5


def test_scheduler_uses_stagger_then_interval() -> None:
    class Counting(IntervalCheck):
        def __init__(self, defn: CheckDefinition, sink: Recorder, first: float) -> None:
            super().__init__(defn, sink, first_delay=first)
            self.runs: list[float] = []

        async def probe(self) -> tuple[str, str]:
            self.runs.append(asyncio.get_running_loop().time())
            return "passing", "ok"

    async def main() -> list[list[float]]:
        rec = Recorder()
        loop = asyncio.get_running_loop()
        start = loop.time()
        checks = [Counting(CheckDefinition(f"c{i}", "n", interval=0.3), rec, first)
                  for i, first in enumerate((0.05, 0.15, 0.25))]
        for c in checks:
            c.start()
        await asyncio.sleep(0.5)
        for c in checks:
            c.stop()
        await asyncio.sleep(0.35)  # stopped checks never run again
        return [[t - start for t in c.runs] for c in checks]

    runs = asyncio.run(main())
    for first, times in zip((0.05, 0.15, 0.25), runs, strict=True):
        assert times[0] == pytest.approx(first, abs=0.05)
        assert all(t < 0.55 for t in times)
    assert len(runs[0]) == 2 and runs[0][1] == pytest.approx(0.35, abs=0.06)


def test_default_start_is_not_immediate() -> None:
    async def main() -> int:
        rec = Recorder()
        defn = CheckDefinition("t", "t", tcp="127.0.0.1:9", interval=10.0)
        runners = [TCPCheck(defn, rec) for _ in range(1000)]
        for r in runners:
            r.start()
        await asyncio.sleep(0.05)
        for r in runners:
            r.stop()
        return len(rec.updates)

    # with a 10s interval about 5 of 1000 may fall in the first 50ms, never the herd
    assert asyncio.run(main()) < 50


def test_ttl_expiry_and_updates() -> None:
    async def main() -> list[tuple[str, str, str]]:
        rec = Recorder()
        ttl = TTLCheck(CheckDefinition("t", "t", ttl=0.15, output_max_size=10), rec)
        ttl.start()
        await asyncio.sleep(0.2)
        out = ttl.set_status("passing", "all good and then some")
        assert out == "all good a ... (captured 10 of 22 bytes)"
        await asyncio.sleep(0.1)
        ttl.set_status("warning", "meh")  # renews the TTL
        await asyncio.sleep(0.1)
        assert rec.updates[-1][1] == "warning"
        await asyncio.sleep(0.1)
        ttl.stop()
        ttl.set_status("passing", "after stop")
        await asyncio.sleep(0.2)
        return rec.updates

    updates = asyncio.run(main())
    assert updates == [
        ("t", "critical", "TTL expired"),
        ("t", "passing", "all good a ... (captured 10 of 22 bytes)"),
        ("t", "warning", "meh"),
        ("t", "critical", "TTL expired (last output before timeout follows): meh"),
        ("t", "passing", "after stop"),
    ]


def test_ttl_initial_status() -> None:
    rec = Recorder()
    assert TTLCheck(CheckDefinition("t", "t", ttl=1), rec).status == "critical"
    assert TTLCheck(CheckDefinition("t", "t", ttl=1, status="passing"), rec).status == "passing"


def test_factory_picks_runner_and_wraps_thresholds() -> None:
    rec = Recorder()
    cases: list[tuple[CheckDefinition, type]] = [
        (CheckDefinition("a", "a", ttl=5), TTLCheck),
        (CheckDefinition("b", "b", http="http://x/", interval=5), HTTPCheck),
        (CheckDefinition("c", "c", tcp="x:1", interval=5), TCPCheck),
        (CheckDefinition("d", "d", udp="x:1", interval=5), UDPCheck),
        (CheckDefinition("e", "e", args=["true"], interval=5), ScriptCheck),
        (CheckDefinition("f", "f", docker_container_id="x", args=["true"], interval=5),
         DockerCheck),
    ]
    for defn, cls in cases:
        runner = make_runner(defn, rec, enable_script_checks=True)
        assert type(runner) is cls
        if isinstance(runner, IntervalCheck):
            assert isinstance(runner.sink, ThresholdSink)
        else:
            assert runner.sink is rec  # TTL updates are authoritative, no thresholds
    clamped = make_runner(CheckDefinition("g", "g", tcp="x:1", interval=0.1), rec,
                          enable_script_checks=False)
    assert isinstance(clamped, TCPCheck) and clamped.interval == 1.0
    assert isinstance(clamped, TCPCheck) and clamped.timeout == 10.0
    script = make_runner(CheckDefinition("h", "h", args=["true"], interval=5), rec,
                         enable_script_checks=True)
    assert isinstance(script, ScriptCheck) and script.timeout == 30.0


def test_factory_errors() -> None:
    rec = Recorder()
    for defn in (CheckDefinition("e", "e", args=["true"], interval=5),
                 CheckDefinition("f", "f", docker_container_id="x", args=["true"], interval=5)):
        with pytest.raises(ScriptChecksDisabledError) as info:
            make_runner(defn, rec, enable_script_checks=False)
        assert str(info.value) == SCRIPTS_DISABLED_MESSAGE
        assert isinstance(info.value, ValueError)
    with pytest.raises(CheckTypeError, match=r"^Check type is not valid$"):
        make_runner(CheckDefinition("x", "x"), rec, enable_script_checks=True)
    with pytest.raises(UnsupportedCheckTypeError):
        make_runner(CheckDefinition("x", "x", alias_service="web"), rec,
                    enable_script_checks=True)

"""In-memory metrics with the shapes of go-metrics' InmemSink (the JSON of
/v1/agent/metrics) and a Prometheus text rendering of the same values.

Only cheap bookkeeping happens on hot paths: a counter add or a sample append to a
fixed-interval aggregate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class _Agg:
    count: int = 0
    total: float = 0.0
    sq: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def add(self, v: float) -> None:
        self.count += 1
        self.total += v
        self.sq += v * v
        if v < self.low:
            self.low = v
        if v > self.high:
            self.high = v

    def to_api(self, name: str, interval: float) -> dict[str, Any]:
        n = self.count
        mean = self.total / n if n else 0.0
        var = (self.sq - n * mean * mean) / (n - 1) if n > 1 else 0.0
        return {
            "Name": name, "Count": n, "Rate": self.total / interval if interval else 0.0,
            "Sum": self.total, "Min": self.low if n else 0.0, "Max": self.high if n else 0.0,
            "Mean": mean, "Stddev": math.sqrt(max(var, 0.0)), "Labels": {},
        }


@dataclass
class Metrics:
    """Counters, gauges and timing samples keyed by Consul's metric names."""

    prefix: str = "consul"
    interval: float = 10.0
    gauges: dict[str, float] = field(default_factory=dict)
    counters: dict[str, _Agg] = field(default_factory=dict)
    samples: dict[str, _Agg] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)

    def incr(self, name: str, value: float = 1.0) -> None:
        key = f"{self.prefix}.{name}"
        agg = self.counters.get(key)
        if agg is None:
            agg = self.counters[key] = _Agg()
        agg.add(value)
        self.totals[key] = self.totals.get(key, 0.0) + value

    def gauge(self, name: str, value: float) -> None:
        self.gauges[f"{self.prefix}.{name}"] = value

    def sample_ms(self, name: str, started: float) -> None:
        """Record the milliseconds since `started` (a `time.perf_counter()` reading)."""
        key = f"{self.prefix}.{name}"
        agg = self.samples.get(key)
        if agg is None:
            agg = self.samples[key] = _Agg()
        agg.add((time.perf_counter() - started) * 1000.0)

    def snapshot(self) -> dict[str, Any]:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime())
        return {
            "Timestamp": stamp,
            "Gauges": [
                {"Name": k, "Value": v, "Labels": {}} for k, v in sorted(self.gauges.items())
            ],
            "Points": [],
            "Counters": [a.to_api(k, self.interval) for k, a in sorted(self.counters.items())],
            "Samples": [a.to_api(k, self.interval) for k, a in sorted(self.samples.items())],
        }

    def prometheus(self) -> str:
        lines: list[str] = []

        def metric(name: str) -> str:
            return name.replace(".", "_").replace("-", "_")

        for k, v in sorted(self.gauges.items()):
            m = metric(k)
            lines += [f"# HELP {m} {m}", f"# TYPE {m} gauge", f"{m} {v}"]
        for k, total in sorted(self.totals.items()):
            m = metric(k)
            lines += [f"# HELP {m} {m}", f"# TYPE {m} counter", f"{m} {total}"]
        for k, agg in sorted(self.samples.items()):
            m = metric(k)
            lines += [
                f"# HELP {m} {m}", f"# TYPE {m} summary",
                f"{m}_sum {agg.total}", f"{m}_count {agg.count}",
            ]
        return "\n".join(lines) + "\n"

"""Periodic duties on shared beats: a ticker's deadlines are beats one interval apart, tickers
of the same interval in one loop share at most PHASES beats, and probes follow the same rule.

The assertions read the deadlines the timers were armed for, not when they ran, so a slow
machine cannot fail them; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import replace

from proconsul.gossip.config import default_local
from proconsul.gossip.memberlist import Memberlist
from proconsul.gossip.mock_transport import MockNetwork
from proconsul.gossip.ticker import PHASES, Ticker, on_beat


def test_on_beat() -> None:
    step = 0.2 / PHASES
    assert on_beat(0.0, 0.2) == 0.0
    assert on_beat(0.001, 0.2) == step
    assert on_beat(3 * step, 0.2) == 3 * step
    rng = random.Random(7)
    for _ in range(2000):
        t = rng.uniform(0, 1e6)
        interval = rng.choice([0.2, 1.0, 0.1, 30.0, 15.0, 0.02])
        beat = on_beat(t, interval)
        assert t - 1e-6 <= beat < t + interval / PHASES + 1e-6
        assert abs(on_beat(beat, interval) - beat) < 1e-6
        # a beat plus whole intervals is a beat again, not the one after it
        for k in (1, 2, 7):
            assert abs(on_beat(beat + k * interval, interval) - (beat + k * interval)) < 1e-6


def phase(t: float, interval: float) -> int:
    return round((t % interval) / (interval / PHASES)) % PHASES


def test_tickers_share_beats_one_interval_apart() -> None:
    interval = 0.05

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        dues: dict[int, list[float]] = {i: [] for i in range(12)}
        tickers: list[Ticker] = []
        rng = random.Random(3)
        for i in range(12):
            def record(i: int = i) -> None:
                dues[i].append(tickers[i]._due)  # the deadline the next tick is armed for

            tickers.append(Ticker(loop, lambda: interval, record, rng.uniform(0, interval)))
        deadline = loop.time() + 10
        while min(len(d) for d in dues.values()) < 6 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for t in tickers:
            t.stop()
        assert min(len(d) for d in dues.values()) >= 6
        phases = {phase(d, interval) for series in dues.values() for d in series}
        assert len(phases) <= PHASES
        for series in dues.values():
            for a, b in itertools.pairwise(series):
                gap = (b - a) / interval
                # one interval apart, or whole intervals when a busy loop skipped a beat
                assert gap >= 0.999 and abs(gap - round(gap)) < 1e-6

    asyncio.run(scenario())


def test_probes_are_due_on_probe_beats() -> None:
    config = replace(default_local(), probe_interval=0.1, probe_timeout=0.04,
                     gossip_interval=0.02, push_pull_interval=0.0)

    async def scenario() -> None:
        net = MockNetwork()
        nodes = [Memberlist(f"node-{i}", config, net.new_transport()) for i in range(5)]
        for ml in nodes:
            await ml.start()
        for ml in nodes[1:]:
            await ml.join([f"{nodes[0].transport.advertise()[0]}:"
                           f"{nodes[0].transport.advertise()[1]}"])
        loop = asyncio.get_running_loop()
        seen: dict[str, list[float]] = {ml.name: [] for ml in nodes}
        deadline = loop.time() + 10
        while min(len(s) for s in seen.values()) < 8 and loop.time() < deadline:
            for ml in nodes:
                if not seen[ml.name] or seen[ml.name][-1] != ml.probe_due:
                    seen[ml.name].append(ml.probe_due)
            await asyncio.sleep(0.005)
        for ml in nodes:
            await ml.shutdown()
        assert min(len(s) for s in seen.values()) >= 8
        assert len({phase(d, 0.1) for s in seen.values() for d in s}) <= PHASES
        for series in seen.values():
            for a, b in itertools.pairwise(series):
                gap = (b - a) / 0.1
                assert gap >= 0.999 and abs(gap - round(gap)) < 1e-6

    asyncio.run(scenario())

"""The agent's coordinate push: the rate-scaled interval, one push per wait, and failures that
are logged without stopping the loop."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from proconsul.agent.coordinate_sync import (
    MIN_RATE,
    CoordinateSync,
    random_stagger,
    rate_scaled_interval,
)
from proconsul.gossip.serf.coordinate import Coordinate


def test_rate_scaled_interval() -> None:
    # 64 updates/s across the cluster, never more often than every 15 s per node
    assert rate_scaled_interval(64.0, 15.0, 1) == 15.0
    assert rate_scaled_interval(64.0, 15.0, 960) == 15.0
    assert rate_scaled_interval(64.0, 15.0, 6400) == 100.0
    assert rate_scaled_interval(MIN_RATE, 15.0, 10_000) == 15.0
    assert rate_scaled_interval(0.0, 2.0, 10_000) == 2.0


def test_random_stagger_stays_below_the_interval() -> None:
    rng = random.Random(7)
    values = [random_stagger(10.0, rng) for _ in range(200)]
    assert all(0.0 <= v < 10.0 for v in values) and len(set(values)) > 100
    assert random_stagger(0.0) == 0.0


def test_next_delay_follows_the_cluster_size() -> None:
    size = [1]

    async def update(node: str, segment: str, coord: Coordinate) -> None:
        return None

    sync = CoordinateSync("n1", Coordinate.new, update, lambda: size[0], rate_target=64.0,
                          interval_min=15.0, rng=random.Random(1))
    delays = [sync.next_delay() for _ in range(50)]
    assert all(15.0 <= d < 30.0 for d in delays)
    size[0] = 6400
    delays = [sync.next_delay() for _ in range(50)]
    assert all(100.0 <= d < 200.0 for d in delays)


def test_loop_pushes_this_agents_coordinate() -> None:
    async def body() -> None:
        sent: list[tuple[str, str, Coordinate]] = []
        position = [0.0]

        def current() -> Coordinate:
            position[0] += 0.001
            return Coordinate([position[0]] + [0.0] * 7)

        async def update(node: str, segment: str, coord: Coordinate) -> None:
            sent.append((node, segment, coord))

        sync = CoordinateSync("web1", current, update, lambda: 3, rate_target=64.0,
                              interval_min=0.01)
        sync.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while len(sent) < 3:
            assert loop.time() < deadline, "the loop stopped pushing"
            await asyncio.sleep(0.01)
        await sync.stop()
        count = len(sent)
        await asyncio.sleep(0.05)
        assert len(sent) == count, "pushes continued after stop"
        assert all(node == "web1" and segment == "" for node, segment, _ in sent)
        # each push reads the coordinate anew
        assert sent[0][2].vec[0] < sent[1][2].vec[0] < sent[2][2].vec[0]
        assert sync.sent == count and sync.failed == 0

    asyncio.run(body())


def test_failures_are_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        async def refuse(node: str, segment: str, coord: Coordinate) -> None:
            raise RuntimeError("No cluster leader")

        def broken() -> Coordinate:
            raise RuntimeError("no coordinate")

        with caplog.at_level(logging.ERROR, logger="proconsul"):
            assert not await CoordinateSync("n1", Coordinate.new, refuse, lambda: 1).push()
            assert not await CoordinateSync("n1", broken, refuse, lambda: 1).push()
        messages = [r.getMessage() for r in caplog.records]
        assert "Coordinate update error: error=No cluster leader" in messages
        assert "Failed to get coordinate: error=no coordinate" in messages

    asyncio.run(body())

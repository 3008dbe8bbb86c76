"""Serf with a snapshot file, on real loopback sockets so a node can restart on its port: a
restart resumes the three Lamport clocks, ignores events and queries it already saw, and
rejoins the nodes it last saw alive without being told where; after a graceful leave it
stays alone, unless rejoin_after_leave. Every wait is bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from proconsul.errors import GossipError
from proconsul.gossip.mock_transport import MockNetwork
from proconsul.gossip.serf.config import UserEventRecord
from proconsul.gossip.serf.query import QueryEvent, QueryParam
from proconsul.gossip.serf.serf import Serf, SerfEvent
from proconsul.gossip.serf.snapshot import read_snapshot
from tests.gossip.serf.harness import address, config, net_node, run, status, wait_for


def users(log: list[SerfEvent]) -> list[tuple[str, bytes]]:
    return [(e.name, e.payload) for e in log if isinstance(e, UserEventRecord)]


async def trio(snapshot: Path) -> tuple[Serf, Serf, Serf, list[SerfEvent]]:
    """n0 (with the snapshot), n1, n2, joined through n1; n0's events in the returned log."""
    log: list[SerfEvent] = []
    n0 = await net_node(config("n0", snapshot_path=str(snapshot)), on_event=log.append)
    n1 = await net_node(config("n1"))
    n2 = await net_node(config("n2"))
    assert await n0.join([address(n1)]) == 1
    assert await n2.join([address(n1)]) == 1
    await wait_for(lambda: all(len(s.members) == 3 for s in (n0, n1, n2)))
    return n0, n1, n2, log


def test_restart_resumes_clocks_skips_old_events_and_rejoins(tmp_path: Path) -> None:
    snapshot = tmp_path / "local.snapshot"

    async def main() -> None:
        n0, n1, n2, log = await trio(snapshot)
        n1.user_event("deploy", b"v1", coalesce=False)
        await wait_for(lambda: users(log) == [("deploy", b"v1")])
        collector = n2.query("uptime", b"", QueryParam(timeout=1.0))
        await wait_for(lambda: any(isinstance(e, QueryEvent) and e.name == "uptime"
                                   for e in log))
        event_ltime = next(e.ltime for e in log if isinstance(e, UserEventRecord))
        query_ltime = next(e.ltime for e in log if isinstance(e, QueryEvent))
        member_time = n0.clock.time()
        port = n0.memberlist.transport.advertise()[1]
        await n0.shutdown()  # a crash: no leave

        state = read_snapshot(snapshot)
        assert set(state.alive_nodes) == {"n0", "n1", "n2"}
        assert state.alive_nodes["n1"] == address(n1)
        assert (state.last_event_clock, state.last_query_clock) == (event_ltime, query_ltime)
        assert state.last_clock >= member_time - 1

        relog: list[SerfEvent] = []
        again = await net_node(config("n0", snapshot_path=str(snapshot)), port,
                               on_event=relog.append, start=False)
        assert {p.name for p in again.previous_nodes} == {"n0", "n1", "n2"}
        assert again.clock.time() >= member_time
        assert again.event_clock.time() == event_ltime + 1
        assert again.query_clock.time() == query_ltime + 1
        assert again.event_buffer.min_time == event_ltime + 1
        assert again.query_buffer.min_time == query_ltime + 1
        await again.start()
        assert again.rejoin_task is not None
        assert await asyncio.wait_for(again.rejoin_task, 20) is True
        await wait_for(lambda: status(again, "n1") == "alive" and status(again, "n2") == "alive",
                       timeout=20)
        await wait_for(lambda: status(n1, "n0") == "alive" and status(n2, "n0") == "alive",
                       timeout=20)
        # the push/pulls carried n1's event ring: the old event is not delivered again
        await asyncio.sleep(1.5)
        assert users(relog) == []
        n1.user_event("deploy", b"v2", coalesce=False)
        await wait_for(lambda: users(relog) == [("deploy", b"v2")])
        collector.close()
        for s in (again, n1, n2):
            await s.shutdown()

    run(main)


def test_graceful_leave_then_restart_stays_alone(tmp_path: Path) -> None:
    snapshot = tmp_path / "local.snapshot"

    async def main() -> None:
        n0, n1, n2, _ = await trio(snapshot)
        port = n0.memberlist.transport.advertise()[1]
        await n0.leave()
        await n0.shutdown()
        assert b"\nleave\n" in snapshot.read_bytes()
        # once every peer has n0 as left, none of them gossips to or probes it any more
        await wait_for(lambda: status(n1, "n0") == "left" and status(n2, "n0") == "left")

        again = await net_node(config("n0", snapshot_path=str(snapshot)), port)
        assert again.previous_nodes == []
        assert again.rejoin_task is None
        assert await again.rejoin_previous() is False
        await asyncio.sleep(1.0)
        assert set(again.members) == {"n0"}
        assert status(n1, "n0") in ("left", "none")
        await again.shutdown()

        # the same file with rejoin_after_leave: the leave is ignored and n1, n2 rejoined
        last = await net_node(config("n0", snapshot_path=str(snapshot),
                                     rejoin_after_leave=True), port)
        assert {p.name for p in last.previous_nodes} >= {"n1", "n2"}
        assert last.rejoin_task is not None
        assert await asyncio.wait_for(last.rejoin_task, 20) is True
        await wait_for(lambda: status(last, "n1") == "alive", timeout=20)
        await wait_for(lambda: status(n1, "n0") == "alive" and status(n2, "n0") == "alive",
                       timeout=20)
        for s in (last, n1, n2):
            await s.shutdown()

    run(main)


def test_rejoin_on_request_and_when_nobody_answers(tmp_path: Path) -> None:
    snapshot = tmp_path / "local.snapshot"

    async def main() -> None:
        n0, n1, n2, _ = await trio(snapshot)
        port = n0.memberlist.transport.advertise()[1]
        await n0.shutdown()

        again = await net_node(config("n0", snapshot_path=str(snapshot)), port, start=False)
        await again.start(rejoin=False)
        assert again.rejoin_task is None
        assert await again.rejoin_previous() is True
        await wait_for(lambda: status(again, "n1") == "alive" and status(again, "n2") == "alive")
        await again.shutdown()
        await n1.shutdown()
        await n2.shutdown()

        alone = await net_node(config("n0", snapshot_path=str(snapshot)), port, start=False)
        await alone.start(rejoin=False)
        assert await alone.rejoin_previous() is False
        await alone.shutdown()

    run(main)


def test_snapshot_that_cannot_be_opened(tmp_path: Path) -> None:
    with pytest.raises(GossipError, match="Failed to setup snapshot: failed to open snapshot"):
        Serf(config("n0", snapshot_path=str(tmp_path / "missing" / "local.snapshot")),
             MockNetwork().new_transport())

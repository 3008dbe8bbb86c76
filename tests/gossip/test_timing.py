"""Gossip timing rules: profiles, retransmit limits, suspicion timeouts, awareness, broadcast
queue ordering and replacement (the numbers are memberlist's, see gossip-wire.md §4)."""

from __future__ import annotations

import pytest

from proconsul.config.runtime import GossipConfig as Tuning
from proconsul.gossip.awareness import Awareness
from proconsul.gossip.config import (
    consul_lan,
    consul_wan,
    default_local,
    default_wan,
    push_pull_scale,
    retransmit_limit,
    suspicion_timeout,
)
from proconsul.gossip.queue import Broadcast, TransmitLimitedQueue
from proconsul.gossip.suspicion import Suspicion


def test_profiles() -> None:
    lan, wan = consul_lan(), consul_wan()
    assert (lan.bind_port, lan.probe_interval, lan.probe_timeout, lan.gossip_nodes) == (
        8301, 1.0, 0.5, 3)
    assert (wan.bind_port, wan.probe_interval, wan.suspicion_mult, wan.gossip_nodes) == (
        8302, 5.0, 6, 3)
    assert default_wan().gossip_nodes == 4
    assert lan.dead_node_reclaim_time == 30.0
    local = default_local()
    assert (local.indirect_checks, local.retransmit_mult, local.probe_timeout) == (1, 2, 0.2)
    tuned = lan.tuned(Tuning(0.1, 5, 2.0, 1.0, 7, 3))
    assert (tuned.gossip_interval, tuned.gossip_nodes, tuned.probe_interval,
            tuned.suspicion_mult, tuned.retransmit_mult) == (0.1, 5, 2.0, 7, 3)


@pytest.mark.parametrize(("n", "limit"), [(0, 0), (1, 4), (9, 4), (10, 8), (99, 8), (100, 12),
                                          (10_000, 20)])
def test_retransmit_limit(n: int, limit: int) -> None:
    assert retransmit_limit(4, n) == limit


@pytest.mark.parametrize(("n", "seconds"), [(1, 4.0), (10, 4.0), (100, 8.0), (10_000, 16.0)])
def test_suspicion_minimum(n: int, seconds: float) -> None:
    assert suspicion_timeout(4, n, 1.0) == pytest.approx(seconds)


def test_push_pull_scale() -> None:
    assert push_pull_scale(30, 32) == 30
    assert push_pull_scale(30, 33) == 60
    assert push_pull_scale(30, 64) == 60
    assert push_pull_scale(30, 65) == 90
    assert push_pull_scale(30, 10_000) == 300


def test_suspicion_shrinks_with_confirmations() -> None:
    s = Suspicion("c", "a", k=2, min_timeout=4.0, max_timeout=24.0, now=100.0)
    assert s.deadline() == 124.0
    assert not s.confirm("a")  # the accuser is no confirmation
    assert s.confirm("b")
    assert not s.confirm("b")
    mid = s.timeout()
    assert 4.0 < mid < 24.0
    assert s.confirm("d")
    assert s.timeout() == pytest.approx(4.0)
    assert not s.confirm("e")  # k reached
    none_expected = Suspicion("c", "a", k=0, min_timeout=4.0, max_timeout=24.0, now=0.0)
    assert none_expected.deadline() == 4.0


def test_awareness_bounds_and_scale() -> None:
    a = Awareness(8)
    a.apply_delta(-1)
    assert a.score == 0 and a.scale(1.0) == 1.0
    for _ in range(20):
        a.apply_delta(1)
    assert a.score == 7 and a.scale(1.0) == 8.0


def test_queue_order_limits_and_replacement() -> None:
    finished: list[str] = []
    q = TransmitLimitedQueue(1, lambda: 5)  # limit: 1 x ceil(log10 6) = 1 transmission
    q.queue(Broadcast(b"short", "n1", lambda: finished.append("n1-old")))
    q.queue(Broadcast(b"replacement", "n1", lambda: finished.append("n1")))
    q.queue(Broadcast(b"event-event", None, lambda: finished.append("ev")))
    assert finished == ["n1-old"] and len(q) == 2
    # equal transmits and lengths: the newest first
    assert q.get_broadcasts(2, 100) == [b"event-event", b"replacement"]
    assert len(q) == 0 and sorted(finished) == ["ev", "n1", "n1-old"]


def test_queue_packs_by_room_and_retransmits() -> None:
    q = TransmitLimitedQueue(4, lambda: 3)  # 4 transmissions each
    q.queue(Broadcast(b"x" * 50))
    q.queue(Broadcast(b"y" * 10))
    assert q.get_broadcasts(2, 30) == [b"y" * 10]  # the long one does not fit, the short does
    # the never-sent long one now comes first
    assert q.get_broadcasts(2, 100) == [b"x" * 50, b"y" * 10]
    for _ in range(3):
        q.get_broadcasts(2, 100)
    assert len(q) == 0
    q.queue(Broadcast(b"a"))
    q.queue(Broadcast(b"b"))
    q.prune(1)
    assert len(q) == 1

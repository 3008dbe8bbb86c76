"""The 512-slot dedup rings: user events dedup by (LTime, Name, Payload), queries by
(LTime, ID); the clock is witnessed first; anything a full ring behind the clock, or below the
minimum time, is dropped; the event ring is push/pull's `Events` field."""

from __future__ import annotations

import pytest

from proconsul.gossip.serf.codec import decode, encode
from proconsul.gossip.serf.event_buffer import QueryBuffer, UserEventBuffer
from proconsul.gossip.serf.lamport import LamportClock
from proconsul.gossip.serf.messages import PushPull, Query, UserEvent, UserEventEntry, UserEvents


def test_user_event_dedup() -> None:
    clock = LamportClock(1)
    ring = UserEventBuffer(clock)
    assert ring.accept(UserEvent(5, "deploy", b"v1", cc=True))
    assert clock.time() == 6
    assert not ring.accept(UserEvent(5, "deploy", b"v1"))
    assert ring.accept(UserEvent(5, "deploy", b"v2"))
    assert ring.accept(UserEvent(5, "other", b"v1"))
    assert ring.accept(UserEvent(6, "deploy", b"v1"))
    slot = ring.slots[5]
    assert slot == UserEvents(5, [UserEventEntry("deploy", b"v1"), UserEventEntry("deploy", b"v2"),
                                  UserEventEntry("other", b"v1")])


def test_nil_payload_equals_empty_payload() -> None:
    ring = UserEventBuffer(LamportClock())
    assert ring.accept(UserEvent(1, "e", None))
    assert not ring.accept(UserEvent(1, "e", b""))
    assert ring.slots[1] == UserEvents(1, [UserEventEntry("e", None)])


def test_slot_reuse_after_wraparound() -> None:
    clock = LamportClock()
    ring = UserEventBuffer(clock, size=8)
    assert ring.accept(UserEvent(3, "a", b""))
    assert ring.accept(UserEvent(11, "a", b""))
    assert ring.slots[3] == UserEvents(11, [UserEventEntry("a", b"")])
    # LTime 3 is now older than the clock (12) minus the ring size (8): dropped
    assert not ring.accept(UserEvent(3, "b", b""))
    assert ring.accept(UserEvent(4, "b", b""))


def test_too_old_only_once_the_clock_passes_the_ring_size() -> None:
    clock = LamportClock(512)
    ring = UserEventBuffer(clock)
    assert ring.accept(UserEvent(0, "x", None))
    clock.witness(600)
    assert clock.time() == 601
    assert not ring.accept(UserEvent(88, "old", None))
    assert ring.accept(UserEvent(89, "edge", None))


def test_min_time() -> None:
    clock = LamportClock(1)
    ring = UserEventBuffer(clock)
    ring.min_time = 10
    assert not ring.accept(UserEvent(9, "x", None))
    # witnessed even when dropped, as serf does
    assert clock.time() == 10
    assert ring.accept(UserEvent(10, "x", None))


def test_replay_of_a_push_pull_ring() -> None:
    remote = UserEventBuffer(LamportClock(1))
    for ltime, name in ((1, "a"), (1, "b"), (2, "c")):
        remote.accept(UserEvent(ltime, name, b"p"))
    wire = decode(encode(PushPull(ltime=3, events=remote.slots, event_ltime=3)))
    assert isinstance(wire, PushPull)
    local = UserEventBuffer(LamportClock(1))
    assert local.accept(UserEvent(1, "a", b"p"))
    fresh = local.replay(wire.events)
    assert fresh == [UserEvent(1, "b", b"p"), UserEvent(2, "c", b"p")]
    assert local.replay(wire.events) == []
    assert local.replay(None) == []
    assert local.replay([None, UserEvents(9, None)]) == []


def test_query_dedup() -> None:
    clock = LamportClock(1)
    ring = QueryBuffer(clock)
    q = Query(ltime=4, id=77, name="uptime")
    assert ring.accept(q)
    assert clock.time() == 5
    assert not ring.accept(Query(ltime=4, id=77, name="other name, same id"))
    assert ring.accept(Query(ltime=4, id=78))
    assert ring.accept(Query(ltime=4 + 512, id=77))
    assert not ring.accept(Query(ltime=4, id=99))
    ring.min_time = 2000
    assert not ring.accept(Query(ltime=1999, id=1))


def test_ring_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        UserEventBuffer(LamportClock(), size=0)

"""Event coalescers: member events keep each member's latest type and drop repeats of what
was delivered (updates excepted), coalesced user events keep the newest LTime per name, a
flush happens at the first of the coalesce and quiescent deadlines, and everything else
passes through at once. Timing runs on a fake clock, plus one real asyncio run."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

import pytest

from proconsul.gossip.serf.coalesce import MemberEventCoalescer, UserEventCoalescer
from proconsul.gossip.serf.events import EventType, MemberEvent
from proconsul.gossip.serf.messages import Member, UserEvent


class FakeHandle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """time() and call_at() over a manual clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, FakeHandle, Callable[[], object]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object]) -> FakeHandle:
        handle = FakeHandle()
        heapq.heappush(self._queue, (when, next(self._seq), handle, callback))
        return handle

    @property
    def armed(self) -> int:
        return sum(not h.cancelled for _, _, h, _ in self._queue)

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self._queue and self._queue[0][0] <= end:
            when, _, handle, callback = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            if not handle.cancelled:
                callback()
        self.now = end


def member(name: str, role: str = "") -> Member:
    return Member(name, b"\x7f\x00\x00\x01", 7946, {"role": role} if role else {})


def collect() -> tuple[list[list[object]], Callable[[list[object]], None]]:
    batches: list[list[object]] = []
    return batches, batches.append


def by_type(batch: list[object]) -> dict[EventType, list[str]]:
    out: dict[EventType, list[str]] = {}
    for event in batch:
        assert isinstance(event, MemberEvent)
        out[event.type] = sorted(m.name for m in event.members)
    return out


def test_member_coalesce_basic() -> None:
    loop = FakeLoop()
    batches, emit = collect()
    c = MemberEventCoalescer(emit, 5.0, 5.0, loop)
    for event in (
        MemberEvent(EventType.MEMBER_JOIN, [member("foo")]),
        MemberEvent(EventType.MEMBER_LEAVE, [member("foo")]),
        MemberEvent(EventType.MEMBER_LEAVE, [member("bar")]),
        MemberEvent(EventType.MEMBER_UPDATE, [member("zip", "foo")]),
        MemberEvent(EventType.MEMBER_UPDATE, [member("zip", "bar")]),
        MemberEvent(EventType.MEMBER_REAP, [member("dead")]),
    ):
        c.feed(event)
    assert batches == []
    loop.advance(5.0)
    assert len(batches) == 1
    assert by_type(batches[0]) == {EventType.MEMBER_LEAVE: ["bar", "foo"],
                                   EventType.MEMBER_UPDATE: ["zip"],
                                   EventType.MEMBER_REAP: ["dead"]}
    update = next(e for e in batches[0]
                  if isinstance(e, MemberEvent) and e.type == EventType.MEMBER_UPDATE)
    assert update.members[0].tags == {"role": "bar"}


def test_member_events_with_several_members_keep_each_member() -> None:
    loop = FakeLoop()
    batches, emit = collect()
    c = MemberEventCoalescer(emit, 1.0, 1.0, loop)
    c.feed(MemberEvent(EventType.MEMBER_JOIN, [member("a"), member("b"), member("c")]))
    loop.advance(1.0)
    assert [m.name for m in batches[0][0].members] == ["a", "b", "c"]  # type: ignore[attr-defined]


def test_repeats_of_the_delivered_type_are_dropped_except_updates() -> None:
    loop = FakeLoop()
    batches, emit = collect()
    c = MemberEventCoalescer(emit, 1.0, 0.5, loop)
    c.feed(MemberEvent(EventType.MEMBER_JOIN, [member("a")]))
    c.feed(MemberEvent(EventType.MEMBER_UPDATE, [member("u", "1")]))
    loop.advance(0.5)
    assert len(batches) == 1
    c.feed(MemberEvent(EventType.MEMBER_JOIN, [member("a")]))
    c.feed(MemberEvent(EventType.MEMBER_UPDATE, [member("u", "2")]))
    loop.advance(0.5)
    assert len(batches) == 2
    assert by_type(batches[1]) == {EventType.MEMBER_UPDATE: ["u"]}
    # a flush with nothing new delivers nothing; the delivered update is not repeated
    c.feed(MemberEvent(EventType.MEMBER_JOIN, [member("a")]))
    loop.advance(0.5)
    assert len(batches) == 2
    c.feed(MemberEvent(EventType.MEMBER_FAILED, [member("a")]))
    loop.advance(0.5)
    assert by_type(batches[2]) == {EventType.MEMBER_FAILED: ["a"]}


def test_quiescent_deadline_moves_with_each_event_and_coalesce_period_caps_it() -> None:
    loop = FakeLoop()
    batches, emit = collect()
    c = MemberEventCoalescer(emit, 3.0, 1.0, loop)
    for i in range(4):
        loop.advance(0.9 if i else 0.0)
        c.feed(MemberEvent(EventType.MEMBER_JOIN, [member(f"n{i}")]))
        assert loop.armed == 1  # one timer, however many events
        assert batches == []
        assert c.pending
    # the last event was at 2.7, so its quiet period would end at 3.7: the cap wins
    loop.advance(2.99 - loop.now)
    assert batches == []
    loop.advance(0.01)
    assert len(batches) == 1
    assert by_type(batches[0]) == {EventType.MEMBER_JOIN: ["n0", "n1", "n2", "n3"]}
    assert not c.pending
    assert loop.armed == 0


def test_quiet_period_flushes_early() -> None:
    loop = FakeLoop()
    batches, emit = collect()
    c = MemberEventCoalescer(emit, 10.0, 1.0, loop)
    c.feed(MemberEvent(EventType.MEMBER_JOIN, [member("a")]))
    loop.advance(0.6)
    c.feed(MemberEvent(EventType.MEMBER_JOIN, [member("b")]))
    loop.advance(0.6)
    assert batches == []
    loop.advance(0.4)
    assert by_type(batches[0]) == {EventType.MEMBER_JOIN: ["a", "b"]}


def test_pass_through() -> None:
    loop = FakeLoop()
    batches, emit = collect()
    c = MemberEventCoalescer(emit, 1.0, 1.0, loop)
    user = UserEvent(1, "x", None, cc=True)
    c.feed(user)
    c.feed("anything else")
    assert batches == [[user], ["anything else"]]
    assert loop.armed == 0
    for event_type in (EventType.MEMBER_JOIN, EventType.MEMBER_LEAVE, EventType.MEMBER_FAILED,
                       EventType.MEMBER_UPDATE, EventType.MEMBER_REAP):
        assert c.handles(MemberEvent(event_type, []))
    assert not c.handles(MemberEvent(EventType.USER, []))
    u = UserEventCoalescer(emit, 1.0, 1.0, loop)
    assert u.handles(user)
    assert not u.handles(UserEvent(1, "x", None, cc=False))
    assert not u.handles(MemberEvent(EventType.MEMBER_JOIN, []))


def test_user_coalesce_keeps_the_newest_ltime_per_name() -> None:
    loop = FakeLoop()
    batches, emit = collect()
    c = UserEventCoalescer(emit, 5.0, 5.0, loop)
    sent = [UserEvent(1, "foo", None, True), UserEvent(2, "foo", None, True),
            UserEvent(2, "bar", b"test1", True), UserEvent(2, "bar", b"test2", True),
            UserEvent(1, "bar", b"old", True)]
    for event in sent:
        c.feed(event)
    plain = UserEvent(7, "now", None, False)
    c.feed(plain)
    assert batches == [[plain]]
    loop.advance(5.0)
    assert batches[1] == [sent[1], sent[2], sent[3]]
    loop.advance(10.0)
    assert len(batches) == 2


def test_close_flushes_and_then_passes_through() -> None:
    loop = FakeLoop()
    batches, emit = collect()
    c = UserEventCoalescer(emit, 5.0, 5.0, loop)
    c.feed(UserEvent(1, "a", None, True))
    c.close()
    assert batches == [[UserEvent(1, "a", None, True)]]
    assert loop.armed == 0
    c.feed(UserEvent(2, "a", None, True))
    assert batches[-1] == [UserEvent(2, "a", None, True)]


def test_periods_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MemberEventCoalescer(lambda batch: None, 0.0, 1.0)


def test_on_a_real_event_loop() -> None:
    async def main() -> list[list[object]]:
        batches, emit = collect()
        members = MemberEventCoalescer(emit, 0.2, 0.05)
        users = UserEventCoalescer(lambda batch: [members.feed(e) for e in batch], 0.2, 0.05)
        users.feed(MemberEvent(EventType.MEMBER_JOIN, [member("a")]))
        users.feed(UserEvent(3, "deploy", b"1", True))
        users.feed(UserEvent(4, "deploy", b"2", True))
        users.feed(MemberEvent(EventType.MEMBER_JOIN, [member("b")]))
        assert batches == []
        await asyncio.sleep(0.15)
        assert not users.pending and not members.pending
        users.close()
        members.close()
        return batches

    batches = asyncio.run(main())
    assert len(batches) == 2
    flat = [event for batch in batches for event in batch]
    assert UserEvent(4, "deploy", b"2", True) in flat
    joins = [e for e in flat if isinstance(e, MemberEvent)]
    assert len(joins) == 1 and by_type([joins[0]]) == {EventType.MEMBER_JOIN: ["a", "b"]}

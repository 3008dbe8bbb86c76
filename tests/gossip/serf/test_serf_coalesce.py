"""Coalescing wired into Serf: member events are held per member and delivered as the latest
type for each (a type already delivered for a member is dropped, updates never are, and a
flushed event is not delivered again by a later flush); user events sent with coalescing
allowed keep only the newest LTime per name while the others pass at once; shutdown delivers
what is held. Events are fed synchronously, so "held" is checked before the loop can run a
timer; deliveries are awaited with bounded polling."""

from __future__ import annotations

from proconsul.gossip.messages import STATE_ALIVE, STATE_DEAD
from proconsul.gossip.mock_transport import MockNetwork
from proconsul.gossip.serf import codec
from proconsul.gossip.serf.config import SerfMember, UserEventRecord
from proconsul.gossip.serf.events import EventType, MemberEvent
from proconsul.gossip.serf.messages import STATUS_ALIVE
from proconsul.gossip.serf.serf import Serf, SerfEvent
from proconsul.gossip.state import NodeState
from tests.gossip.serf.harness import config, run, wait_for


def node(name: str, role: str = "web", state: int = STATE_ALIVE) -> NodeState:
    meta = codec.encode_tags({"role": role}, 5)
    return NodeState(name, bytes([10, 0, 0, len(name)]), 8301, meta, 1, state,
                     bytes([2, 5, 5, 2, 5, 5]))


def member_events(log: list[SerfEvent]) -> dict[EventType, list[SerfMember]]:
    out: dict[EventType, list[SerfMember]] = {}
    for event in log:
        assert isinstance(event, MemberEvent)
        assert event.type not in out, "one event per type per flush"
        out[event.type] = sorted(event.members, key=lambda m: m.name)
    return out


def names(members: list[SerfMember]) -> list[str]:
    return [m.name for m in members]


def users(log: list[SerfEvent]) -> list[tuple[str, bytes]]:
    return [(e.name, e.payload) for e in log if isinstance(e, UserEventRecord)]


def test_member_events_coalesce_by_member() -> None:
    async def main() -> None:
        log: list[SerfEvent] = []
        s = Serf(config("n0", coalesce_period=10.0, quiescent_period=0.2),
                 MockNetwork().new_transport(), log.append)
        await s.start()
        await wait_for(lambda: bool(log))
        assert {t: names(m) for t, m in member_events(log).items()} == {
            EventType.MEMBER_JOIN: ["n0"]}
        log.clear()

        # x joins, fails, comes back and changes its tags; y joins: one update, one join
        s.node_joined(node("x"))
        s.node_left(node("x", state=STATE_DEAD))
        s.node_joined(node("x"))
        s.node_updated(node("x", role="db"))
        s.node_joined(node("y"))
        assert log == []
        await wait_for(lambda: bool(log))
        got = member_events(log)
        assert {t: names(m) for t, m in got.items()} == {
            EventType.MEMBER_UPDATE: ["x"], EventType.MEMBER_JOIN: ["y"]}
        assert got[EventType.MEMBER_UPDATE][0].tags == {"role": "db"}
        assert got[EventType.MEMBER_UPDATE][0].status == STATUS_ALIVE
        log.clear()

        # y fails and is back before the flush: its join was delivered already, so nothing
        # for y; x's update was flushed and is not delivered again
        s.node_left(node("y", state=STATE_DEAD))
        s.node_joined(node("y"))
        s.node_joined(node("z"))
        assert log == []
        await wait_for(lambda: bool(log))
        assert {t: names(m) for t, m in member_events(log).items()} == {
            EventType.MEMBER_JOIN: ["z"]}
        log.clear()

        # updates are never dropped as repeats
        s.node_updated(node("x", role="cache"))
        await wait_for(lambda: bool(log))
        got = member_events(log)
        assert {t: names(m) for t, m in got.items()} == {EventType.MEMBER_UPDATE: ["x"]}
        assert got[EventType.MEMBER_UPDATE][0].tags == {"role": "cache"}
        log.clear()

        # user events are not held by the member coalescer
        s.user_event("deploy", b"1", coalesce=True)
        assert users(log) == [("deploy", b"1")]
        await s.shutdown()

    run(main)


def test_delivered_members_are_copies_taken_at_the_change() -> None:
    async def main() -> None:
        log: list[SerfEvent] = []
        s = Serf(config("n0"), MockNetwork().new_transport(), log.append)
        await s.start()
        s.node_joined(node("x"))
        s.node_updated(node("x", role="db"))
        joined, updated = log[-2], log[-1]
        assert isinstance(joined, MemberEvent) and isinstance(updated, MemberEvent)
        assert joined.members[0].tags == {"role": "web"}
        assert updated.members[0].tags == {"role": "db"}
        assert joined.members[0] is not s.members["x"]
        await s.shutdown()

    run(main)


def test_user_events_keep_the_newest_per_name() -> None:
    async def main() -> None:
        log: list[SerfEvent] = []
        s = Serf(config("n0", user_coalesce_period=10.0, user_quiescent_period=0.2),
                 MockNetwork().new_transport(), log.append)
        await s.start()
        # member events pass the user coalescer at once
        assert any(isinstance(e, MemberEvent) for e in log)
        s.user_event("deploy", b"1", coalesce=True)
        s.user_event("deploy", b"2", coalesce=True)
        s.user_event("restart", b"a", coalesce=True)
        s.user_event("plain", b"", coalesce=False)
        assert users(log) == [("plain", b"")]
        await wait_for(lambda: len(users(log)) > 1)
        assert users(log) == [("plain", b""), ("deploy", b"2"), ("restart", b"a")]
        s.user_event("deploy", b"3", coalesce=True)
        await wait_for(lambda: len(users(log)) > 3)
        assert users(log)[3:] == [("deploy", b"3")]
        await s.shutdown()

    run(main)


def test_shutdown_delivers_what_is_held() -> None:
    async def main() -> None:
        log: list[SerfEvent] = []
        s = Serf(config("n0", coalesce_period=60.0, quiescent_period=60.0,
                        user_coalesce_period=60.0, user_quiescent_period=60.0),
                 MockNetwork().new_transport(), log.append)
        await s.start()
        s.user_event("deploy", b"1", coalesce=True)
        s.node_joined(node("x"))
        assert log == []
        await s.shutdown()
        assert users(log) == [("deploy", b"1")]
        joins = [m.name for e in log if isinstance(e, MemberEvent) for m in e.members]
        assert sorted(joins) == ["n0", "x"]

    run(main)

"""Serf nodes on the in-memory network: member lifecycle (join, leave, failed, force-leave,
reap), user events delivered once each, queries with filters, acks and responses, tag updates
and keyring queries. Shrunken timings; every wait bounded."""

from __future__ import annotations

import asyncio

from proconsul.gossip.serf import codec
from proconsul.gossip.serf.config import UserEventRecord
from proconsul.gossip.serf.events import EventType, MemberEvent
from proconsul.gossip.serf.messages import KeyRequest, KeyResponse
from proconsul.gossip.serf.query import QueryEvent, QueryParam
from proconsul.gossip.serf.serf import Serf, SerfEvent
from tests.gossip.serf.harness import pool, run, status, wait_for


def test_members_tags_and_join_events() -> None:
    async def main() -> None:
        nodes, logs = await pool(3)
        assert nodes[2].members["n1"].tags == {"role": "web"}
        joins = {m.name for e in logs[0] if isinstance(e, MemberEvent)
                 and e.type == EventType.MEMBER_JOIN for m in e.members}
        assert joins == {"n0", "n1", "n2"}
        await nodes[1].set_tags({"role": "web", "rack": "r1"})
        await wait_for(lambda: all(s.members["n1"].tags.get("rack") == "r1" for s in nodes))
        for s in nodes:
            await s.shutdown()

    run(main)


def test_user_events_delivered_once_everywhere() -> None:
    async def main() -> None:
        nodes, logs = await pool(4)
        nodes[2].user_event("deploy", b"v1", coalesce=False)
        nodes[0].user_event("deploy", b"v2", coalesce=True)

        def got(log: list[SerfEvent]) -> list[tuple[str, bytes]]:
            return sorted((e.name, e.payload) for e in log if isinstance(e, UserEventRecord))

        await wait_for(lambda: all(len(got(log)) == 2 for log in logs))
        await asyncio.sleep(0.5)  # re-gossip and push/pulls must not deliver them again
        for log in logs:
            assert got(log) == [("deploy", b"v1"), ("deploy", b"v2")]
        for s in nodes:
            await s.shutdown()

    run(main)


def test_query_with_filters_acks_and_responses() -> None:
    async def main() -> None:
        nodes, _ = await pool(4)
        for s in nodes:
            def answer(e: SerfEvent, s: Serf = s) -> None:
                if isinstance(e, QueryEvent):
                    e.respond(f"pong from {s.name}".encode())
            s.on_event = answer
        collector = nodes[0].query("ping", b"", QueryParam(filter_tags={"role": "^web$"},
                                                          request_ack=True, timeout=3.0))
        acks, answers = set(), {}
        while (ack := await collector.acks.get()) is not None:
            acks.add(ack)
        while (resp := await collector.responses.get()) is not None:
            answers[resp.from_] = resp.payload
        assert acks == {"n1", "n3"}
        assert answers == {"n1": b"pong from n1", "n3": b"pong from n3"}
        collector = nodes[1].query("ping", b"", QueryParam(filter_nodes=["n2"], timeout=2.0,
                                                          relay_factor=1))
        got = []
        while (resp := await collector.responses.get()) is not None:
            got.append(resp.from_)
        assert got == ["n2"]
        for s in nodes:
            await s.shutdown()

    run(main)


def test_leave_failure_force_leave_and_reap() -> None:
    async def main() -> None:
        nodes, logs = await pool(4)
        await nodes[3].leave()
        await nodes[3].shutdown()
        await wait_for(lambda: all(status(s, "n3") in ("left", "none") for s in nodes[:3]))
        assert any(isinstance(e, MemberEvent) and e.type == EventType.MEMBER_LEAVE
                   for e in logs[0])
        # n2 stops answering: failed, then force-left by n0, then reaped
        await nodes[2].memberlist.shutdown()
        await wait_for(lambda: status(nodes[0], "n2") == "failed", timeout=15)
        await nodes[0].force_leave("n2")
        await wait_for(lambda: all(status(s, "n2") in ("left", "none") for s in nodes[:2]))
        await wait_for(lambda: "n2" not in nodes[0].members and "n3" not in nodes[0].members)
        assert any(isinstance(e, MemberEvent) and e.type == EventType.MEMBER_REAP
                   for e in logs[0])
        for s in nodes[:2]:
            await s.shutdown()
        await nodes[2].shutdown()

    run(main)


def test_keyring_queries_change_every_ring() -> None:
    async def main() -> None:
        nodes, _ = await pool(3, keyring=True)
        new = bytes(range(16, 32))
        for kind in ("install-key", "use-key"):
            collector = nodes[0].query(f"_serf_{kind}", codec.encode(KeyRequest(new)),
                                       QueryParam(timeout=1.0))
            answers = []
            while (resp := await collector.responses.get()) is not None:
                msg = codec.decode(resp.payload)
                assert isinstance(msg, KeyResponse) and msg.result, msg
                answers.append(resp.from_)
            assert sorted(answers) == ["n0", "n1", "n2"]
        for s in nodes:
            ring = s.memberlist.keyring
            assert ring is not None and ring.primary_key == new
        nodes[1].user_event("after", b"", coalesce=False)
        for s in nodes:
            await s.shutdown()

    run(main)


#: serf's Stats() keys (coordinate_resets only while coordinates are on)
STATS_KEYS = {"members", "failed", "left", "health_score", "member_time", "event_time",
              "query_time", "intent_queue", "event_queue", "query_queue", "encrypted",
              "coordinate_resets"}


def test_stats_counts_members_clocks_and_queues() -> None:
    async def main() -> None:
        nodes, _ = await pool(4)
        s = nodes[0]
        stats = s.stats()
        assert set(stats) == STATS_KEYS
        assert all(isinstance(v, str) for v in stats.values())
        assert (stats["members"], stats["failed"], stats["left"]) == ("4", "0", "0")
        assert stats["encrypted"] == "false"
        assert stats["coordinate_resets"] == "0"
        assert int(stats["health_score"]) >= 0
        assert stats["member_time"] == str(s.clock.time())
        events_before, queued_before = int(stats["event_time"]), int(stats["event_queue"])
        queries_before = int(stats["query_time"])
        s.user_event("deploy", b"", coalesce=False)
        s.query("ping", b"", QueryParam(timeout=0.5))
        stats = s.stats()
        assert int(stats["event_time"]) == events_before + 1
        assert int(stats["event_queue"]) == queued_before + 1
        assert int(stats["query_time"]) == queries_before + 1
        assert int(stats["query_queue"]) >= 1
        await nodes[3].leave()
        await nodes[3].shutdown()
        await nodes[2].memberlist.shutdown()
        await wait_for(lambda: s.stats()["left"] == "1" and s.stats()["failed"] == "1",
                       timeout=20)
        stats = s.stats()
        assert stats["members"] == "4"
        assert stats["intent_queue"] == str(len(s.intents))
        for node in nodes[:3]:
            await node.shutdown()

    run(main)


def test_stats_encryption_and_no_coordinates() -> None:
    async def main() -> None:
        nodes, _ = await pool(2, keyring=True, disable_coordinates=True)
        stats = nodes[1].stats()
        assert stats["encrypted"] == "true"
        assert set(stats) == STATS_KEYS - {"coordinate_resets"}
        for s in nodes:
            await s.shutdown()

    run(main)

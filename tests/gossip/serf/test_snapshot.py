"""Serf's snapshot file: the lines serf writes, replay of alive nodes and clocks, the `leave`
rule (and rejoin_after_leave), buffered writes flushed by timer or on demand, and compaction
to `<path>.compact` renamed over the file, on an event loop and without one."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from proconsul.gossip.serf.events import EventType, MemberEvent
from proconsul.gossip.serf.lamport import LamportClock
from proconsul.gossip.serf.messages import Member
from proconsul.gossip.serf.snapshot import (
    SNAPSHOT_SIZE_LIMIT,
    PreviousNode,
    Snapshotter,
    format_address,
    parse_snapshot,
    read_snapshot,
)

#: The snapshot of node a from the live serf 0.9.4 run (gossip-wire.md §5.9).
CAPTURED = b"""alive: a 127.0.0.1:17946
alive: b 127.0.0.1:17947
clock: 1
alive: c 127.0.0.1:17948
event-clock: 1
query-clock: 1
clock: 2
not-alive: c
clock: 3
not-alive: b
"""

FOO = Member("foo", bytes([127, 0, 0, 1]), 5000)


def join(*members: Member) -> MemberEvent[Member]:
    return MemberEvent(EventType.MEMBER_JOIN, list(members))


def failed(*members: Member) -> MemberEvent[Member]:
    return MemberEvent(EventType.MEMBER_FAILED, list(members))


def test_captured_snapshot_replays() -> None:
    state = parse_snapshot(CAPTURED)
    assert state.alive_nodes == {"a": "127.0.0.1:17946"}
    assert (state.last_clock, state.last_event_clock, state.last_query_clock) == (3, 1, 1)
    assert state.previous_nodes() == [PreviousNode("a", "127.0.0.1:17946")]
    assert state.previous_nodes()[0].join_address() == "a/127.0.0.1:17946"
    assert str(state.previous_nodes()[0]) == "a: 127.0.0.1:17946"


def test_replay_rules() -> None:
    data = (b"# comment\n"
            b"alive: node with spaces 10.0.0.1:8301\n"
            b"alive: noaddress\n"
            b"coordinate: {\"Vec\": []}\n"
            b"clock: 12\n"
            b"clock: +13\n"
            b"clock:  14\n"
            b"event-clock: 18446744073709551616\n"
            b"query-clock: 7\n"
            b"mystery line\n"
            b"alive: tail 10.0.0.2:8301")
    state = parse_snapshot(data)
    assert state.alive_nodes == {"node with spaces": "10.0.0.1:8301"}
    assert (state.last_clock, state.last_event_clock, state.last_query_clock) == (12, 0, 7)


def test_leave_line_forgets_what_came_before() -> None:
    data = CAPTURED + b"leave\nclock: 9\n"
    state = parse_snapshot(data)
    assert state.alive_nodes == {}
    assert (state.last_clock, state.last_event_clock, state.last_query_clock) == (9, 0, 0)
    kept = parse_snapshot(data, rejoin_after_leave=True)
    assert kept.alive_nodes == {"a": "127.0.0.1:17946"}
    assert (kept.last_clock, kept.last_event_clock, kept.last_query_clock) == (9, 1, 1)


def test_format_address() -> None:
    assert format_address(bytes([127, 0, 0, 1]), 5000) == "127.0.0.1:5000"
    assert format_address(bytes(10) + b"\xff\xff" + bytes([10, 1, 2, 3]), 1) == "10.1.2.3:1"
    assert format_address(bytes(15) + b"\x01", 8301) == "[::1]:8301"
    assert format_address(bytes.fromhex("fe800000000000000000000000000001"), 7) == "[fe80::1]:7"
    assert format_address(b"", 80) == ":80"
    assert format_address(b"\x01\x02", 80) == "?0102:80"


def test_missing_file_reads_empty(tmp_path: Path) -> None:
    assert read_snapshot(tmp_path / "none").alive_nodes == {}


def test_write_close_reopen(tmp_path: Path) -> None:
    path = tmp_path / "snap"

    async def first() -> None:
        clock = LamportClock()
        snap = Snapshotter(path, clock)
        snap.user_event(42)
        snap.query(50)
        clock.witness(100)
        snap.record_member_event(join(FOO))
        snap.record_member_event(failed(FOO))
        snap.record_member_event(join(FOO))
        snap.record_member_event(MemberEvent(EventType.MEMBER_UPDATE, [FOO]))
        snap.user_event(41)
        snap.query(50)
        await snap.close()

    asyncio.run(first())
    assert path.read_bytes() == (b"event-clock: 42\n"
                                 b"query-clock: 50\n"
                                 b"alive: foo 127.0.0.1:5000\n"
                                 b"clock: 100\n"
                                 b"not-alive: foo\n"
                                 b"alive: foo 127.0.0.1:5000\n")

    async def second() -> None:
        snap = Snapshotter(path, LamportClock())
        assert (snap.last_clock, snap.last_event_clock, snap.last_query_clock) == (100, 42, 50)
        assert snap.previous_nodes() == [PreviousNode("foo", "127.0.0.1:5000")]
        assert snap.alive_nodes == {"foo": "127.0.0.1:5000"}
        await snap.close()
        await snap.close()

    asyncio.run(second())


def test_writes_are_buffered_then_flushed_by_timer(tmp_path: Path) -> None:
    path = tmp_path / "snap"

    async def main() -> None:
        snap = Snapshotter(path, LamportClock(1), flush_interval=0.05)
        snap.alive("a", "127.0.0.1:1")
        snap.alive("b", "127.0.0.1:2")
        assert path.read_bytes() == b""
        assert snap.pending == 2 * len(b"alive: a 127.0.0.1:1\n")
        await asyncio.sleep(0.1)
        assert path.read_bytes() == b"alive: a 127.0.0.1:1\nalive: b 127.0.0.1:2\n"
        assert snap.pending == 0
        snap.not_alive("a")
        snap.flush()
        assert path.read_bytes().endswith(b"not-alive: a\n")
        await snap.close()

    asyncio.run(main())


def test_clock_ticker(tmp_path: Path) -> None:
    path = tmp_path / "snap"

    async def main() -> None:
        clock = LamportClock(1)
        snap = Snapshotter(path, clock, clock_interval=0.02, flush_interval=0.01)
        snap.start()
        snap.start()
        clock.witness(7)
        await asyncio.sleep(0.08)
        assert path.read_bytes() == b"clock: 7\n"
        clock.increment()
        await snap.close()
        assert path.read_bytes() == b"clock: 7\nclock: 8\n"

    asyncio.run(main())


def test_forced_compaction_on_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "snap"

    async def main() -> None:
        clock = LamportClock(1)
        snap = Snapshotter(path, clock, min_compact_size=1024)
        snap.alive("keep", "10.0.0.9:8301")
        for i in range(1024):
            snap.user_event(i)
            await asyncio.sleep(0)
        for i in range(1024):
            snap.query(i)
        await snap.close()
        assert not os.path.exists(str(path) + ".compact")
        assert path.stat().st_size < 1024 + 64

    asyncio.run(main())
    state = read_snapshot(path)
    assert (state.last_event_clock, state.last_query_clock) == (1023, 1023)
    assert state.alive_nodes == {"keep": "10.0.0.9:8301"}


def test_compaction_threshold_grows_with_the_alive_set(tmp_path: Path) -> None:
    snap = Snapshotter(tmp_path / "snap", LamportClock(1))
    assert snap.max_size() == SNAPSHOT_SIZE_LIMIT == 128 * 1024
    for i in range(600):
        snap.alive(f"n{i}", "10.0.0.1:1")
    assert snap.max_size() == 600 * 128 * 2
    snap.flush()


def test_compaction_without_a_loop_and_lines_after_it(tmp_path: Path) -> None:
    path = tmp_path / "snap"
    clock = LamportClock(1)
    snap = Snapshotter(path, clock, min_compact_size=0)
    snap.alive("node0", "10.0.0.0:8301")
    snap.alive("node1", "10.0.0.1:8301")
    snap.not_alive("node0")
    clock.witness(4)
    snap.update_clock()
    # threshold: 2 x 128 bytes per alive node; crossing it rewrites the file inline
    assert snap.max_size() == 256
    ltime = 0
    while path.stat().st_size == 0:
        ltime += 1
        snap.user_event(ltime)
    assert ltime < 20
    compacted = path.read_bytes()
    assert compacted == (b"alive: node1 10.0.0.1:8301\n"
                         + f"clock: 4\nevent-clock: {ltime}\nquery-clock: 0\n".encode())
    snap.query(9)
    snap.flush()
    assert path.read_bytes() == compacted + b"query-clock: 9\n"
    assert not os.path.exists(str(path) + ".compact")


def test_lines_recorded_during_compaction_land_in_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / "snap"

    async def main() -> None:
        snap = Snapshotter(path, LamportClock(1))
        snap.alive("a", "10.0.0.1:1")
        snap.flush()
        compaction = asyncio.ensure_future(snap.compact())
        await asyncio.sleep(0)
        snap.alive("b", "10.0.0.2:2")
        snap.flush()
        await compaction
        snap.flush()
        assert path.read_bytes() == (b"alive: a 10.0.0.1:1\nclock: 0\nevent-clock: 0\n"
                                     b"query-clock: 0\nalive: b 10.0.0.2:2\n")
        await snap.close()

    asyncio.run(main())
    assert read_snapshot(path).alive_nodes == {"a": "10.0.0.1:1", "b": "10.0.0.2:2"}


def test_leave(tmp_path: Path) -> None:
    path = tmp_path / "snap"

    async def main() -> None:
        clock = LamportClock()
        snap = Snapshotter(path, clock)
        snap.user_event(42)
        snap.query(50)
        clock.witness(100)
        snap.record_member_event(join(FOO))
        snap.leave()
        assert path.read_bytes().endswith(b"leave\n")
        # nothing more is recorded after a leave
        snap.record_member_event(join(Member("bar", b"\x01\x02\x03\x04", 1)))
        snap.user_event(99)
        await snap.close()

    asyncio.run(main())
    assert path.read_bytes().endswith(b"alive: foo 127.0.0.1:5000\nclock: 100\nleave\n")
    snap = Snapshotter(path, LamportClock())
    assert (snap.last_clock, snap.last_event_clock, snap.last_query_clock) == (0, 0, 0)
    assert snap.previous_nodes() == []


def test_leave_with_rejoin(tmp_path: Path) -> None:
    path = tmp_path / "snap"

    async def main() -> None:
        clock = LamportClock()
        snap = Snapshotter(path, clock, rejoin_after_leave=True)
        snap.user_event(42)
        snap.query(50)
        clock.witness(100)
        snap.record_member_event(join(FOO))
        snap.leave()
        assert snap.alive_nodes == {"foo": "127.0.0.1:5000"}
        await snap.close()

    asyncio.run(main())
    snap = Snapshotter(path, LamportClock(), rejoin_after_leave=True)
    assert (snap.last_clock, snap.last_event_clock, snap.last_query_clock) == (100, 42, 50)
    assert snap.previous_nodes() == [PreviousNode("foo", "127.0.0.1:5000")]
    assert Snapshotter(path, LamportClock()).previous_nodes() == []


def test_clock_lines_after_leave_still_count(tmp_path: Path) -> None:
    """serf keeps writing `clock:` from its ticker after a leave; replay honours them."""
    path = tmp_path / "snap"
    clock = LamportClock(5)
    snap = Snapshotter(path, clock)
    snap.update_clock()
    snap.leave()
    clock.witness(20)
    snap.update_clock()
    snap.flush()
    assert path.read_bytes() == b"clock: 4\nleave\nclock: 20\n"
    assert read_snapshot(path).last_clock == 20


def test_start_needs_a_loop(tmp_path: Path) -> None:
    snap = Snapshotter(tmp_path / "snap", LamportClock())
    with pytest.raises(RuntimeError):
        snap.start()
    snap.update_clock()
    assert snap.pending == 0


def test_write_error_recovers_by_rewriting_the_file(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "snap"
    snap = Snapshotter(path, LamportClock(1))
    snap.alive("a", "10.0.0.1:1")
    broken_fd = snap._fd
    real_write = os.write
    failures = [1]

    def write(fd: int, data: bytes | bytearray | memoryview) -> int:
        if fd == broken_fd and failures[0]:
            failures[0] -= 1
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    snap.flush()
    assert path.read_bytes() == (b"alive: a 10.0.0.1:1\nclock: 0\nevent-clock: 0\n"
                                 b"query-clock: 0\n")
    assert snap.pending == 0
    snap.alive("b", "10.0.0.2:2")
    snap.flush()
    assert path.read_bytes().endswith(b"alive: b 10.0.0.2:2\n")

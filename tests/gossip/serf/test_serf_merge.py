"""The merge check (SerfConfig.merge_delegate) wired into memberlist's merge and alive hooks:
a node whose tags conflict (another datacenter) is refused on the push/pull of a join and
when its alive message is gossiped by a member without the check, and is never added; the
check sees members as serf builds them (status none or left, tags, versions) and an invalid
node is refused before the check runs. Every wait is bounded."""

from __future__ import annotations

import logging
import random

import pytest

from proconsul.errors import GossipError
from proconsul.gossip.messages import STATE_ALIVE, STATE_LEFT
from proconsul.gossip.mock_transport import MockNetwork
from proconsul.gossip.serf import codec
from proconsul.gossip.serf.config import MergeCheck, SerfMember
from proconsul.gossip.serf.messages import STATUS_LEFT, STATUS_NONE
from proconsul.gossip.serf.serf import Serf
from proconsul.gossip.state import NodeState
from tests.gossip.serf.harness import address, config, run, wait_for

Calls = list[tuple[list[SerfMember], str | None]]


def same_dc(dc: str, calls: Calls) -> MergeCheck:
    """Refuse any member not tagged dc=`dc` (as Consul's LAN merge delegate does)."""

    def check(members: list[SerfMember]) -> str | None:
        reason = None
        for m in members:
            if m.tags.get("dc") != dc:
                reason = f"Member '{m.name}' part of wrong datacenter '{m.tags.get('dc', '')}'"
                break
        calls.append((members, reason))
        return reason

    return check


async def member(net: MockNetwork, name: str, dc: str, calls: Calls | None) -> Serf:
    check = same_dc(dc, calls) if calls is not None else None
    s = Serf(config(name, {"dc": dc}, merge_delegate=check), net.new_transport(),
             rng=random.Random(name))
    await s.start()
    return s


def test_join_of_a_conflicting_node_is_refused_both_ways(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="proconsul.memberlist")

    async def main() -> None:
        net = MockNetwork(seed=1)
        a_calls: Calls = []
        a = await member(net, "a", "dc1", a_calls)
        b = await member(net, "b", "dc1", [])
        assert await b.join([address(a)]) == 1
        await wait_for(lambda: len(a.members) == 2 and len(b.members) == 2)

        x = await member(net, "x", "dc2", [])
        with pytest.raises(GossipError, match=r"Merge canceled: Member '(a|b)' part of wrong "
                                              r"datacenter 'dc1'"):
            await x.join([address(a)])
        await wait_for(lambda: any(reason and "'x'" in reason for _, reason in a_calls))
        assert "x" not in a.memberlist.node_map and "x" not in a.members
        assert set(x.members) == {"x"}
        assert "memberlist: Cluster merge canceled: Member 'x' part of wrong datacenter " \
               "'dc2'" in caplog.text

        # what the check saw of a node in a push/pull: a member with status none
        seen = next(m for members, _ in a_calls for m in members if m.name == "x")
        assert seen.status == STATUS_NONE
        assert seen.tags == {"dc": "dc2"}
        assert (seen.protocol_cur, seen.delegate_cur) == (x.memberlist.vsn()[2], 5)
        for s in (a, b, x):
            await s.shutdown()

    run(main)


def test_alive_message_of_a_conflicting_node_is_refused(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="proconsul.memberlist")

    async def main() -> None:
        net = MockNetwork(seed=2)
        a_calls: Calls = []
        a = await member(net, "a", "dc1", a_calls)
        c = await member(net, "c", "dc1", None)  # no check: it lets x in and gossips it
        assert await c.join([address(a)]) == 1
        await wait_for(lambda: len(a.members) == 2 and len(c.members) == 2)

        x = await member(net, "x", "dc2", None)
        assert await x.join([address(c)]) == 1
        await wait_for(lambda: "x" in c.members)
        # an alive message about x alone reaches a and is refused
        await wait_for(lambda: any(names == ["x"] and reason for names, reason in
                                   (([m.name for m in ms], r) for ms, r in a_calls)))
        assert "memberlist: ignoring alive message for 'x': Member 'x' part of wrong " \
               "datacenter 'dc2'" in caplog.text
        # and so is every push/pull with c, which knows x
        await wait_for(lambda: any(len(ms) > 1 and r and "'x'" in r for ms, r in a_calls))
        assert "x" not in a.memberlist.node_map and "x" not in a.members
        assert c.members["x"].status_name == "alive"

        # a member with the right tags is still let in through the same path
        y = await member(net, "y", "dc1", None)
        assert await y.join([address(c)]) == 1
        await wait_for(lambda: "y" in a.members and a.members["y"].status_name == "alive")
        for s in (a, c, x, y):
            await s.shutdown()

    run(main)


def test_check_sees_serf_members_and_invalid_nodes_are_refused() -> None:
    async def main() -> None:
        calls: Calls = []
        s = Serf(config("n0", {"dc": "dc1"}, merge_delegate=same_dc("dc1", calls)),
                 MockNetwork().new_transport())
        assert s.memberlist.alive_delegate is s.delegate
        assert s.memberlist.merge_delegate is s.delegate
        meta = codec.encode_tags({"dc": "dc1"}, 5)
        vsn = bytes([2, 5, 5, 2, 5, 5])
        good = NodeState("ok", bytes([10, 0, 0, 1]), 8301, meta, 1, STATE_ALIVE, vsn)
        gone = NodeState("gone", bytes(16), 8301, meta, 1, STATE_LEFT, vsn)
        assert s.delegate.notify_merge([good, gone]) is None
        members, _ = calls[-1]
        assert [(m.name, m.status) for m in members] == [("ok", STATUS_NONE),
                                                         ("gone", STATUS_LEFT)]
        assert members[0].addr == bytes([10, 0, 0, 1]) and members[0].port == 8301

        bad_ip = NodeState("bad", b"\x01\x02\x03", 8301, meta, 1, STATE_ALIVE, vsn)
        assert s.delegate.notify_merge([good, bad_ip]) == \
            "IP byte length is invalid: 3 bytes is not either 4 or 16"
        big = NodeState("big", bytes(4), 8301, b"\x80" * 513, 1, STATE_ALIVE, vsn)
        assert s.delegate.notify_alive(big) == "Encoded length of tags exceeds limit of 512 bytes"
        assert len(calls) == 1
        other = NodeState("o", bytes(4), 8301, codec.encode_tags({"dc": "dc9"}, 5), 1,
                          STATE_ALIVE, vsn)
        assert s.delegate.notify_alive(other) == "Member 'o' part of wrong datacenter 'dc9'"

        plain = Serf(config("n1"), MockNetwork().new_transport())
        assert plain.memberlist.alive_delegate is None
        assert plain.memberlist.merge_delegate is None

    run(main)

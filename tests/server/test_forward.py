"""A follower's link to the leader: reads made as fresh as the leader's, forwarded commands
never sent twice, calls held while there is no leader, and a read held across this server's
own election answered as a leader answers it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proconsul.errors import NoLeader, RPCError
from proconsul.rpc.errors import CallFailed, ConnectFailed, RemoteError
from proconsul.server.forward import FORWARD_APPLY, READ_INDEX, LeaderLink


class FakeRaft:
    def __init__(self) -> None:
        self.leader = False
        self.address = ""
        self.commit_index = 0
        self.applied = 0
        self.verified = 0

    def is_leader(self) -> bool:
        return self.leader

    def leader_address(self) -> str:
        return self.address

    async def verify_leader(self) -> None:
        # a new leader is ready once it applied what was committed before its term
        await asyncio.sleep(0.01)
        self.applied = max(self.applied, self.commit_index)
        self.verified += 1


class FakePool:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, Any]] = []

    async def rpc(self, addr: str, method: str, args: Any, timeout: float | None = None) -> Any:
        self.calls.append((addr, method, args))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def test_consistent_read_waits_until_applied_to_the_leaders_index() -> None:
    async def main() -> None:
        raft = FakeRaft()
        raft.address, raft.applied = "10.0.0.1:8300", 3
        pool = FakePool([{"Index": 7}])
        link = LeaderLink(raft, pool, hold_timeout=5)

        async def apply_later() -> None:
            for i in range(4, 8):
                await asyncio.sleep(0.01)
                raft.applied = i

        applier = asyncio.ensure_future(apply_later())
        await link.catch_up(True)
        assert raft.applied == 7
        assert pool.calls == [("10.0.0.1:8300", READ_INDEX, {"Consistent": True})]
        await applier

    asyncio.run(main())


@pytest.mark.parametrize("consistent", [True, False])
def test_read_held_across_own_election_is_answered_as_the_leader(consistent: bool) -> None:
    """No leader when the read arrives; then this server wins the election. Its state lacks
    what the previous leader committed last (commit index 9, applied 5): a consistent read
    must wait for verify_leader (the new leader's readiness) before reading locally."""

    async def main() -> None:
        raft = FakeRaft()
        raft.applied, raft.commit_index = 5, 9
        pool = FakePool([RuntimeError("no call expected")])
        link = LeaderLink(raft, pool, hold_timeout=5)

        async def elected() -> None:
            await asyncio.sleep(0.1)
            raft.leader = True

        election = asyncio.ensure_future(elected())
        await link.catch_up(consistent)
        await election
        assert pool.calls == []
        if consistent:
            assert raft.verified == 1
            assert raft.applied == 9
        else:
            assert raft.verified == 0

    asyncio.run(main())


def test_calls_are_held_while_there_is_no_leader_then_fail() -> None:
    async def main() -> None:
        raft = FakeRaft()
        link = LeaderLink(raft, FakePool([{}]), hold_timeout=0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(NoLeader):
            await link.catch_up(True)
        assert loop.time() - started >= 0.2

    asyncio.run(main())


def test_held_call_reaches_a_leader_elected_meanwhile() -> None:
    async def main() -> None:
        raft = FakeRaft()
        pool = FakePool([RemoteError("No cluster leader"), {"Result": True}])
        link = LeaderLink(raft, pool, hold_timeout=5)

        async def elected() -> None:
            await asyncio.sleep(0.05)
            raft.address = "10.0.0.2:8300"

        election = asyncio.ensure_future(elected())
        assert await link.apply(b"cmd") is True
        await election
        assert [c[1] for c in pool.calls] == [FORWARD_APPLY, FORWARD_APPLY]

    asyncio.run(main())


def test_forwarded_command_broken_mid_call_is_not_sent_again() -> None:
    async def main() -> None:
        raft = FakeRaft()
        raft.address = "10.0.0.1:8300"
        pool = FakePool([CallFailed("rpc error making call: EOF"), {"Result": True}])
        link = LeaderLink(raft, pool, hold_timeout=5)
        with pytest.raises(RPCError, match="error forwarding to the leader"):
            await link.apply(b"cmd")
        assert len(pool.calls) == 1

    asyncio.run(main())


def test_command_that_never_left_is_sent_again() -> None:
    async def main() -> None:
        raft = FakeRaft()
        raft.address = "10.0.0.1:8300"
        pool = FakePool([ConnectFailed("connection refused"), {"Result": 3}])
        link = LeaderLink(raft, pool, hold_timeout=5)
        assert await link.apply(b"cmd") == 3
        assert len(pool.calls) == 2

    asyncio.run(main())

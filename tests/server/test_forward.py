"""A follower's link to the leader: reads made as fresh as the leader's, forwarded commands
never sent twice, calls held while there is no leader, and a read held across this server's
own election answered as a leader answers it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proconsul.errors import NoLeader, RPCError
from proconsul.rpc.errors import CallFailed, ConnectFailed, RemoteError
from proconsul.server.forward import (
    FORWARD_APPLY,
    FORWARD_APPLY_BATCH,
    READ_INDEX,
    LeaderLink,
    register_forwarding,
)
from proconsul.structs.kvs import KVEntry


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

    def share_commit(self) -> None:
        self.shared = getattr(self, "shared", 0) + 1


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
        pool = FakePool([RemoteError("No cluster leader"), {"Results": [{"Result": True}]}])
        link = LeaderLink(raft, pool, hold_timeout=5)

        async def elected() -> None:
            await asyncio.sleep(0.05)
            raft.address = "10.0.0.2:8300"

        election = asyncio.ensure_future(elected())
        assert await link.apply(b"cmd") is True
        await election
        assert [c[1] for c in pool.calls] == [FORWARD_APPLY_BATCH, FORWARD_APPLY_BATCH]

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
        pool = FakePool([ConnectFailed("connection refused"), {"Results": [{"Result": 3}]}])
        link = LeaderLink(raft, pool, hold_timeout=5)
        assert await link.apply(b"cmd") == 3
        assert len(pool.calls) == 2

    asyncio.run(main())


class GatedPool:
    """Read-index calls that answer only when the test opens their gate; each call answers
    with the commit index the fake leader had when the call was made."""

    def __init__(self, raft: FakeRaft) -> None:
        self.raft = raft
        self.calls: list[tuple[str, Any]] = []
        self.gates: list[asyncio.Event] = []

    async def rpc(self, addr: str, method: str, args: Any, timeout: float | None = None) -> Any:
        assert method == READ_INDEX
        index = self.raft.commit_index
        gate = asyncio.Event()
        self.calls.append((addr, args))
        self.gates.append(gate)
        await gate.wait()
        return {"Index": index}


def _gated_link(commit_index: int = 0, applied: int = 1
                ) -> tuple[FakeRaft, GatedPool, LeaderLink]:
    """A follower's link to a fake leader at 10.0.0.1:8300 whose read-index calls answer only
    when the test opens their gates."""
    raft = FakeRaft()
    raft.address, raft.commit_index, raft.applied = "10.0.0.1:8300", commit_index, applied
    pool = GatedPool(raft)
    return raft, pool, LeaderLink(raft, pool, hold_timeout=5)


async def _until(cond: Any) -> None:
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.002)
    raise AssertionError("condition never held")


def test_concurrent_reads_share_the_next_read_index_call() -> None:
    """One read's call is under way when ten more arrive: those ten share one call, sent
    after the first returned, and none is answered by the call that was sent before it."""

    async def main() -> None:
        _, pool, link = _gated_link(commit_index=5, applied=100)
        first = asyncio.ensure_future(link.catch_up(False))
        await _until(lambda: len(pool.calls) == 1)
        later = [asyncio.ensure_future(link.catch_up(False)) for _ in range(10)]
        await asyncio.sleep(0.01)
        assert len(pool.calls) == 1
        pool.gates[0].set()
        await asyncio.wait_for(first, 5)
        await _until(lambda: len(pool.calls) == 2)
        await asyncio.sleep(0.01)
        assert not any(t.done() for t in later)
        pool.gates[1].set()
        await asyncio.wait_for(asyncio.gather(*later), 5)
        assert len(pool.calls) == 2
        assert all(args == {"Consistent": False} for _, args in pool.calls)

    asyncio.run(main())


def test_batched_reads_wait_for_the_index_of_their_own_call() -> None:
    async def main() -> None:
        raft, pool, link = _gated_link(commit_index=3, applied=3)
        first = asyncio.ensure_future(link.catch_up(True))
        await _until(lambda: len(pool.calls) == 1)
        raft.commit_index = 9  # a write committed after the first call, before the second
        second = asyncio.ensure_future(link.catch_up(True))
        pool.gates[0].set()
        await asyncio.wait_for(first, 5)
        await _until(lambda: len(pool.calls) == 2)
        pool.gates[1].set()
        await asyncio.sleep(0.02)
        assert not second.done()  # applied 3 < 9
        raft.applied = 9
        await asyncio.wait_for(second, 5)

    asyncio.run(main())


def test_consistent_and_default_reads_use_separate_calls() -> None:
    async def main() -> None:
        _, pool, link = _gated_link()
        reads = [asyncio.ensure_future(link.catch_up(c)) for c in (True, False, True, False)]
        await _until(lambda: len(pool.calls) == 2)
        assert sorted(args["Consistent"] for _, args in pool.calls) == [False, True]
        for gate in pool.gates[:2]:
            gate.set()
        await _until(lambda: len(pool.calls) == 4)
        assert sorted(args["Consistent"] for _, args in pool.calls[2:]) == [False, True]
        for gate in pool.gates[2:]:
            gate.set()
        await asyncio.wait_for(asyncio.gather(*reads), 5)

    asyncio.run(main())


def test_a_call_stuck_on_a_replaced_leader_does_not_hold_later_reads() -> None:
    async def main() -> None:
        raft, pool, link = _gated_link()
        stuck = asyncio.ensure_future(link.catch_up(False))
        await _until(lambda: len(pool.calls) == 1)
        raft.address = "10.0.0.2:8300"
        later = asyncio.ensure_future(link.catch_up(False))
        await _until(lambda: len(pool.calls) == 2)
        assert pool.calls[1][0] == "10.0.0.2:8300"
        pool.gates[1].set()
        await asyncio.wait_for(later, 5)
        assert not stuck.done()
        pool.gates[0].set()
        await asyncio.wait_for(stuck, 5)

    asyncio.run(main())


def test_a_failed_call_fails_every_read_of_its_batch() -> None:
    async def main() -> None:
        raft = FakeRaft()
        raft.address = "10.0.0.1:8300"
        pool = FakePool([RemoteError("Permission denied")])
        link = LeaderLink(raft, pool, hold_timeout=5)
        results = await asyncio.gather(*(link.catch_up(False) for _ in range(5)),
                                       return_exceptions=True)
        assert all(isinstance(r, RPCError) and "Permission denied" in str(r) for r in results)
        assert len(pool.calls) == 2  # the first read's call, then one for the other four

    asyncio.run(main())


def test_a_read_that_gives_up_leaves_its_batch_to_the_others() -> None:
    async def main() -> None:
        _, pool, link = _gated_link()
        first = asyncio.ensure_future(link.catch_up(False))
        await _until(lambda: len(pool.calls) == 1)
        quitter = asyncio.ensure_future(link.catch_up(False))
        stayer = asyncio.ensure_future(link.catch_up(False))
        await asyncio.sleep(0.01)
        quitter.cancel()
        pool.gates[0].set()
        await asyncio.wait_for(first, 5)
        await _until(lambda: len(pool.calls) == 2)
        pool.gates[1].set()
        await asyncio.wait_for(stayer, 5)
        assert quitter.cancelled()

    asyncio.run(main())


def test_concurrent_writes_share_a_batch_and_get_their_own_answers() -> None:
    async def main() -> None:
        raft = FakeRaft()
        raft.address = "10.0.0.1:8300"
        calls: list[list[bytes]] = []

        class BatchPool:
            async def rpc(self, addr: str, method: str, args: Any,
                          timeout: float | None = None) -> Any:
                assert method == FORWARD_APPLY_BATCH
                commands = [c["Command"] for c in args["Commands"]]
                calls.append(commands)
                await asyncio.sleep(0.01)
                return {"Results": [{"Error": "apply failed: bad"} if c == b"bad"
                                    else {"Result": c.decode()} for c in commands]}

        link = LeaderLink(raft, BatchPool(), hold_timeout=5)
        names = [f"c{i}".encode() for i in range(20)] + [b"bad"]
        results = await asyncio.gather(*(link.apply(n) for n in names),
                                       return_exceptions=True)
        assert results[:20] == [f"c{i}" for i in range(20)]
        assert isinstance(results[20], RPCError) and str(results[20]) == "apply failed: bad"
        assert sorted(c for batch in calls for c in batch) == sorted(names)
        assert len(calls) <= 3  # two sent at once, the rest queued behind them

    asyncio.run(main())


def test_a_leader_without_the_batch_method_gets_single_calls() -> None:
    async def main() -> None:
        raft = FakeRaft()
        raft.address = "10.0.0.1:8300"
        pool = FakePool([RemoteError("rpc: can't find method Raft.ForwardApplyBatch"),
                         {"Result": 5}])
        link = LeaderLink(raft, pool, hold_timeout=5)
        assert await link.apply(b"cmd") == 5
        assert await link.apply(b"cmd") == 5
        assert [c[1] for c in pool.calls] == [FORWARD_APPLY_BATCH, FORWARD_APPLY, FORWARD_APPLY]

    asyncio.run(main())


def test_a_command_refused_for_lack_of_a_leader_is_held_and_sent_again() -> None:
    async def main() -> None:
        raft = FakeRaft()
        raft.address = "10.0.0.1:8300"
        pool = FakePool([{"Results": [{"Error": "No cluster leader"}]}, {"Result": 7}])
        link = LeaderLink(raft, pool, hold_timeout=5)
        assert await link.apply(b"cmd") == 7
        assert [c[1] for c in pool.calls] == [FORWARD_APPLY_BATCH, FORWARD_APPLY]

    asyncio.run(main())


def test_leader_applies_a_batch_with_one_answer_per_command() -> None:
    async def main() -> None:
        raft = FakeRaft()
        raft.leader = True
        applied: list[bytes] = []

        class Server:
            async def apply(self, command: bytes, prefix: str) -> Any:
                await asyncio.sleep(0)
                if command == b"bad":
                    raise RPCError(prefix + "refused")
                applied.append(command)
                return KVEntry(key=command.decode()) if command == b"kv" else True

        class Registry:
            methods: dict[str, Any] = {}

            def register(self, name: str, handler: Any) -> None:
                self.methods[name] = handler

        reg = Registry()
        register_forwarding(reg, Server(), raft)
        handler = reg.methods[FORWARD_APPLY_BATCH]
        reply = await handler({"Commands": [
            {"Command": b"a", "Prefix": ""}, {"Command": b"bad", "Prefix": "apply failed: "},
            {"Command": "not bytes"}, {"Command": b"kv", "Prefix": ""}]})
        results = reply["Results"]
        assert results[0] == {"Result": True}
        assert results[1] == {"Error": "apply failed: refused"}
        assert results[2] == {"Error": "forwarded command must be bytes"}
        assert "__kv__" in results[3]["Result"]
        assert applied == [b"a", b"kv"]
        raft.leader = False
        with pytest.raises(NoLeader):
            await handler({"Commands": []})

    asyncio.run(main())


def test_read_index_answer_sends_the_commit_index_to_followers() -> None:
    """The leader answers a read-index request with its commit index and pushes that index to
    the followers at once, so the asking follower need not wait for the next heartbeat."""

    async def main() -> None:
        raft = FakeRaft()
        raft.leader, raft.commit_index = True, 42

        class Registry:
            methods: dict[str, Any] = {}

            def register(self, name: str, handler: Any) -> None:
                self.methods[name] = handler

        reg = Registry()
        register_forwarding(reg, object(), raft)
        assert await reg.methods[READ_INDEX]({"Consistent": False}) == {"Index": 42}
        assert raft.shared == 1 and raft.verified == 0
        assert await reg.methods[READ_INDEX]({"Consistent": True}) == {"Index": 42}
        assert raft.shared == 2 and raft.verified == 1
        raft.leader = False
        with pytest.raises(NoLeader):
            await reg.methods[READ_INDEX]({})

    asyncio.run(main())

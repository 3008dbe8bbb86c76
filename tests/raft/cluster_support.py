"""A Raft cluster on the in-memory transport for the cluster tests.

Timings are short enough for quick elections and long enough that a loaded machine does not
make leaders flap; every wait polls against a generous deadline, and writes go through
`apply`, which retries on whichever server leads at the time, so a spurious election makes a
test slower, never wrong. Every leader that ever takes office is recorded with its term, so a
test can check that no term had two.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from proconsul.errors import NoLeader
from proconsul.raft.cluster import Raft
from proconsul.raft.config import Config
from proconsul.raft.configuration import Configuration, Server, Suffrage
from proconsul.raft.core import F
from proconsul.raft.errors import LeadershipTransferInProgress, NotLeader
from proconsul.raft.file_log import FileLogStore
from proconsul.raft.file_snapshot import FileSnapshotStore
from proconsul.raft.file_stable import FileStableStore
from proconsul.raft.inmem import InmemLogStore, InmemSnapshotStore, InmemStableStore
from proconsul.raft.inmem_transport import InmemNetwork, InmemTransport
from proconsul.raft.log import LogStore
from proconsul.raft.observer import Observation, RaftState, StateObservation
from proconsul.raft.snapshot import SnapshotStore
from proconsul.raft.stable import StableStore

DEADLINE = 30.0


class ListFSM:
    """Keeps every command in order; snapshots are the whole list."""

    def __init__(self) -> None:
        self.commands: list[bytes] = []
        self.indexes: list[int] = []

    def apply(self, index: int, command: bytes) -> Any:
        if self.indexes and index <= self.indexes[-1]:
            raise AssertionError(f"index {index} applied after {self.indexes[-1]}")
        if command == b"boom":
            raise ValueError("boom")
        self.commands.append(command)
        self.indexes.append(index)
        return len(self.commands)

    def snapshot(self) -> bytes:
        packed: bytes = msgpack.packb([self.commands, self.indexes[-1:] or [0]])
        return packed

    def restore(self, data: bytes) -> None:
        commands, last = msgpack.unpackb(data)
        self.commands = list(commands)
        self.indexes = [last[0]] if last[0] else []


class CountingLogStore:
    """Wraps a log store and counts appends (to see batching)."""

    def __init__(self, inner: LogStore) -> None:
        self.inner = inner
        self.appends = 0
        self.entries = 0

    def first_index(self) -> int:
        return self.inner.first_index()

    def last_index(self) -> int:
        return self.inner.last_index()

    def get_log(self, index: int) -> Any:
        return self.inner.get_log(index)

    async def store_logs(self, logs: Any) -> None:
        self.appends += 1
        self.entries += len(logs)
        await self.inner.store_logs(logs)

    async def delete_range(self, lo: int, hi: int) -> None:
        await self.inner.delete_range(lo, hi)

    async def close(self) -> None:
        await self.inner.close()


@dataclass
class Node:
    id: str
    address: str
    config: Config
    fsm: ListFSM
    logs: CountingLogStore
    stable: StableStore
    snapshots: SnapshotStore
    transport: InmemTransport
    raft: Raft[ListFSM]
    directory: str | None = None
    running: bool = False


async def single_voter(fsm: F, server_id: str = "id-1",
                       address: str = "127.0.0.1:8300") -> Raft[F]:
    """A started one-voter Raft on in-memory stores, bootstrapped and leading, as a -dev
    agent runs its server: what endpoint tests put under a Server."""
    raft = Raft(Config.dev(server_id, address), fsm, InmemLogStore(), InmemStableStore(),
                InmemSnapshotStore(), InmemNetwork().transport(address))
    await raft.bootstrap_cluster(Configuration.of([Server(server_id, address)]))
    await raft.start()
    return raft


def raft_config(server_id: str, address: str, **overrides: Any) -> Config:
    """Fast timings for in-process clusters. The lease equals the heartbeat timeout: a
    leader must not step down because the whole test process paused (a full garbage
    collection of a long pytest run takes a good part of 150 ms on a busy machine)."""
    values: dict[str, Any] = dict(
        heartbeat_timeout=0.3, election_timeout=0.3, leader_lease_timeout=0.3,
        commit_timeout=0.01, snapshot_interval=3600.0,
    )
    values.update(overrides)
    return Config(server_id, address, **values)


@dataclass
class Cluster:
    size: int
    directory: str | None = None
    nonvoters: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    network: InmemNetwork = field(default_factory=lambda: InmemNetwork(seed=7))
    nodes: dict[str, Node] = field(default_factory=dict)
    #: term -> ids of every server that led in it
    leaders_by_term: dict[int, set[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for n in range(self.size + self.nonvoters):
            self.make_node(f"s{n}")

    # -- building -------------------------------------------------------------------------

    def _stores(self, server_id: str) -> tuple[LogStore, StableStore, SnapshotStore, str | None]:
        if self.directory is None:
            return InmemLogStore(), InmemStableStore(), InmemSnapshotStore(), None
        base = os.path.join(self.directory, server_id)
        return (FileLogStore(os.path.join(base, "wal")),
                FileStableStore(os.path.join(base, "stable.bin")),
                FileSnapshotStore(os.path.join(base, "snapshots")), base)

    def make_node(self, server_id: str) -> Node:
        address = f"10.0.0.{len(self.nodes) + 1}:8300"
        if server_id in self.nodes:
            address = self.nodes[server_id].address
        logs, stable, snapshots, base = self._stores(server_id)
        config = raft_config(server_id, address, **self.overrides)
        fsm = ListFSM()
        counting = CountingLogStore(logs)
        transport = self.network.transport(address)
        raft = Raft(config, fsm, counting, stable, snapshots, transport)
        raft.register_observer(self._observer(server_id))
        node = Node(server_id, address, config, fsm, counting, stable, snapshots, transport,
                    raft, base)
        self.nodes[server_id] = node
        return node

    def _observer(self, server_id: str) -> Callable[[Observation], None]:
        def observe(observation: Observation) -> None:
            if (isinstance(observation, StateObservation)
                    and observation.state is RaftState.LEADER):
                self.leaders_by_term.setdefault(observation.term, set()).add(server_id)
        return observe

    def configuration(self, ids: Iterable[str] | None = None) -> Configuration:
        servers = []
        members = set(self.nodes if ids is None else ids)
        for n, node in enumerate(self.nodes.values()):
            if node.id not in members:
                continue
            suffrage = Suffrage.VOTER if n < self.size else Suffrage.NONVOTER
            servers.append(Server(node.id, node.address, suffrage))
        return Configuration.of(servers)

    async def start(self, bootstrap: Iterable[str] | None = None) -> None:
        ids = list(self.nodes) if bootstrap is None else list(bootstrap)
        configuration = self.configuration(ids)
        for node in self.nodes.values():
            if node.id in ids:
                await node.raft.bootstrap_cluster(configuration)
        for node in self.nodes.values():
            await node.raft.start()
            node.running = True

    async def stop_node(self, server_id: str) -> None:
        node = self.nodes[server_id]
        if node.running:
            node.running = False
            await node.raft.shutdown()
            await node.transport.close()

    async def restart_node(self, server_id: str) -> Node:
        """Stop the server, reopen its files and start a new server on them."""
        assert self.directory is not None, "a restart needs durable stores"
        await self.stop_node(server_id)
        node = self.make_node(server_id)
        await node.raft.start()
        node.running = True
        return node

    async def stop(self) -> None:
        for server_id in list(self.nodes):
            await self.stop_node(server_id)

    # -- looking ----------------------------------------------------------------------------

    def running(self, among: Iterable[str] | None = None) -> list[Node]:
        ids = set(self.nodes if among is None else among)
        return [n for n in self.nodes.values() if n.running and n.id in ids]

    def leaders(self, among: Iterable[str] | None = None) -> list[Node]:
        return [n for n in self.running(among) if n.raft.is_leader()]

    async def wait_leader(self, among: Iterable[str] | None = None,
                          timeout: float = DEADLINE) -> Node:
        """The one server of `among` that leads, is ready, and that the others follow."""
        group = list(among) if among is not None else None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leaders = self.leaders(group)
            if len(leaders) == 1:
                leader = leaders[0]
                ready = await leader.raft.wait_ready(0.05)
                if ready and leader.raft.is_leader():
                    return leader
            await asyncio.sleep(0.02)
        raise AssertionError(f"no single leader among {group or list(self.nodes)}: "
                             f"{[(n.id, n.raft.state, n.raft.term) for n in self.running()]}")

    async def apply(self, command: bytes, among: Iterable[str] | None = None,
                    timeout: float = DEADLINE) -> Any:
        """Apply on whoever leads, retrying when leadership moves under the write. A write
        whose leader was lost may still have committed: like a careful client, look before
        writing again (commands in these tests are unique), so nothing is applied twice."""
        group = list(among) if among is not None else None
        deadline = time.monotonic() + timeout
        while True:
            leader = await self.wait_leader(group, max(deadline - time.monotonic(), 0.1))
            try:
                return await leader.raft.apply(command)
            except (NotLeader, LeadershipTransferInProgress):
                pass  # refused before it was written anywhere
            except NoLeader:
                found = await self._committed_position(command, group, deadline)
                if found:
                    return found
            if time.monotonic() > deadline:
                raise AssertionError(f"could not apply {command!r}")

    async def _committed_position(self, command: bytes, group: list[str] | None,
                                  deadline: float) -> int:
        while time.monotonic() < deadline:
            leader = await self.wait_leader(group, max(deadline - time.monotonic(), 0.1))
            try:
                await leader.raft.barrier()
            except NoLeader:
                continue
            commands = leader.fsm.commands
            return commands.index(command) + 1 if command in commands else 0
        return 0

    async def wait_for(self, condition: Callable[[], bool], what: str,
                       timeout: float = DEADLINE) -> None:
        await wait_for(condition, what, timeout)

    async def wait_converged(self, among: Iterable[str] | None = None,
                             timeout: float = DEADLINE) -> list[bytes]:
        """Wait until every running server of `among` applied the same commands as the
        leader, and return them."""
        deadline = time.monotonic() + timeout
        while True:
            leader = await self.wait_leader(None, max(deadline - time.monotonic(), 0.1))
            try:
                index = await leader.raft.barrier()
                break
            except NoLeader:
                if time.monotonic() > deadline:
                    raise
        nodes = self.running(among)

        def same() -> bool:
            return all(n.raft.applied >= index and n.fsm.commands == leader.fsm.commands
                       for n in nodes)

        await self.wait_for(same, "all servers applying the leader's commands", timeout)
        return leader.fsm.commands

    def assert_no_split_brain(self) -> None:
        for term, ids in self.leaders_by_term.items():
            assert len(ids) <= 1, f"term {term} had leaders {sorted(ids)}"


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def raises_within(awaitable: Awaitable[Any], error: type[BaseException],
                        timeout: float = DEADLINE) -> BaseException:
    try:
        await asyncio.wait_for(awaitable, timeout)
    except error as err:
        return err
    raise AssertionError(f"expected {error.__name__}")

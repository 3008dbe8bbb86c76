"""A replicated Raft server: `Raft(config, fsm, log_store, stable_store, snapshot_store,
transport)` after hashicorp/raft's api.go, implementing the server's Applier seam; a -dev
agent runs it as a single voter over in-memory stores.

Life cycle: construct, then `bootstrap_cluster(configuration)` on a brand-new cluster (every
server of a bootstrap_expect set with the same configuration, or a single server with itself),
then `start()`. Start-up restores the newest snapshot that verifies and reads the term, vote
and configurations back; committed entries after the snapshot are applied again once a leader
says they are committed. A server whose configuration has itself as the only voter elects
itself at once, and `start()` returns when it is ready to serve. Servers
that join later start with no configuration and wait for a leader to add them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from proconsul.raft.config import Config
from proconsul.raft.configuration import (
    Change,
    Configuration,
    Server,
    check_configuration,
)
from proconsul.raft.core import F, log_task_failure
from proconsul.raft.election import Elections
from proconsul.raft.errors import CantBootstrap, RaftShutdown
from proconsul.raft.leader import Leadership
from proconsul.raft.log import Log, LogStore, LogType
from proconsul.raft.observer import LeadershipListener, Observer, RaftState
from proconsul.raft.rpc_handlers import RPCHandlers
from proconsul.raft.snapshot import SnapshotStore
from proconsul.raft.stable import KEY_CURRENT_TERM, StableStore
from proconsul.raft.transport import PROTOCOL_VERSION, Transport

log = logging.getLogger("proconsul.raft")

__all__ = ["Raft", "has_existing_state"]


def has_existing_state(logs: LogStore, stable: StableStore, snapshots: SnapshotStore) -> bool:
    """Whether these stores were ever used by a Raft server (then it must not bootstrap)."""
    return bool(stable.get_uint64(KEY_CURRENT_TERM) or logs.last_index() or snapshots.list())


def go_duration(seconds: float) -> str:
    """A duration as Go's time.Duration prints it ("12.5ms", "1m3.2s")."""
    ns = int(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_trim(ns / 1e3)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_trim(ns / 1e6)}ms"
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = f"{_trim(rest / 1e9)}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _trim(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")


class Raft(Leadership[F], Elections[F], RPCHandlers[F]):
    def __init__(
        self, config: Config, fsm: F, logs: LogStore, stable: StableStore,
        snapshots: SnapshotStore, transport: Transport,
    ) -> None:
        super().__init__(config, fsm, logs, stable, snapshots, transport)
        self._init_leader_state()
        self._transfer_candidate = False
        self._main: asyncio.Task[None] | None = None
        self._started = False

    # -- life cycle ---------------------------------------------------------------------------

    async def bootstrap_cluster(self, configuration: Configuration | list[Server]) -> None:
        """Write the first configuration of a new cluster (index 1, term 1). Servers
        bootstrapped with the same configuration agree, so this is safe to run on each."""
        if not isinstance(configuration, Configuration):
            configuration = Configuration.of(configuration)
        check_configuration(configuration)
        if has_existing_state(self.logs, self.stable, self.snapshots):
            raise CantBootstrap()
        self._set_term(1)
        async with self._log_lock:
            await self.logs.store_logs(
                [Log(1, 1, LogType.CONFIGURATION, configuration.encode())])
        self.committed = configuration
        self.committed_index = 1
        self._set_latest(configuration, 1)
        self._wake_main.set()
        log.info("bootstrapped cluster: servers=%s", configuration.go_string())

    async def start(self, ready_timeout: float = 30.0) -> None:
        """Restore, then run. A lone voter returns once it leads and is ready to serve."""
        if self._started:
            raise RuntimeError("raft server already started")
        self._started = True
        started = time.perf_counter()
        self._restore_newest_snapshot()
        self.current_term = self.stable.get_uint64(KEY_CURRENT_TERM)
        self._load_configurations_from_log()
        self.transport.set_handler(self)
        self._main = asyncio.ensure_future(self._run())
        self._main.add_done_callback(log_task_failure)
        self._tasks = [self._spawn(self._apply_loop()), self._spawn(self._snapshot_timer())]
        last_index, last_term = self.last_log()
        log.info("initial configuration: index=%d servers=%s", self.latest_index,
                 self.latest.go_string())
        log.info("raft started: term=%d last-index=%d last-term=%d snapshot-index=%d "
                 "took=%.3fs", self.current_term, last_index, last_term, self.snapshot_index,
                 time.perf_counter() - started)
        if self._lone_voter():
            await self.wait_ready(ready_timeout)

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until this server leads and is ready to serve (False when that did not
        happen within `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.state is not RaftState.SHUTDOWN:
            ready = self._ready
            if (self.state is RaftState.LEADER and ready is not None and ready.done()
                    and not ready.cancelled() and ready.exception() is None):
                return True
            await asyncio.sleep(min(0.005, self.config.heartbeat_timeout / 10))
        return False

    async def _run(self) -> None:
        runs = {
            RaftState.FOLLOWER: self._run_follower,
            RaftState.CANDIDATE: self._run_candidate,
            RaftState.LEADER: self._run_leader,
        }
        while self.state is not RaftState.SHUTDOWN:
            await runs[self.state]()

    async def shutdown(self) -> None:
        """Stop every role and task, answer whoever waits, then close the log store. The
        transport belongs to the caller (it may serve other things) and stays open."""
        if self.state is RaftState.SHUTDOWN:
            return
        log.info("shutting down raft: term=%d", self.current_term)
        self.transport.set_handler(None)
        self.state = RaftState.SHUTDOWN
        self._wake_main.set()
        if self._main is not None:
            await asyncio.wait({self._main}, timeout=30.0)
            if not self._main.done():
                self._main.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._fail_inflight(shutdown=True)
        for future in self._inflight.values():
            if not future.done():
                future.set_exception(RaftShutdown())
        self._inflight.clear()
        await self._drain_handlers()
        async with self._log_lock:
            await self.logs.close()

    # -- observers ----------------------------------------------------------------------------

    def register_observer(self, observer: Observer) -> None:
        self.observers.register(observer)

    def deregister_observer(self, observer: Observer) -> None:
        self.observers.deregister(observer)

    def add_leadership_listener(self, listener: LeadershipListener) -> None:
        """`listener(True)` once this server leads and is ready, `listener(False)` when it
        stops leading: where the server starts and stops its leader duties."""
        self.observers.add_leadership_listener(listener)

    def remove_leadership_listener(self, listener: LeadershipListener) -> None:
        self.observers.remove_leadership_listener(listener)

    # -- the Applier seam ---------------------------------------------------------------------

    async def apply(self, command: bytes) -> Any:
        """Commit `command` on a quorum, apply it, and return the FSM's result."""
        return await self._enqueue(LogType.COMMAND, command)

    def is_leader(self) -> bool:
        return self.state is RaftState.LEADER

    def leader_address(self) -> str:
        return self._leader_addr

    def leader_id(self) -> str:
        return self._leader_id

    def last_contact_ms(self) -> int:
        if self.state is RaftState.LEADER:
            return 0
        since = self._last_contact or self._started_at
        return int((time.monotonic() - since) * 1000)

    def last_index(self) -> int:
        return self.last_log()[0]

    def peers(self) -> list[str]:
        return [s.address for s in self.latest.servers]

    @property
    def configuration(self) -> dict[str, Any]:
        """The latest configuration in its stored form (what a snapshot records)."""
        return self.latest.to_data()

    @property
    def configuration_index(self) -> int:
        return self.latest_index

    def get_configuration(self) -> tuple[Configuration, int]:
        return self.latest, self.latest_index

    def replication_state(self) -> dict[str, tuple[int, float]]:
        """For a leader: each follower's (match index, seconds since it last answered)."""
        now = time.monotonic()
        return {server_id: (rep.match_index, now - rep.last_contact)
                for server_id, rep in self._replicators.items()}

    # -- membership ---------------------------------------------------------------------------

    async def add_voter(self, server_id: str, address: str, prev_index: int = 0) -> int:
        return await self._change_configuration(Change.ADD_VOTER, server_id, address,
                                                prev_index)

    async def add_nonvoter(self, server_id: str, address: str, prev_index: int = 0) -> int:
        return await self._change_configuration(Change.ADD_NONVOTER, server_id, address,
                                                prev_index)

    async def remove_server(self, server_id: str, prev_index: int = 0) -> int:
        return await self._change_configuration(Change.REMOVE_SERVER, server_id, "",
                                                prev_index)

    async def demote_voter(self, server_id: str, prev_index: int = 0) -> int:
        return await self._change_configuration(Change.DEMOTE_VOTER, server_id, "",
                                                prev_index)

    # -- stats --------------------------------------------------------------------------------

    def stats(self) -> dict[str, str]:
        """The `raft` section of /v1/agent/self, with hashicorp/raft's keys."""
        last_index, last_term = self.last_log()
        latest = self.latest
        num_peers = 0
        if latest.has_vote(self.server_id):
            num_peers = len(latest.voters()) - 1
        if self.state is RaftState.LEADER:
            last_contact = "0"
        elif not self._last_contact:
            last_contact = "never"
        else:
            last_contact = go_duration(time.monotonic() - self._last_contact)
        return {
            "state": self.state.value, "term": str(self.current_term),
            "last_log_index": str(last_index), "last_log_term": str(last_term),
            "commit_index": str(self.commit_index), "applied_index": str(self.applied),
            "fsm_pending": str(max(self.commit_index - self.applied, 0)),
            "last_snapshot_index": str(self.snapshot_index),
            "last_snapshot_term": str(self.snapshot_term),
            "protocol_version": str(PROTOCOL_VERSION), "protocol_version_min": "0",
            "protocol_version_max": str(PROTOCOL_VERSION),
            "snapshot_version_min": "0", "snapshot_version_max": "1",
            "latest_configuration_index": str(self.latest_index),
            "latest_configuration": latest.go_string(),
            "num_peers": str(num_peers), "last_contact": last_contact,
        }

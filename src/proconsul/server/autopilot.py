"""Autopilot on the leader (Consul's agent/consul/autopilot.go over hashicorp/raft-autopilot):
server health, promotion of stable non-voters, and removal of dead servers.

Every `update_interval` the leader asks each server in the Raft configuration for its Raft
stats (`Status.RaftStats`: time since it last heard the leader, last log term and index) and
judges it against the replicated autopilot configuration: a server is healthy when gossip has
it alive, it heard the leader within `LastContactThreshold`, its last term is the leader's and
it trails the leader's log by at most `MaxTrailingLogs`. `StableSince` is when that verdict
last changed. The overall cluster is healthy when every server is, and the failure tolerance
is the number of healthy voters beyond a quorum.

Every `reconcile_interval`: a non-voter that has been healthy for `ServerStabilizationTime`
is promoted to voter (servers that join an existing cluster enter as non-voters, so a server
that is still catching up never counts toward the quorum); with `CleanupDeadServers`, servers
that gossip reports failed or left, and servers gossip has not known for a while, are removed
from the configuration, never more voters than a minority and never below `MinQuorum`.

The rules are plain functions over snapshots (`next_state`, `promotions`, `removals`) so they
are tested without a cluster; `Autopilot` runs them on the leader's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from proconsul.config.duration import format_duration, parse_duration
from proconsul.errors import ProconsulError
from proconsul.state.autopilot import AutopilotConfig

log = logging.getLogger("proconsul.server.autopilot")

#: serf member status -> autopilot NodeStatus (leaving counts as alive, as Consul's does, so a
#: server on its way out is not pruned before it finishes)
NODE_STATUS = {"alive": "alive", "leaving": "alive", "left": "left", "failed": "failed"}


@dataclass(frozen=True, slots=True)
class KnownServer:
    """A server as gossip knows it (autopilot.Server)."""

    id: str
    name: str
    address: str
    serf_status: str  # alive, leaving, left, failed
    version: str = ""
    meta: Mapping[str, str] = field(default_factory=dict)

    @property
    def node_status(self) -> str:
        return NODE_STATUS.get(self.serf_status, "unknown")


@dataclass(frozen=True, slots=True)
class RaftMember:
    """One entry of the Raft configuration."""

    id: str
    address: str
    voter: bool


@dataclass(frozen=True, slots=True)
class RaftStats:
    """structs.RaftStats: `last_contact` None means never (or not fetched)."""

    last_contact: float | None
    last_term: int
    last_index: int


@dataclass(slots=True)
class ServerState:
    id: str
    name: str
    address: str
    node_status: str
    serf_status: str
    version: str
    meta: Mapping[str, str]
    voter: bool
    leader: bool
    stats: RaftStats
    healthy: bool
    stable_since: float  # wall-clock seconds

    def to_health(self) -> dict[str, Any]:
        """api.ServerHealth."""
        return {
            "ID": self.id, "Name": self.name, "Address": self.address,
            "SerfStatus": self.serf_status or "none", "Version": self.version,
            "Leader": self.leader, "LastContact": _contact(self.stats),
            "LastTerm": self.stats.last_term, "LastIndex": self.stats.last_index,
            "Healthy": self.healthy, "Voter": self.voter,
            "StableSince": rfc3339(round(self.stable_since)),
        }

    def to_state(self) -> dict[str, Any]:
        """api.AutopilotServer."""
        status = "leader" if self.leader else "voter" if self.voter else "non-voter"
        return {
            "ID": self.id, "Name": self.name, "Address": self.address,
            "NodeStatus": self.node_status, "Version": self.version,
            "LastContact": _contact(self.stats), "LastTerm": self.stats.last_term,
            "LastIndex": self.stats.last_index, "Healthy": self.healthy,
            "StableSince": rfc3339(self.stable_since), "ReadReplica": False,
            "Status": status, "Meta": dict(self.meta), "NodeType": "voter",
        }


@dataclass(slots=True)
class State:
    healthy: bool = False
    failure_tolerance: int = 0
    leader: str = ""
    voters: list[str] = field(default_factory=list)
    servers: dict[str, ServerState] = field(default_factory=dict)

    def to_health(self) -> dict[str, Any]:
        """api.OperatorHealthReply (servers in configuration order)."""
        return {"Healthy": self.healthy, "FailureTolerance": self.failure_tolerance,
                "Servers": [s.to_health() for s in self.servers.values()]}

    def to_state(self) -> dict[str, Any]:
        """api.AutopilotState as Consul CE fills it."""
        return {"Healthy": self.healthy, "FailureTolerance": self.failure_tolerance,
                "OptimisticFailureTolerance": self.failure_tolerance,
                "Servers": {sid: s.to_state() for sid, s in self.servers.items()},
                "Leader": self.leader, "Voters": list(self.voters)}


def _contact(stats: RaftStats) -> str:
    return format_duration(stats.last_contact or 0.0)


def rfc3339(wall: float) -> str:
    """Go's time.Time JSON form in UTC (second precision unless there is a fraction)."""
    whole = int(wall)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    frac = round(wall - whole, 9)
    if frac > 0:
        text += f"{frac:.9f}"[1:].rstrip("0")
    return text + "Z"


def parse_stats(reply: Mapping[str, Any]) -> RaftStats:
    """A Status.RaftStats reply; "never" (or anything unparsable) is no contact at all."""
    text = str(reply.get("LastContact") or "")
    contact: float | None
    if text == "0":
        contact = 0.0
    else:
        try:
            contact = parse_duration(text)
        except (ValueError, ProconsulError):
            contact = None
    return RaftStats(contact, int(reply.get("LastTerm") or 0), int(reply.get("LastIndex") or 0))


def is_healthy(conf: AutopilotConfig, stats: RaftStats | None, leader: RaftStats,
               node_status: str) -> bool:
    """raft-autopilot's health rule for one server."""
    if node_status != "alive" or stats is None or stats.last_contact is None:
        return False
    if stats.last_contact < 0 or stats.last_contact > conf.last_contact_threshold:
        return False
    if stats.last_term != leader.last_term:
        return False
    return not (leader.last_index > conf.max_trailing_logs
                and stats.last_index < leader.last_index - conf.max_trailing_logs)


def next_state(conf: AutopilotConfig, members: Sequence[RaftMember], leader_id: str,
               known: Mapping[str, KnownServer], stats: Mapping[str, RaftStats | None],
               previous: State | None, now: float) -> State:
    """The autopilot view after one round of stats (`stats[id]` None: fetch failed)."""
    leader_stats = stats.get(leader_id) or RaftStats(0.0, 0, 0)
    state = State(leader=leader_id)
    healthy_voters = voters = 0
    all_healthy = True
    for m in members:
        k = known.get(m.id)
        node_status = k.node_status if k is not None else "unknown"
        fetched = stats.get(m.id)
        prev = previous.servers.get(m.id) if previous is not None else None
        shown = fetched or (prev.stats if prev is not None else RaftStats(None, 0, 0))
        healthy = is_healthy(conf, fetched, leader_stats, node_status)
        stable = prev.stable_since if prev is not None and prev.healthy == healthy else now
        state.servers[m.id] = ServerState(
            id=m.id, name=k.name if k is not None else "", address=m.address,
            node_status=node_status, serf_status=k.serf_status if k is not None else "none",
            version=k.version if k is not None else "", meta=k.meta if k is not None else {},
            voter=m.voter, leader=m.id == leader_id, stats=shown, healthy=healthy,
            stable_since=stable)
        all_healthy = all_healthy and healthy
        if m.voter:
            voters += 1
            state.voters.append(m.id)
            healthy_voters += healthy
    state.healthy = all_healthy and bool(members)
    state.failure_tolerance = max(0, healthy_voters - (voters // 2 + 1))
    return state


def promotions(conf: AutopilotConfig, state: State, now: float) -> list[str]:
    """Non-voters healthy (and alive) for at least the stabilization time."""
    return [s.id for s in state.servers.values()
            if not s.voter and s.healthy and s.node_status == "alive"
            and now - s.stable_since >= conf.server_stabilization_time]


def removals(conf: AutopilotConfig, state: State, stale: Sequence[str]) -> list[str]:
    """Servers to remove, in raft-autopilot's order (stale non-voters, stale voters, failed
    non-voters, failed voters), adjudicated: a voter goes only while more than a minority
    would remain and the voters would not fall below MinQuorum."""
    if not conf.cleanup_dead_servers:
        return []
    servers = state.servers
    failed = [s.id for s in servers.values()
              if s.node_status in ("failed", "left") and not s.leader]
    stale_ids = [sid for sid in stale if sid in servers and not servers[sid].leader]
    ordered = ([s for s in stale_ids if not servers[s].voter]
               + [s for s in stale_ids if servers[s].voter]
               + [s for s in failed if not servers[s].voter and s not in stale_ids]
               + [s for s in failed if servers[s].voter and s not in stale_ids])
    voters = sum(1 for s in servers.values() if s.voter)
    tolerance = (voters - 1) // 2
    out: list[str] = []
    for sid in ordered:
        if servers[sid].voter:
            if voters - 1 < conf.min_quorum:
                log.debug("will not remove server node as it would leave less voters than "
                          "the minimum number allowed: id=%s min=%d", sid, conf.min_quorum)
                continue
            if tolerance < 1:
                log.debug("will not remove server node as removal of a majority of servers "
                          "is not safe: id=%s", sid)
                continue
            tolerance -= 1
            voters -= 1
        out.append(sid)
    return out


# -- the leader's loop ------------------------------------------------------------------------

class AutopilotRaft(Protocol):
    server_id: str

    def is_leader(self) -> bool: ...

    def leader_id(self) -> str: ...

    def stats(self) -> dict[str, str]: ...

    def get_configuration(self) -> tuple[Any, int]: ...

    async def add_voter(self, server_id: str, address: str, prev_index: int = 0) -> int: ...

    async def remove_server(self, server_id: str, prev_index: int = 0) -> int: ...


Fetch = Callable[[str, float], Awaitable[Mapping[str, Any]]]


def stats_reply(stats: Mapping[str, str]) -> dict[str, Any]:
    """structs.RaftStats (the Status.RaftStats reply) from a server's raft stats."""
    return {"LastContact": stats.get("last_contact", "never"),
            "LastTerm": int(stats.get("last_log_term", 0)),
            "LastIndex": int(stats.get("last_log_index", 0))}


def local_stats(raft: AutopilotRaft) -> RaftStats:
    return parse_stats(stats_reply(raft.stats()))


class Autopilot:
    """Runs on the leader only: `start()` when leadership is established, `stop()` when lost.
    `state` keeps the last view for the HTTP endpoints."""

    def __init__(self, raft: AutopilotRaft, config: Callable[[], AutopilotConfig],
                 known: Callable[[], dict[str, KnownServer]], fetch: Fetch,
                 update_interval: float = 2.0, reconcile_interval: float = 10.0,
                 stale_grace: float = 30.0) -> None:
        self.raft = raft
        self.config = config
        self.known = known
        self.fetch = fetch
        self.update_interval = update_interval
        self.reconcile_interval = reconcile_interval
        self.stale_grace = stale_grace
        self.state: State | None = None
        self._unknown_since: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self.state = None
            self._unknown_since.clear()
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.state = None

    async def _run(self) -> None:
        last_reconcile = time.monotonic()
        while True:
            try:
                await self.update()
                if time.monotonic() - last_reconcile >= self.reconcile_interval:
                    last_reconcile = time.monotonic()
                    await self.reconcile()
            except ProconsulError as exc:
                log.warning("autopilot round failed: error=%s", exc)
            except Exception:
                # a fault in one round must not end autopilot for the rest of this term
                log.exception("autopilot round failed")
            await asyncio.sleep(self.update_interval)

    async def update(self) -> State:
        """Fetch every server's stats (concurrently, bounded by half the interval) and
        compute the next state."""
        conf, _ = self.raft.get_configuration()
        members = [RaftMember(s.id, s.address, s.voter) for s in conf.servers]
        me = self.raft.server_id
        timeout = max(self.update_interval / 2, 0.2)

        async def one(m: RaftMember) -> RaftStats | None:
            if m.id == me:
                return local_stats(self.raft)
            try:
                return parse_stats(await self.fetch(m.address, timeout))
            except (TimeoutError, ProconsulError, OSError) as exc:
                log.debug("error fetching server stats: id=%s error=%s", m.id, exc)
                return None

        fetched = await asyncio.gather(*(one(m) for m in members))
        stats = {m.id: st for m, st in zip(members, fetched, strict=True)}
        self.state = next_state(self.config(), members, me, self.known(), stats,
                                self.state, time.time())
        return self.state

    async def reconcile(self) -> None:
        """Promote stable non-voters, then prune dead servers."""
        state = self.state
        if state is None or not self.raft.is_leader():
            return
        conf = self.config()
        now = time.time()
        for sid in promotions(conf, state, now):
            s = state.servers[sid]
            log.info("Promoting server: id=%s address=%s name=%s", sid, s.address, s.name)
            await self.raft.add_voter(sid, s.address)
        known = self.known()
        mono = time.monotonic()
        for sid in list(self._unknown_since):
            if sid in known or sid not in state.servers:
                del self._unknown_since[sid]
        stale = []
        for sid in state.servers:
            if sid not in known:
                since = self._unknown_since.setdefault(sid, mono)
                if mono - since >= self.stale_grace:
                    stale.append(sid)
        for sid in removals(conf, state, stale):
            s = state.servers[sid]
            what = "stale" if sid in stale else "failed"
            log.info("Attempting removal of %s server node: id=%s name=%s address=%s",
                     what, sid, s.name, s.address)
            await self.raft.remove_server(sid)

"""Serf's settings (mirrors hashicorp/serf serf/config.go DefaultConfig) and the member and event
records it hands to the application.

Durations are seconds. Consul changes a few defaults for its pools (protocol 4, 72 h reconnect
timeout, 3 s leave propagation, 4,096-deep queues); `consul_pool` applies them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from proconsul.gossip.config import GossipConfig, default_lan
from proconsul.gossip.serf.messages import (
    STATUS_ALIVE,
    STATUS_FAILED,
    STATUS_LEAVING,
    STATUS_LEFT,
    STATUS_NONE,
)

__all__ = [
    "PROTOCOL_MAX", "PROTOCOL_MIN", "STATUS_NAMES", "MergeCheck", "SerfConfig", "SerfMember",
    "UserEventRecord", "consul_pool",
]

#: Serf protocol versions understood (2: base, 3: tags in meta, 4: queries, 5: query relay)
PROTOCOL_MIN = 2
PROTOCOL_MAX = 5

STATUS_NAMES = {STATUS_NONE: "none", STATUS_ALIVE: "alive", STATUS_LEAVING: "leaving",
                STATUS_LEFT: "left", STATUS_FAILED: "failed"}


@dataclass
class SerfConfig:
    """Serf's knobs. `snapshot_path` names the member-list snapshot file (Consul:
    `<data_dir>/serf/local.snapshot`): replayed at construction to restore the Lamport clocks
    and the nodes to rejoin, then appended to. `rejoin_after_leave` makes a restart rejoin
    even after a graceful leave. `merge_delegate` vets the members a push/pull or an alive
    message would add (serf's `Config.Merge`): it gets them as SerfMember records (status
    none, or left) and returns a reason to refuse them, or None to accept."""

    node_name: str
    tags: dict[str, str] = field(default_factory=dict)
    protocol_version: int = 4
    memberlist: GossipConfig = field(default_factory=default_lan)
    broadcast_timeout: float = 5.0
    leave_propagate_delay: float = 1.0
    coalesce_period: float = 0.0
    quiescent_period: float = 0.0
    user_coalesce_period: float = 0.0
    user_quiescent_period: float = 0.0
    reap_interval: float = 15.0
    reconnect_interval: float = 30.0
    reconnect_timeout: float = 24 * 3600.0
    tombstone_timeout: float = 24 * 3600.0
    flap_timeout: float = 60.0
    queue_check_interval: float = 30.0
    queue_depth_warning: int = 128
    max_queue_depth: int = 4096
    min_queue_depth: int = 0
    recent_intent_timeout: float = 300.0
    event_buffer: int = 512
    query_buffer: int = 512
    query_timeout_mult: int = 16
    query_response_size_limit: int = 1024
    query_size_limit: int = 1024
    user_event_size_limit: int = 512
    snapshot_path: str = ""
    rejoin_after_leave: bool = False
    disable_coordinates: bool = False
    keyring_file: str = ""
    merge_delegate: MergeCheck | None = None


def consul_pool(node_name: str, tags: dict[str, str], memberlist: GossipConfig) -> SerfConfig:
    """Serf as Consul configures it for its LAN and WAN pools (lib/serf, agent/consul)."""
    return replace(SerfConfig(node_name, tags), memberlist=memberlist,
                   reconnect_timeout=72 * 3600.0, leave_propagate_delay=3.0,
                   min_queue_depth=4096, queue_depth_warning=1_000_000,
                   coalesce_period=0.0, quiescent_period=0.0)


@dataclass
class SerfMember:
    """A member as Serf reports it (serf.Member)."""

    name: str
    addr: bytes
    port: int
    tags: dict[str, str]
    status: int
    protocol_min: int = 0
    protocol_max: int = 0
    protocol_cur: int = 0
    delegate_min: int = 0
    delegate_max: int = 0
    delegate_cur: int = 0
    #: Lamport time of the last join/leave intent applied to it
    status_ltime: int = 0
    #: loop time it went failed or left (0 while alive)
    leave_time: float = 0.0

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.status, "unknown")

    def set_versions(self, vsn: bytes) -> None:
        if len(vsn) == 6:
            (self.protocol_min, self.protocol_max, self.protocol_cur, self.delegate_min,
             self.delegate_max, self.delegate_cur) = vsn


#: serf's MergeDelegate.NotifyMerge: the members to vet -> a reason to refuse them, or None.
MergeCheck = Callable[[list[SerfMember]], str | None]


@dataclass
class UserEventRecord:
    """A user event as delivered to the application."""

    ltime: int
    name: str
    payload: bytes
    coalesce: bool

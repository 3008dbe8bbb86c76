"""Gossip timing profiles (mirrors hashicorp/memberlist config.go).

Three profiles as memberlist has them: LAN (a datacenter), WAN (between datacenters) and local
(loopback, tests). Consul's pools start from LAN and WAN and adjust a few fields
(`consul_lan`/`consul_wan`), and its `gossip_lan {}` / `gossip_wan {}` blocks tune the rest.
Durations are seconds (floats), as everywhere in this code base.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from proconsul.config.runtime import GossipConfig as TuningConfig

#: memberlist protocol versions this implementation speaks (v5 adds the CRC prefix)
PROTOCOL_MIN = 1
PROTOCOL_MAX = 5
#: memberlist's default (`ProtocolVersion2Compatible`)
PROTOCOL_DEFAULT = 2


@dataclass(frozen=True)
class GossipConfig:
    bind_port: int = 7946
    protocol_version: int = PROTOCOL_DEFAULT
    tcp_timeout: float = 10.0
    indirect_checks: int = 3
    retransmit_mult: int = 4
    suspicion_mult: int = 4
    suspicion_max_timeout_mult: int = 6
    push_pull_interval: float = 30.0
    probe_interval: float = 1.0
    probe_timeout: float = 0.5
    disable_tcp_pings: bool = False
    awareness_max_multiplier: int = 8
    gossip_nodes: int = 3
    gossip_interval: float = 0.2
    gossip_to_the_dead_time: float = 30.0
    gossip_verify_incoming: bool = True
    gossip_verify_outgoing: bool = True
    enable_compression: bool = True
    handoff_queue_depth: int = 1024
    udp_buffer_size: int = 1400
    dead_node_reclaim_time: float = 0.0

    def tuned(self, tuning: TuningConfig) -> GossipConfig:
        """This profile with an agent's `gossip_lan`/`gossip_wan` block applied."""
        return replace(
            self, gossip_interval=tuning.gossip_interval, gossip_nodes=tuning.gossip_nodes,
            probe_interval=tuning.probe_interval, probe_timeout=tuning.probe_timeout,
            suspicion_mult=tuning.suspicion_mult, retransmit_mult=tuning.retransmit_mult,
        )


def default_lan() -> GossipConfig:
    return GossipConfig()


def default_wan() -> GossipConfig:
    return GossipConfig(
        tcp_timeout=30.0, suspicion_mult=6, push_pull_interval=60.0, probe_interval=5.0,
        probe_timeout=3.0, gossip_nodes=4, gossip_interval=0.5, gossip_to_the_dead_time=60.0,
    )


def default_local() -> GossipConfig:
    return GossipConfig(
        tcp_timeout=1.0, indirect_checks=1, retransmit_mult=2, suspicion_mult=3,
        push_pull_interval=15.0, probe_timeout=0.2, gossip_interval=0.1,
        gossip_to_the_dead_time=15.0,
    )


def consul_lan(port: int = 8301) -> GossipConfig:
    """Consul's LAN pool: memberlist's LAN profile on 8301, dead names reclaimable after 30 s."""
    return replace(default_lan(), bind_port=port, dead_node_reclaim_time=30.0)


def consul_wan(port: int = 8302) -> GossipConfig:
    """Consul's WAN pool: the WAN profile on 8302; its default template gossips to 3 nodes."""
    return replace(default_wan(), bind_port=port, gossip_nodes=3, dead_node_reclaim_time=30.0)


def retransmit_limit(mult: int, n: int) -> int:
    """How many times a broadcast is sent: mult x ceil(log10(n + 1)) (memberlist util.go)."""
    return mult * math.ceil(math.log10(n + 1)) if n > 0 else 0


def suspicion_timeout(mult: int, n: int, interval: float) -> float:
    """The shortest suspicion time: mult x max(1, log10(max(1, n))) x probe interval."""
    return mult * max(1.0, math.log10(max(1, n))) * interval


def push_pull_scale(interval: float, n: int) -> float:
    """The push/pull interval stretched for large clusters: beyond 32 nodes one more
    interval per doubling (memberlist pushPullScale)."""
    threshold = 32
    if n <= threshold:
        return interval
    multiplier = math.ceil(math.log2(n) - math.log2(threshold)) + 1
    return interval * multiplier

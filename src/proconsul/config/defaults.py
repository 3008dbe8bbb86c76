"""Consul's built-in defaults, the `-dev` overrides, and the values users cannot change.

Defaults are the lowest-precedence source, so they are expressed exactly like a config file
and go through the same merge: a user's file then overrides them key by key, and lists in a
user's file are appended to (empty) default lists, as in Consul. The per-key defaults live in
the schema table; this module turns them into sources and adds what has no key of its own:
fixed server timings, and the facts about this machine that node name and address default to.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proconsul.config.schema import TOP, Field, Section
from proconsul.config.source import Source

DEFAULT_SOURCE_NAME = "default"
DEV_SOURCE_NAME = "dev"


def _defaults_of(section: Section) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, spec in section.fields.items():
        if isinstance(spec, Field):
            if spec.default is not None and spec.replaced_by is None:
                out[name] = spec.default
        elif isinstance(spec, Section):
            nested = _defaults_of(spec)
            if nested:
                out[name] = nested
    return out


def default_source() -> Source:
    """Every key that has a default, in config-file form (Consul's `DefaultSource`)."""
    return Source(name=DEFAULT_SOURCE_NAME, data=_defaults_of(TOP))


#: Consul's `DevSource`: a single self-electing server on loopback with the UI and debug on.
DEV_OVERRIDES: dict[str, Any] = {
    "bind_addr": "127.0.0.1",
    "disable_anonymous_signature": True,
    "disable_keyring_file": True,
    "enable_debug": True,
    "ui_config": {"enabled": True},
    "log_level": "DEBUG",
    "server": True,
    "gossip_lan": {
        "gossip_interval": "100ms", "probe_interval": "100ms", "probe_timeout": "100ms",
        "suspicion_mult": 3,
    },
    "gossip_wan": {
        "gossip_interval": "100ms", "probe_interval": "100ms", "probe_timeout": "100ms",
        "suspicion_mult": 3,
    },
    "connect": {"enabled": True},
    "peering": {"enabled": True},
    "performance": {"raft_multiplier": 1},
    "ports": {"grpc": 8502},
}


def dev_source() -> Source:
    return Source(name=DEV_SOURCE_NAME, data=DEV_OVERRIDES)


@dataclass(frozen=True)
class ServerTimings:
    """Timings Consul fixes itself (its `DefaultConsulSource`/`DevConsulSource`), in seconds.

    The Raft timeouts are the base values; the runtime multiplies them by
    `performance.raft_multiplier`, as Consul does.
    """

    raft_election_timeout: float
    raft_heartbeat_timeout: float
    raft_leader_lease_timeout: float
    coordinate_update_period: float
    coordinate_update_batch_size: int
    coordinate_update_max_batches: int
    server_health_interval: float


SERVER_TIMINGS = ServerTimings(
    raft_election_timeout=1.0,
    raft_heartbeat_timeout=1.0,
    raft_leader_lease_timeout=0.5,
    coordinate_update_period=5.0,
    coordinate_update_batch_size=128,
    coordinate_update_max_batches=5,
    server_health_interval=2.0,
)

DEV_SERVER_TIMINGS = ServerTimings(
    raft_election_timeout=0.052,
    raft_heartbeat_timeout=0.035,
    raft_leader_lease_timeout=0.020,
    coordinate_update_period=0.1,
    coordinate_update_batch_size=128,
    coordinate_update_max_batches=5,
    server_health_interval=0.010,
)


@dataclass(frozen=True)
class AgentIntervals:
    """Agent intervals Consul does not let users configure (its `NonUserSource`), in seconds."""

    ae_interval: float = 60.0
    check_deregister_interval_min: float = 60.0
    check_reap_interval: float = 30.0
    sync_coordinate_rate_target: float = 64.0
    sync_coordinate_interval_min: float = 15.0
    segment_limit: int = 64
    segment_name_limit: int = 64


AGENT_INTERVALS = AgentIntervals()

#: Consul's raft_multiplier upper bound (`consul.MaxRaftMultiplier`).
MAX_RAFT_MULTIPLIER = 10
#: Reaping failed members sooner than this risks removing servers during an outage.
MIN_RECONNECT_TIMEOUT = 8 * 3600.0
MIN_SERVER_REJOIN_AGE_MAX = 6 * 3600.0
#: gRPC TLS listens by default on servers only.
SERVER_GRPC_TLS_PORT = 8503


# ---------------------------------------------------------------------------------------------
# Defaults that come from the machine: the node name is the hostname, and an agent bound to
# the any-address advertises its one private address. Injectable so tests never depend on the
# machine's interfaces.


def _interface_ipv4s() -> list[str]:
    """Each interface's primary IPv4 address via SIOCGIFADDR; empty where that is unavailable."""
    try:
        import fcntl
        import struct
    except ImportError:
        return []
    out: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(
                    sock.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
            out.append(str(ipaddress.IPv4Address(packed[20:24])))
    return out


def private_ipv4_addrs() -> list[str]:
    """Private, non-loopback IPv4 addresses, the candidates Consul advertises by default."""
    shared = ipaddress.ip_network("100.64.0.0/10")
    out = []
    for text in _interface_ipv4s():
        addr = ipaddress.IPv4Address(text)
        if addr.is_loopback or addr.is_link_local:
            continue
        if addr.is_private or addr in shared:
            out.append(text)
    return out


def public_ipv6_addrs() -> list[str]:
    """Global IPv6 addresses, the candidates when the bind address is `::`."""
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as fh:
            lines = fh.read().split("\n")
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if not parts or len(parts[0]) != 32:
            continue
        addr = ipaddress.IPv6Address(bytes.fromhex(parts[0]))
        if addr.is_global:
            out.append(str(addr))
    return out


@dataclass(frozen=True)
class HostInfo:
    """Where the builder asks about this machine: its hostname and its addresses."""

    hostname: Callable[[], str] = socket.gethostname
    private_ipv4: Callable[[], list[str]] = private_ipv4_addrs
    public_ipv6: Callable[[], list[str]] = public_ipv6_addrs

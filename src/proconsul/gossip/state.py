"""What one gossip node knows about another (mirrors memberlist's `Node` and `nodeState`).

A `NodeState` is the merged view of every alive/suspect/dead message about one name: where it is,
its meta (Serf tags), the protocol versions it speaks and the SWIM state with the incarnation that
put it there. It is what the event delegates receive, so it carries only plain values.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from proconsul.gossip.messages import STATE_ALIVE, STATE_DEAD, STATE_LEFT, STATE_SUSPECT

__all__ = ["STATE_NAMES", "NodeState", "address_bytes", "address_text"]

#: memberlist's NodeStateType names, as its logs and Consul's member status use them.
STATE_NAMES = {STATE_ALIVE: "alive", STATE_SUSPECT: "suspect", STATE_DEAD: "dead",
               STATE_LEFT: "left"}


def address_text(addr: bytes) -> str:
    """The text form of a 4- or 16-byte IP as memberlist carries it (IPv4-mapped IPv6 is shown
    as IPv4, as Go's net.IP.String does)."""
    if len(addr) == 4:
        return str(ipaddress.IPv4Address(addr))
    if len(addr) == 16:
        ip6 = ipaddress.IPv6Address(addr)
        return str(ip6.ipv4_mapped or ip6)
    return addr.hex()


def address_bytes(host: str) -> bytes:
    """The wire form of an IP: 4 bytes for IPv4 (memberlist compares addresses byte for byte,
    so the length must stay stable), 16 for IPv6."""
    return ipaddress.ip_address(host).packed


@dataclass(slots=True)
class NodeState:
    name: str
    addr: bytes
    port: int
    meta: bytes | None
    incarnation: int
    state: int
    vsn: bytes
    #: loop time of the last state change (suspicion and dead-node reaping count from it)
    state_change: float = 0.0

    @property
    def host(self) -> str:
        return address_text(self.addr)

    @property
    def address(self) -> tuple[str, int]:
        return (address_text(self.addr), self.port)

    @property
    def pmin(self) -> int:
        return self.vsn[0] if len(self.vsn) == 6 else 0

    @property
    def pmax(self) -> int:
        return self.vsn[1] if len(self.vsn) == 6 else 0

    @property
    def pcur(self) -> int:
        return self.vsn[2] if len(self.vsn) == 6 else 0

    @property
    def dmin(self) -> int:
        return self.vsn[3] if len(self.vsn) == 6 else 0

    @property
    def dmax(self) -> int:
        return self.vsn[4] if len(self.vsn) == 6 else 0

    @property
    def dcur(self) -> int:
        return self.vsn[5] if len(self.vsn) == 6 else 0

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state, "unknown")

    def dead_or_left(self) -> bool:
        return self.state == STATE_DEAD or self.state == STATE_LEFT

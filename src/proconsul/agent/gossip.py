"""The agent's gossip pools: the LAN pool every agent joins on `ports.serf_lan`, and the WAN
pool servers join on `ports.serf_wan` under the name `<node>.<dc>` (Consul's
agent/consul/server_serf.go and client_serf.go).

The pools are Serf over real UDP/TCP sockets. What Consul layers on top lives here: the keyring
files under `data_dir/serf/` (the file wins over `encrypt` once it exists, so a key rotated by
`consul keyring` survives a restart), `-join`/`-retry-join` with hostnames resolved by aiodns,
the member records `/v1/agent/members` prints, and the merge rules that keep a node of another
datacenter, or one claiming another node's ID, out of the LAN pool.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiodns

from proconsul.config.runtime import RuntimeConfig
from proconsul.errors import GossipError, ProconsulError
from proconsul.gossip.config import GossipConfig, consul_lan, consul_wan
from proconsul.gossip.keyring import Keyring, KeyringError
from proconsul.gossip.memberlist import parse_join_address
from proconsul.gossip.net_transport import NetTransport
from proconsul.gossip.serf.config import MergeCheck, SerfConfig, SerfMember, consul_pool
from proconsul.gossip.serf.serf import Serf, SerfEvent
from proconsul.gossip.state import address_text

log = logging.getLogger("proconsul.agent")

SERF_DIR = "serf"
LAN_KEYRING = "local.keyring"
WAN_KEYRING = "remote.keyring"
LAN_SNAPSHOT = "local.snapshot"
WAN_SNAPSHOT = "remote.snapshot"

#: The segment name `/v1/agent/members?segment=` uses for "every segment".
ALL_SEGMENTS = "_all"

EventHandler = Callable[[SerfEvent], None]


def load_keyring(cfg: RuntimeConfig, path: Path | None) -> Keyring | None:
    """The pool's keyring: the keyring file when it exists (it may hold keys installed since),
    else `encrypt`, written to the file for the next start (Consul's setupKeyrings)."""
    if path is not None and not cfg.disable_keyring_file and path.exists():
        try:
            ring = Keyring.load(path)
        except KeyringError as exc:
            raise ProconsulError(f"Failed to configure keyring: {exc}") from None
        if cfg.encrypt:
            log.warning("agent: loaded keyring file %s; the encrypt key is not used", path)
        return ring
    if not cfg.encrypt:
        return None
    try:
        ring = Keyring.from_base64([cfg.encrypt])
    except KeyringError as exc:
        raise ProconsulError(f"Failed to configure keyring: {exc}") from None
    if path is not None and not cfg.disable_keyring_file:
        ring.save(path)
    return ring


async def resolve_join(addresses: list[str], default_port: int,
                       resolver: aiodns.DNSResolver | None = None) -> list[str]:
    """`[name/]host[:port]` with hostnames replaced by every address they resolve to, as
    memberlist's resolveAddr does; a name that does not resolve is kept, so the join reports
    it as a failure."""
    out: list[str] = []
    for text in addresses:
        try:
            _, (host, port) = parse_join_address(text, default_port)
        except ValueError:
            out.append(text)
            continue
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            out.append(text)
            continue
        resolver = resolver or aiodns.DNSResolver()
        try:
            found = await resolver.getaddrinfo(host, family=socket.AF_UNSPEC, port=port,
                                               type=socket.SOCK_STREAM)
        except aiodns.error.DNSError as exc:
            log.warning("agent: Failed to resolve %s: %s", host, exc)
            out.append(text)
            continue
        seen: set[str] = set()
        for node in found.nodes:
            ip = node.addr[0].decode() if isinstance(node.addr[0], bytes) else node.addr[0]
            if ip not in seen:
                seen.add(ip)
                out.append(f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}")
    return out


def member_json(member: SerfMember) -> dict[str, Any]:
    """A Serf member as Consul's api.AgentMember."""
    return {
        "Name": member.name, "Addr": address_text(member.addr), "Port": member.port,
        "Tags": dict(member.tags), "Status": member.status,
        "ProtocolMin": member.protocol_min, "ProtocolMax": member.protocol_max,
        "ProtocolCur": member.protocol_cur, "DelegateMin": member.delegate_min,
        "DelegateMax": member.delegate_max, "DelegateCur": member.delegate_cur,
    }


def lan_merge_error(members: list[SerfMember], datacenter: str, local_name: str,
                    local_id: str, known: dict[str, SerfMember]) -> str | None:
    """Why a LAN merge must be refused (Consul's lanMergeDelegate), or None."""
    for m in members:
        node_id = m.tags.get("id", "")
        if node_id:
            for other in known.values():
                if other.name != m.name and other.tags.get("id") == node_id:
                    return (f"Member '{m.name}' has conflicting node ID '{node_id}' with "
                            f"member '{other.name}'")
            if m.name != local_name and node_id == local_id:
                return (f"Member '{m.name}' has conflicting node ID '{node_id}' with this "
                        "agent's ID")
        dc = m.tags.get("dc")
        if dc is not None and dc != datacenter:
            return f"Member '{m.name}' part of wrong datacenter '{dc}'"
    return None


def wan_merge_error(members: list[SerfMember]) -> str | None:
    """Why a WAN merge must be refused (Consul's wanMergeDelegate): only servers, named
    `<node>.<dc>`, belong in the WAN pool."""
    for m in members:
        if m.tags.get("role") != "consul":
            return f"Member '{m.name}' is not a server"
        if "." not in m.name or m.name.rsplit(".", 1)[1] != m.tags.get("dc"):
            return f"Member '{m.name}' is not a server"
    return None


class GossipPools:
    """The LAN pool (every agent) and the WAN pool (servers), with their sockets."""

    def __init__(self, cfg: RuntimeConfig, node_id: str, lan_tags: dict[str, str],
                 wan_tags: dict[str, str] | None, on_lan_event: EventHandler,
                 on_wan_event: EventHandler | None = None,
                 data_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.node_id = node_id
        serf_dir = data_dir / SERF_DIR if data_dir is not None else None
        self.lan = self._pool(
            cfg.node_name, lan_tags, consul_lan(cfg.ports.serf_lan).tuned(cfg.gossip_lan),
            cfg.serf_bind_addr_lan, cfg.serf_advertise_addr_lan, on_lan_event,
            serf_dir, LAN_KEYRING, cfg.reconnect_timeout, LAN_SNAPSHOT,
            lambda ms: lan_merge_error(ms, cfg.datacenter, cfg.node_name, node_id,
                                       self.lan.members))
        self.wan: Serf | None = None
        if wan_tags is not None and cfg.serf_bind_addr_wan is not None:
            assert cfg.serf_advertise_addr_wan is not None
            self.wan = self._pool(
                f"{cfg.node_name}.{cfg.datacenter}", wan_tags,
                consul_wan(cfg.ports.serf_wan).tuned(cfg.gossip_wan), cfg.serf_bind_addr_wan,
                cfg.serf_advertise_addr_wan, on_wan_event, serf_dir, WAN_KEYRING,
                cfg.reconnect_timeout_wan, WAN_SNAPSHOT, wan_merge_error)
        self._retry_tasks: set[asyncio.Task[None]] = set()

    def _pool(self, name: str, tags: dict[str, str], memberlist: GossipConfig,
              bind: tuple[str, int], advertise: tuple[str, int],
              on_event: EventHandler | None, serf_dir: Path | None, keyring_name: str,
              reconnect_timeout: float, snapshot_name: str, merge: MergeCheck) -> Serf:
        cfg = self.cfg
        memberlist = replace(memberlist, bind_port=bind[1],
                             gossip_verify_incoming=cfg.encrypt_verify_incoming,
                             gossip_verify_outgoing=cfg.encrypt_verify_outgoing)
        keyring_path = serf_dir / keyring_name if serf_dir is not None else None
        keyring = load_keyring(cfg, keyring_path)
        config: SerfConfig = replace(
            consul_pool(name, tags, memberlist), reconnect_timeout=reconnect_timeout,
            rejoin_after_leave=cfg.rejoin_after_leave,
            keyring_file=str(keyring_path) if keyring_path is not None and keyring is not None
            and not cfg.disable_keyring_file else "",
            disable_coordinates=cfg.disable_coordinates,
            snapshot_path=str(serf_dir / snapshot_name) if serf_dir is not None else "",
            merge_delegate=merge,
        )
        if serf_dir is not None:
            serf_dir.mkdir(parents=True, exist_ok=True)
        transport = NetTransport(bind[0], bind[1], advertise=advertise)
        return Serf(config, transport, on_event, keyring=keyring,
                    logger=logging.getLogger("proconsul.serf"))

    def pools(self) -> list[Serf]:
        return [self.lan] + ([self.wan] if self.wan is not None else [])

    async def start(self) -> None:
        for serf, what in ((self.lan, "LAN"), (self.wan, "WAN")):
            if serf is None:
                continue
            transport = serf.memberlist.transport
            assert isinstance(transport, NetTransport)
            try:
                await transport.listen()
            except OSError as exc:
                raise ProconsulError(
                    f"Failed to start {what} Serf: Failed to create memberlist: Could not set "
                    f"up network transport: failed to obtain an address: {exc}") from None
            await serf.start()
            bind = self.cfg.serf_bind_addr_lan if what == "LAN" else self.cfg.serf_bind_addr_wan
            assert bind is not None
            log.info("serf: %s pool listening: address=%s:%d", what, bind[0], transport.port)
        self._start_retry_join(self.lan, self.cfg.retry_join, self.cfg.retry_interval,
                               self.cfg.retry_max, "LAN")
        if self.wan is not None:
            self._start_retry_join(self.wan, self.cfg.retry_join_wan,
                                   self.cfg.retry_interval_wan, self.cfg.retry_max_wan, "WAN")

    async def join(self, addresses: list[str], wan: bool = False) -> int:
        """Join the pool through `addresses`; the number contacted. GossipError when none
        answered, with every failure in its text."""
        serf = self.wan if wan else self.lan
        if serf is None:
            raise GossipError("WAN pool is not enabled on this agent")
        port = self.cfg.ports.serf_wan if wan else self.cfg.ports.serf_lan
        resolved = await resolve_join(addresses, port)
        what = "WAN" if wan else "LAN"
        log.info("agent: (%s) joining: %s_addresses=%s", what, what.lower(), addresses)
        try:
            n = await serf.join(resolved, ignore_old=True)
        except GossipError as exc:
            log.warning("agent: (%s) couldn't join: number_of_nodes=0 error=%s", what,
                        str(exc).replace("\n", " "))
            raise
        log.info("agent: (%s) joined: number_of_nodes=%d", what, n)
        return n

    def _start_retry_join(self, serf: Serf, addrs: tuple[str, ...], interval: float,
                          max_attempts: int, what: str) -> None:
        if not addrs:
            return
        task = asyncio.get_running_loop().create_task(
            self._retry_join(serf, list(addrs), interval, max_attempts, what))
        self._retry_tasks.add(task)
        task.add_done_callback(self._retry_tasks.discard)

    async def _retry_join(self, serf: Serf, addrs: list[str], interval: float,
                          max_attempts: int, what: str) -> None:
        """Consul's retryJoiner: try every address until one answers, forever unless
        retry_max is set; cloud auto-join strings are reported, not attempted."""
        plain = [a for a in addrs if "provider=" not in a]
        for a in addrs:
            if "provider=" in a:
                log.error("agent: (%s) cloud auto-join is not supported: %s", what, a)
        if not plain:
            return
        log.info("agent: Retry join is supported for the following discovery methods: "
                 "cluster=%s discovery_methods=", what)
        log.info("agent: Joining cluster...: cluster=%s", what)
        attempt = 0
        while True:
            attempt += 1
            port = self.cfg.ports.serf_wan if what == "WAN" else self.cfg.ports.serf_lan
            resolved = await resolve_join(plain, port)
            try:
                n = await serf.join(resolved, ignore_old=True)
            except GossipError as exc:
                if max_attempts > 0 and attempt >= max_attempts:
                    log.error("agent: Failed to join cluster after %d attempts: cluster=%s "
                              "error=%s", attempt, what, str(exc).replace("\n", " "))
                    return
                log.warning("agent: Join cluster failed, will retry: cluster=%s "
                            "retry_interval=%ss error=%s", what, _go_seconds(interval),
                            str(exc).replace("\n", " "))
                await asyncio.sleep(interval)
                continue
            log.info("agent: Join cluster completed. Synced with initial agents: "
                     "cluster=%s num_agents=%d", what, n)
            return

    def members(self, wan: bool = False, segment: str = "") -> list[dict[str, Any]]:
        serf = self.wan if wan else self.lan
        if serf is None:
            return []
        out = []
        for m in serf.member_list():
            if not wan and segment != ALL_SEGMENTS and m.tags.get("segment", "") != segment:
                continue
            out.append(member_json(m))
        return out

    def local_member(self) -> dict[str, Any]:
        return member_json(self.lan.local_member())

    async def force_leave(self, node: str, prune: bool = False, wan: bool = False) -> None:
        """Move a failed member to left (or forget it with prune) in the LAN pool, and for a
        server the WAN pool too (Consul's ForceLeave)."""
        pools: list[Serf] = []
        if wan:
            if self.wan is None:
                raise GossipError("WAN pool is not enabled on this agent")
            pools = [self.wan]
        else:
            pools = [self.lan]
        found = any(m.name == node for p in pools for m in p.member_list())
        if not found and not wan and self.wan is not None:
            found = any(m.name == node for m in self.wan.member_list())
            if found:
                pools = [self.wan]
        if not found:
            raise GossipError(f"agent: No node found with name '{node}'")
        for serf in pools:
            await serf.force_leave(node, prune)
        if not wan and self.wan is not None and pools == [self.lan]:
            wan_name = f"{node}.{self.cfg.datacenter}"
            if any(m.name == wan_name for m in self.wan.member_list()):
                await self.wan.force_leave(wan_name, prune)

    async def leave(self) -> None:
        """Graceful leave of both pools (the WAN first, as Consul's server Leave)."""
        for serf, what in ((self.wan, "WAN"), (self.lan, "LAN")):
            if serf is None:
                continue
            log.info("serf: Leaving %s pool", what)
            try:
                await serf.leave()
            except GossipError as exc:
                log.error("agent: failed to leave %s Serf cluster: %s", what, exc)

    async def shutdown(self) -> None:
        for task in list(self._retry_tasks):
            task.cancel()
        for serf in self.pools():
            await serf.shutdown()

    def stats(self, serf: Serf) -> dict[str, str]:
        return serf.stats()


def _go_seconds(seconds: float) -> str:
    return f"{seconds:g}"

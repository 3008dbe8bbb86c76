"""Consul's DNS name forms, turned into answer plans.

The resolver reads a question name from the right: the zone (`domain` or `alt_domain`), an
optional datacenter suffix, a type label (`service`, `node`, `addr`, `query`, ...) and the
parts before it. It builds a `Plan` (records, additional glue, authority SOA, rcode) from the
catalog view and names what the plan was built from, so the server can cache the plan until
one of those things changes. Shuffling and trimming happen per response when the plan is
rendered, so a cached plan still answers every query in a fresh random order.

Response rules are Consul's: a service with no healthy instance is NXDOMAIN, an existing name
with no record of the asked type is NOERROR with the SOA in the authority section (NODATA),
and names outside the zones go to the recursors (or are REFUSED when there are none).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from proconsul.dns import wire
from proconsul.dns.view import (
    DEP_NODES,
    CatalogView,
    dep_connect,
    dep_name,
    dep_node,
    dep_service,
)
from proconsul.errors import DNSFormatError
from proconsul.structs.catalog import HEALTH_CRITICAL, HEALTH_PASSING

if TYPE_CHECKING:
    from proconsul.config.runtime import RuntimeConfig
    from proconsul.state.catalog import HealthEntry
    from proconsul.structs.catalog import Node, NodeService

#: labels that name the kind of lookup
TYPE_LABELS = frozenset(("service", "connect", "ingress", "virtual", "node", "query", "addr"))
#: the service every server registers for itself; NS answers list its instances
CONSUL_SERVICE = "consul"
#: at most this many NS records per answer (Consul picks three servers at random)
MAX_NS = 3

ADDRESS_TYPES = (wire.TYPE_A, wire.TYPE_AAAA, wire.TYPE_ANY)


@dataclass(frozen=True)
class DNSSettings:
    """The configuration the resolver answers by (from `domain`, `alt_domain`, `dns_config`)."""

    domain: str = "consul"
    alt_domain: str = ""
    datacenter: str = "dc1"
    node_ttl: int = 0
    service_ttl: Mapping[str, float] | None = None
    only_passing: bool = False
    a_record_limit: int = 0
    node_meta_txt: bool = True
    soa_refresh: int = 3600
    soa_retry: int = 600
    soa_expire: int = 86400
    soa_min_ttl: int = 0

    @classmethod
    def from_config(cls, cfg: RuntimeConfig) -> DNSSettings:
        dc = cfg.dns_config
        return cls(
            domain=_zone(cfg.domain) or "consul", alt_domain=_zone(cfg.alt_domain),
            datacenter=cfg.datacenter.lower(), node_ttl=int(dc.node_ttl),
            service_ttl={k.lower(): v for k, v in dc.service_ttl.items()},
            only_passing=dc.only_passing, a_record_limit=max(dc.a_record_limit, 0),
            node_meta_txt=dc.enable_additional_node_meta_txt,
            soa_refresh=dc.soa.refresh, soa_retry=dc.soa.retry, soa_expire=dc.soa.expire,
            soa_min_ttl=dc.soa.min_ttl,
        )

    def service_ttl_for(self, service: str) -> int:
        """The exact name's TTL, else the longest matching `prefix*` wildcard, else 0."""
        ttls = self.service_ttl or {}
        if service in ttls:
            return int(ttls[service])
        best, ttl = -1, 0.0
        for key, value in ttls.items():
            if key.endswith("*") and service.startswith(key[:-1]) and len(key) > best:
                best, ttl = len(key), value
        return int(ttl)


def _zone(domain: str) -> str:
    return domain.strip().strip(".").lower()


@dataclass(frozen=True)
class Resolution:
    """A plan, and the view dependencies it was built from (None: do not cache it).

    `plan` None means the name is outside the zones: the server relays it to the recursors.
    """

    plan: wire.Plan | None
    deps: frozenset[str] | None = frozenset()


FORWARD = Resolution(None, None)


class Resolver:
    def __init__(self, settings: DNSSettings, view: CatalogView,
                 datacenters: Iterable[str] = (), recursors: bool = False) -> None:
        self.settings = settings
        self.view = view
        self.datacenters = {d.lower() for d in datacenters} | {settings.datacenter}
        self.recursors = recursors
        zones = [settings.domain] + ([settings.alt_domain] if settings.alt_domain else [])
        self._zones = sorted(zones, key=len, reverse=True)

    # -- entry point ---------------------------------------------------------------------------

    async def resolve(self, query: wire.Query) -> Resolution:
        if query.qtype in (wire.TYPE_AXFR, wire.TYPE_IXFR):
            return Resolution(wire.Plan(wire.RCODE_NOTIMP, [], authoritative=False))
        name = query.qname
        if name.endswith(".in-addr.arpa") or name.endswith(".ip6.arpa"):
            return await self._reverse(query, name)
        for zone in self._zones:
            if name == zone:
                return await self._apex(query, zone)
            if name.endswith("." + zone):
                try:
                    return await self._in_zone(query, name[: -len(zone) - 1], zone)
                except DNSFormatError:
                    return self._nxdomain(zone, frozenset())
        if self.recursors:
            return FORWARD
        return Resolution(wire.Plan(wire.RCODE_REFUSED, [], authoritative=False))

    async def _in_zone(self, query: wire.Query, rest: str, zone: str) -> Resolution:
        labels = rest.split(".")
        for i in range(len(labels) - 1, -1, -1):
            if labels[i] in TYPE_LABELS:
                kind, parts, suffix = labels[i], labels[:i], labels[i + 1:]
                break
        else:
            # RFC 2782 without the `.service` label is allowed for SRV questions only
            if (query.qtype == wire.TYPE_SRV and len(labels) == 2
                    and labels[0].startswith("_") and labels[1].startswith("_")):
                kind, parts, suffix = "service", labels, []
            else:
                return self._nxdomain(zone, frozenset())
        dc = self._datacenter(suffix)
        if dc is None or not parts:
            return self._nxdomain(zone, frozenset())
        if kind == "service":
            return await self._service(query, parts, dc, zone)
        if kind == "connect":
            if dc != self.settings.datacenter or len(parts) != 1:
                return self._nxdomain(zone, frozenset())  # local datacenter only, no tags
            return await self._service(query, parts, dc, zone, connect=True)
        if kind == "node":
            return await self._node(query, ".".join(parts), dc, zone)
        if kind == "addr":
            return self._addr(query, parts, zone)
        # prepared queries, ingress gateways (config entries) and virtual IPs (assigned by
        # servers for transparent proxies) do not exist here yet: Consul answers an unknown
        # query or service NXDOMAIN
        return self._nxdomain(zone, frozenset())

    def _datacenter(self, suffix: list[str]) -> str | None:
        """The datacenter a suffix names (`dc1` or `dc1.dc`), None when it names none here."""
        if not suffix:
            return self.settings.datacenter
        if len(suffix) == 1 or (len(suffix) == 2 and suffix[1] == "dc"):
            return suffix[0] if suffix[0] in self.datacenters else None
        return None  # peers (`.peer`), partitions and namespaces do not exist here

    # -- shared records ----------------------------------------------------------------------

    def _soa(self, zone: str) -> wire.Record:
        s = self.settings
        return wire.Record(
            wire.Name(zone), wire.TYPE_SOA, s.soa_min_ttl,
            (wire.Name("ns." + zone), wire.Name("hostmaster." + zone), 0,
             s.soa_refresh, s.soa_retry, s.soa_expire, s.soa_min_ttl),
        )

    def _nxdomain(self, zone: str, deps: frozenset[str] | None) -> Resolution:
        return Resolution(
            wire.Plan(wire.RCODE_NXDOMAIN, [], authority=[self._soa(zone)], soa_now=True), deps)

    def _nodata(self, zone: str, deps: frozenset[str] | None) -> Resolution:
        return Resolution(
            wire.Plan(wire.RCODE_NOERROR, [], authority=[self._soa(zone)], soa_now=True), deps)

    def _passing(self, entry: HealthEntry) -> bool | None:
        """True passing, False warning (still served), None excluded from DNS."""
        statuses = {c.status for c in entry[2]}
        if HEALTH_CRITICAL in statuses:
            return None
        if statuses - {HEALTH_PASSING}:
            return None if self.settings.only_passing else False
        return True

    # -- service lookups ---------------------------------------------------------------------

    async def _service(
        self, query: wire.Query, parts: list[str], dc: str, zone: str, connect: bool = False
    ) -> Resolution:
        if len(parts) == 2 and parts[0].startswith("_") and parts[1].startswith("_"):
            service, tag = parts[0][1:], parts[1][1:]
            if tag == "tcp":
                tag = ""
        else:
            service, tag = parts[-1], ".".join(parts[:-1])
        deps = {dep_name(service)}
        names = await self.view.service_names(service)
        if connect and not names:
            names = (service,)  # proxies may be registered before the service they front
        entries: list[HealthEntry] = []
        for registered in names:
            if connect:
                deps.add(dep_connect(registered))
                entries.extend(await self.view.connect(registered))
            else:
                deps.add(dep_service(registered))
                entries.extend(await self.view.service(registered))
        nodes = await self.view.nodes() if entries else {}
        picked: list[tuple[Node, NodeService, bool]] = []
        for entry in entries:
            passing = self._passing(entry)
            if passing is None:
                continue
            svc = entry[1]
            if tag and tag not in {t.lower() for t in svc.tags}:
                continue
            key = svc.node.lower()
            deps.add(dep_node(key))
            node = nodes.get(key, entry[0])
            picked.append((node, svc, passing))
        frozen = frozenset(deps)
        if not picked:
            return self._nxdomain(zone, frozen)
        ttl = self.settings.service_ttl_for(service)
        owner = wire.Name(query.qname)
        if query.qtype == wire.TYPE_SRV:
            return Resolution(self._srv_plan(owner, picked, ttl, dc, zone), frozen)
        if query.qtype == wire.TYPE_TXT:
            answers = [r for node in _unique_nodes(picked) for r in _meta_txt(owner, node, ttl)]
            if not answers:
                return self._nodata(zone, frozen)
            return Resolution(wire.Plan(wire.RCODE_NOERROR, answers, shuffle=True), frozen)
        if query.qtype not in ADDRESS_TYPES:
            return self._nodata(zone, frozen)
        pool = _Pool()
        answers, extra_of, seen = [], [], set()
        for node, svc, _ in picked:
            address = svc.address or node.address
            rec = _address_record(owner, address, query.qtype, ttl)
            if rec is None or address in seen:
                continue
            seen.add(address)
            answers.append(rec)
            extra_of.append(self._meta_extras(pool, node, dc, zone, ttl))
        if not answers:
            return self._nodata(zone, frozen)
        return Resolution(wire.Plan(
            wire.RCODE_NOERROR, answers, extras=pool.records, extra_of=extra_of, shuffle=True,
            answer_limit=self.settings.a_record_limit), frozen)

    def _srv_plan(self, owner: wire.Name, picked: list[tuple[Node, NodeService, bool]],
                  ttl: int, dc: str, zone: str) -> wire.Plan:
        pool = _Pool()
        answers, extra_of, seen = [], [], set()
        for node, svc, passing in picked:
            address = svc.address or node.address
            if (address, svc.port) in seen:
                continue
            seen.add((address, svc.port))
            weights = svc.weights or {}
            weight = weights.get("Passing", 1) if passing else weights.get("Warning", 1)
            extras: list[int] = []
            ip = _ip(address)
            if not svc.address or svc.address == node.address:
                target = wire.Name(f"{node.node}.node.{dc}.{zone}")
                glue = _address_record(target, node.address, wire.TYPE_ANY, ttl)
            elif ip is not None:
                target = wire.Name(f"{ip.packed.hex()}.addr.{dc}.{zone}")
                glue = _address_record(target, address, wire.TYPE_ANY, ttl)
            else:
                target, glue = wire.Name(address.rstrip(".")), None
            if glue is not None:
                extras.append(pool.add(glue))
            extras.extend(self._meta_extras(pool, node, dc, zone, ttl, target))
            answers.append(wire.Record(owner, wire.TYPE_SRV, ttl,
                                       (1, weight & 0xFFFF, svc.port & 0xFFFF, target)))
            extra_of.append(tuple(extras))
        return wire.Plan(wire.RCODE_NOERROR, answers, extras=pool.records, extra_of=extra_of,
                         shuffle=True)

    def _meta_extras(self, pool: _Pool, node: Node, dc: str, zone: str, ttl: int,
                     owner: wire.Name | None = None) -> tuple[int, ...]:
        if not (self.settings.node_meta_txt and node.meta):
            return ()
        owner = owner or wire.Name(f"{node.node}.node.{dc}.{zone}")
        return tuple(pool.add(r) for r in _meta_txt(owner, node, ttl))

    # -- node, addr, apex, reverse ---------------------------------------------------------

    async def _node(self, query: wire.Query, name: str, dc: str, zone: str) -> Resolution:
        deps = frozenset((dep_node(name),))
        node = (await self.view.nodes()).get(name)
        if node is None:
            return self._nxdomain(zone, deps)
        ttl = self.settings.node_ttl
        owner = wire.Name(query.qname)
        qtype = query.qtype
        answers: list[wire.Record] = []
        pool = _Pool()
        if qtype in ADDRESS_TYPES:
            rec = _address_record(owner, node.address, qtype, ttl)
            if rec is not None:
                answers.append(rec)
        if qtype in (wire.TYPE_TXT, wire.TYPE_ANY):
            answers.extend(_meta_txt(owner, node, ttl))
        if not answers:
            return self._nodata(zone, deps)
        extra_of = None
        if qtype != wire.TYPE_TXT and qtype != wire.TYPE_ANY:
            extra_of = [self._meta_extras(pool, node, dc, zone, ttl, owner) for _ in answers]
        return Resolution(wire.Plan(wire.RCODE_NOERROR, answers, extras=pool.records,
                                    extra_of=extra_of), deps)

    def _addr(self, query: wire.Query, parts: list[str], zone: str) -> Resolution:
        text = parts[0] if len(parts) == 1 else ""
        if len(text) not in (8, 32):
            return self._nxdomain(zone, frozenset())
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            return self._nxdomain(zone, frozenset())
        rtype = wire.TYPE_A if len(raw) == 4 else wire.TYPE_AAAA
        if query.qtype not in (rtype, wire.TYPE_ANY):
            return self._nodata(zone, frozenset())
        rec = wire.Record(wire.Name(query.qname), rtype, 0, raw)
        return Resolution(wire.Plan(wire.RCODE_NOERROR, [rec]))

    async def _servers(self, dc: str, zone: str) -> tuple[list[wire.Record], list[wire.Record],
                                                         list[tuple[int, ...]], set[str]]:
        deps = {dep_name(CONSUL_SERVICE)}
        pool = _Pool()
        ns: list[wire.Record] = []
        extra_of: list[tuple[int, ...]] = []
        nodes = await self.view.nodes()
        for registered in await self.view.service_names(CONSUL_SERVICE):
            deps.add(dep_service(registered))
            for entry in await self.view.service(registered):
                if self._passing(entry) is None:
                    continue
                deps.add(dep_node(entry[0].node.lower()))
                node = nodes.get(entry[0].node.lower(), entry[0])
                target = wire.Name(f"{node.node}.node.{dc}.{zone}")
                ns.append(wire.Record(wire.Name(zone), wire.TYPE_NS, self.settings.node_ttl,
                                      target))
                glue = _address_record(target, node.address, wire.TYPE_ANY,
                                       self.settings.node_ttl)
                extra_of.append((pool.add(glue),) if glue is not None else ())
        return ns, pool.records, extra_of, deps

    async def _apex(self, query: wire.Query, zone: str) -> Resolution:
        qtype = query.qtype
        if qtype not in (wire.TYPE_SOA, wire.TYPE_NS, wire.TYPE_ANY):
            return self._nodata(zone, frozenset())
        ns, glue, extra_of, deps = await self._servers(self.settings.datacenter, zone)
        frozen = frozenset(deps)
        if qtype == wire.TYPE_NS:
            if not ns:
                return self._nodata(zone, frozen)
            return Resolution(wire.Plan(wire.RCODE_NOERROR, ns, extras=glue, extra_of=extra_of,
                                        shuffle=True, answer_limit=MAX_NS), frozen)
        soa = self._soa(zone)
        if qtype == wire.TYPE_ANY:
            return Resolution(wire.Plan(
                wire.RCODE_NOERROR, [soa, *ns[:MAX_NS]], extras=glue,
                extra_of=[(), *extra_of[:MAX_NS]], soa_now=True), frozen)
        # SOA: the servers go in the authority section, their glue in additional
        plan = wire.Plan(wire.RCODE_NOERROR, [soa], authority=ns[:MAX_NS],
                         extras=glue[:MAX_NS] if glue else None,
                         extra_of=[tuple(range(len(glue[:MAX_NS])))], soa_now=True)
        return Resolution(plan, frozen)

    async def _reverse(self, query: wire.Query, name: str) -> Resolution:
        ip = _reverse_ip(name)
        zone = self.settings.domain
        dc = self.settings.datacenter
        if ip is not None:
            text = str(ip)
            hits = [n for n in (await self.view.nodes()).values() if _same_ip(n.address, ip)]
            owner = wire.Name(query.qname)
            if hits:
                answers = [wire.Record(owner, wire.TYPE_PTR, 0,
                                       wire.Name(f"{n.node}.node.{dc}.{zone}"))
                           for n in sorted(hits, key=lambda n: n.node)]
                return self._ptr_plan(query, answers, zone, frozenset((DEP_NODES,)))
            found: list[wire.Record] = []
            for service in await self.view.all_service_names():
                for _, svc, _ in await self.view.service(service):
                    if svc.address and (svc.address == text or _same_ip(svc.address, ip)):
                        found.append(wire.Record(owner, wire.TYPE_PTR, 0, wire.Name(
                            f"{svc.service}.service.{dc}.{zone}")))
                        break
            if found:
                return self._ptr_plan(query, found, zone, None)
        if self.recursors:
            return FORWARD
        return self._nxdomain(zone, None)

    def _ptr_plan(self, query: wire.Query, answers: list[wire.Record], zone: str,
                  deps: frozenset[str] | None) -> Resolution:
        if query.qtype not in (wire.TYPE_PTR, wire.TYPE_ANY):
            return self._nodata(zone, deps)
        return Resolution(wire.Plan(wire.RCODE_NOERROR, answers), deps)


class _Pool:
    """Additional-section records shared by answers, each kept once."""

    def __init__(self) -> None:
        self.records: list[wire.Record] = []
        self._index: dict[tuple[str, int, object], int] = {}

    def add(self, rec: wire.Record) -> int:
        key = (rec.name.text.lower(), rec.rtype, _rdata_key(rec.rdata))
        found = self._index.get(key)
        if found is None:
            found = self._index[key] = len(self.records)
            self.records.append(rec)
        return found


def _rdata_key(rdata: object) -> object:
    if isinstance(rdata, tuple):
        return tuple(_rdata_key(x) for x in rdata)
    text = getattr(rdata, "text", None)
    return text.lower() if isinstance(text, str) else rdata


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


def _same_ip(address: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return _ip(address) == ip


def _address_record(owner: wire.Name, address: str, qtype: int, ttl: int) -> wire.Record | None:
    """An A, AAAA or (for a hostname) CNAME record for `address` if it suits `qtype`."""
    ip = _ip(address)
    if ip is None:
        if not address:
            return None
        try:
            return wire.Record(owner, wire.TYPE_CNAME, ttl, wire.Name(address.rstrip(".")))
        except DNSFormatError:
            return None
    if ip.version == 4 and qtype in (wire.TYPE_A, wire.TYPE_ANY):
        return wire.Record(owner, wire.TYPE_A, ttl, ip.packed)
    if ip.version == 6 and qtype in (wire.TYPE_AAAA, wire.TYPE_ANY):
        return wire.Record(owner, wire.TYPE_AAAA, ttl, ip.packed)
    return None


def _unique_nodes(picked: list[tuple[Node, NodeService, bool]]) -> list[Node]:
    seen: dict[str, Node] = {}
    for node, _, _ in picked:
        seen.setdefault(node.node, node)
    return list(seen.values())


def _meta_txt(owner: wire.Name, node: Node, ttl: int) -> list[wire.Record]:
    """Node meta as RFC 1464 TXT records, one per key (keys `rfc1035-*` as their raw value)."""
    out = []
    for key in sorted(node.meta):
        text = encode_meta(key, node.meta[key]).encode()
        chunks = tuple(text[i:i + 255] for i in range(0, len(text), 255)) or (b"",)
        out.append(wire.Record(owner, wire.TYPE_TXT, ttl, chunks))
    return out


def encode_meta(key: str, value: str) -> str:
    """RFC 1464 `key=value`: `=`, backquote and leading/trailing spaces in the key are
    escaped with a backquote; `rfc1035-` keys are emitted as the bare value."""
    if key.startswith("rfc1035-"):
        return value
    escaped = key.replace("`", "``").replace("=", "`=")
    stripped = escaped.lstrip(" ")
    lead = len(escaped) - len(stripped)
    core = stripped.rstrip(" ")
    trail = len(stripped) - len(core)
    return "` " * lead + core + "` " * trail + "=" + value


def _reverse_ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if name.endswith(".in-addr.arpa"):
        octets = name[: -len(".in-addr.arpa")].split(".")
        if len(octets) != 4:
            return None
        try:
            return ipaddress.IPv4Address(".".join(reversed(octets)))
        except ValueError:
            return None
    nibbles = name[: -len(".ip6.arpa")].split(".")
    if len(nibbles) != 32 or any(len(n) != 1 for n in nibbles):
        return None
    try:
        return ipaddress.IPv6Address(bytes.fromhex("".join(reversed(nibbles))))
    except ValueError:
        return None

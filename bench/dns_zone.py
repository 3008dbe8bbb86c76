"""The data bench/dns_load.py serves from both sides, and a small stdlib DNS probe.

One service `web` with `INSTANCES` instances, each on its own node `node-XXX` (address
10.0.x.y, port 8080+i, no checks): registered in our agent's catalog with
`catalog_registrations()`, written for NSD as the zone `consul.` with `zone_text()` holding the
same records our agent answers (`web.service.consul.` A, `_web._tcp.service.consul.` SRV
`1 1 <port> node-XXX.node.dc1.consul.` and the nodes' A records, TTL 0, a SOA).

`probe()` sends one query over UDP or TCP and returns the header facts the report compares
(rcode, TC, section counts, size), so the bench needs no `dig`.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass

INSTANCES = 100
SERVICE = "web"
DATACENTER = "dc1"
DOMAIN = "consul"
BASE_PORT = 8080

QTYPE_A = 1
QTYPE_SRV = 33
QTYPE_OPT = 41
QTYPES = {"A": QTYPE_A, "SRV": QTYPE_SRV}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


@dataclass(frozen=True)
class Instance:
    node: str
    address: str
    port: int


def instances(count: int = INSTANCES) -> list[Instance]:
    """node-000 .. node-NNN with addresses 10.0.x.y (never 0 or 255 in the last byte)."""
    return [Instance(f"node-{i:03d}", f"10.0.{i // 250}.{i % 250 + 1}", BASE_PORT + i)
            for i in range(count)]


def catalog_registrations(items: list[Instance]) -> list[dict[str, object]]:
    """Bodies for PUT /v1/catalog/register, one node with one `web` instance each."""
    return [{"Datacenter": DATACENTER, "Node": inst.node, "Address": inst.address,
             "Service": {"ID": f"{SERVICE}-{inst.node}", "Service": SERVICE,
                         "Port": inst.port}}
            for inst in items]


def zone_text(items: list[Instance]) -> str:
    """The zone `consul.` for NSD with the records our agent answers for the same catalog."""
    origin = f"{DOMAIN}."
    lines = [f"$ORIGIN {origin}", "$TTL 0",
             f"@ IN SOA ns.{origin} hostmaster.{origin} 1 3600 600 86400 0",
             f"@ IN NS ns.{origin}",
             "ns IN A 127.0.0.1"]
    for inst in items:
        lines.append(f"{SERVICE}.service IN A {inst.address}")
    for inst in items:
        target = f"{inst.node}.node.{DATACENTER}.{origin}"
        lines.append(f"_{SERVICE}._tcp.service IN SRV 1 1 {inst.port} {target}")
    for inst in items:
        lines.append(f"{inst.node}.node.{DATACENTER} IN A {inst.address}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- probe


@dataclass(frozen=True)
class Answer:
    rcode: str
    truncated: bool
    answers: int
    authority: int
    additional: int
    size: int

    def text(self) -> str:
        flags = " TC" if self.truncated else ""
        return (f"{self.rcode}{flags} an={self.answers} ns={self.authority} "
                f"ar={self.additional} {self.size} B")


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        out += bytes([len(raw)]) + raw
    return out + b"\x00"


def build_query(name: str, qtype: int, edns_size: int | None, ident: int) -> bytes:
    """A query with RD set, as dnsperf sends it; with an OPT record advertising `edns_size`."""
    header = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 1 if edns_size else 0)
    question = _encode_name(name) + struct.pack("!HH", qtype, 1)
    opt = b""
    if edns_size:
        opt = b"\x00" + struct.pack("!HHIH", QTYPE_OPT, edns_size, 0, 0)
    return header + question + opt


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise OSError("connection closed before the whole answer")
        data += chunk
    return data


def probe(port: int, name: str, qtype: str, edns_size: int | None = None,
          timeout: float = 1.0, host: str = "127.0.0.1", tcp: bool = False) -> Answer:
    """One query over UDP (or TCP); raises OSError (TimeoutError included) when nothing valid
    comes back."""
    ident = int.from_bytes(os.urandom(2), "big")
    packet = build_query(name, QTYPES[qtype], edns_size, ident)
    if tcp:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(struct.pack("!H", len(packet)) + packet)
            (length,) = struct.unpack("!H", _recv_exact(conn, 2))
            data = _recv_exact(conn, length)
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(packet, (host, port))
            while True:
                data, _ = sock.recvfrom(65535)
                if len(data) >= 12 and struct.unpack("!H", data[:2])[0] == ident:
                    break
    if len(data) < 12 or struct.unpack("!H", data[:2])[0] != ident:
        raise OSError(f"answer to {name} {qtype} does not match the query")
    _, flags, _qd, an, ns, ar = struct.unpack("!HHHHHH", data[:12])
    if not flags & 0x8000:
        raise OSError(f"answer to {name} {qtype} is not a response")
    rcode = flags & 0x000F
    return Answer(RCODES.get(rcode, str(rcode)), bool(flags & 0x0200), an, ns, ar, len(data))

"""UDP checks with Consul's lenient semantics.

UDP has no handshake, so silence cannot be told apart from a healthy server that does not
answer. Consul therefore treats a reply *or a read timeout* as passing and only an error the
kernel reports back (ICMP port unreachable → connection refused, a failed send) as critical.
Consul's message is empty, so the probe is a zero-length datagram on a connected socket (the
connection is what lets the kernel hand the ICMP error back to this socket).
"""

from __future__ import annotations

import asyncio
import os
import socket

from .monitor import IntervalCheck
from .tcp import go_dial_error, split_host_port

DEFAULT_TIMEOUT = 10.0


def _reason(exc: OSError) -> str:
    return (os.strerror(exc.errno) if exc.errno else str(exc)).lower()


class UDPCheck(IntervalCheck):
    default_timeout = DEFAULT_TIMEOUT
    #: what is sent; Consul's agent leaves the message empty
    message = b""

    async def probe(self) -> tuple[str, str]:
        addr = self.defn.udp
        success = f"UDP connect {addr}: Success"
        loop = asyncio.get_running_loop()
        try:
            host, port = split_host_port(addr)
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except (ValueError, OSError) as exc:
            return "critical", go_dial_error("udp", addr, exc)
        family, kind, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, sockaddr)
            except OSError as exc:
                return "critical", go_dial_error("udp", addr, exc)
            local = sock.getsockname()
            local_text = f"{local[0]}:{local[1]}"
            try:
                sock.send(self.message)
            except OSError as exc:
                return "critical", f"write udp {local_text}->{addr}: write: {_reason(exc)}"
            try:
                await asyncio.wait_for(loop.sock_recv(sock, 1), self.timeout)
            except TimeoutError:
                return "passing", success
            except OSError as exc:
                return "critical", f"read udp {local_text}->{addr}: read: {_reason(exc)}"
            return "passing", success
        finally:
            sock.close()

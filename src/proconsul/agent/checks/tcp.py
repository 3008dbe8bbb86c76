"""TCP checks, plus the Go-shaped network error text other probes reuse.

Consul puts Go's error string in a failing check's Output (`dial tcp 10.0.0.1:80: connect:
connection refused`); dashboards and alert rules match on it, so Python exceptions are
rendered in that shape rather than as Python reprs.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl

from .base import CheckDefinition
from .monitor import IntervalCheck

DEFAULT_TIMEOUT = 10.0


def split_host_port(addr: str) -> tuple[str, int]:
    """Split `host:port` / `[v6]:port` as Go's net.SplitHostPort accepts them."""
    if addr.startswith("["):
        host, sep, rest = addr[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"address {addr}: missing port in address")
        port = rest[1:]
    else:
        host, sep, port = addr.rpartition(":")
        if not sep:
            raise ValueError(f"address {addr}: missing port in address")
        if ":" in host:
            raise ValueError(f"address {addr}: too many colons in address")
    try:
        return host, int(port)
    except ValueError:
        raise ValueError(f"address {addr}: invalid port") from None


def _strerror(exc: OSError) -> str:
    # asyncio's connect errors carry their own prose as strerror; Go prints the errno's text
    if exc.errno:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


def go_dial_error(network: str, addr: str, exc: BaseException) -> str:
    """Render a failed connect the way Go's net.Dial reports it."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"dial {network} {addr}: i/o timeout"
    if isinstance(exc, socket.gaierror):
        host = addr.rpartition(":")[0].strip("[]")
        return f"dial {network}: lookup {host}: no such host"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"tls: failed to verify certificate: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or str(exc)).lower().replace("_", " ")
        return f"remote error: tls: {reason}"
    if isinstance(exc, ValueError):
        return f"dial {network}: {exc}"
    if isinstance(exc, OSError):
        return f"dial {network} {addr}: connect: {_strerror(exc)}"
    return f"dial {network} {addr}: {exc}"


def tls_client_context(skip_verify: bool) -> ssl.SSLContext:
    """A client context honouring TLSSkipVerify (no CA check and no name check when set)."""
    ctx = ssl.create_default_context()
    if skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close without letting a peer that vanished mid-close turn success into failure."""
    writer.close()
    try:
        await writer.wait_closed()
    except (OSError, ssl.SSLError):
        pass


class TCPCheck(IntervalCheck):
    """Passing when a connection (and, with TCPUseTLS, a handshake) succeeds."""

    default_timeout = DEFAULT_TIMEOUT
    _tls: ssl.SSLContext | None = None

    async def probe(self) -> tuple[str, str]:
        defn: CheckDefinition = self.defn
        addr = defn.tcp
        kind = "TCP+TLS" if defn.tcp_use_tls else "TCP"
        try:
            host, port = split_host_port(addr)
        except ValueError as exc:
            return "critical", go_dial_error("tcp", addr, exc)
        if defn.tcp_use_tls and self._tls is None:
            # one context per check: loading the CA bundle costs more than the probe itself
            self._tls = tls_client_context(defn.tls_skip_verify)
        ctx = self._tls if defn.tcp_use_tls else None
        server_name = (defn.tls_server_name or host) if ctx is not None else None
        try:
            async with asyncio.timeout(self.timeout):
                _, writer = await asyncio.open_connection(
                    host, port, ssl=ctx, server_hostname=server_name)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            return "critical", go_dial_error("tcp", addr, exc)
        await close_writer(writer)
        return "passing", f"{kind} connect {addr}: Success"

"""Free ports on 127.0.0.1 for the processes a bench starts (never fixed ports).

Bench scripts run as files, so `bench/` is on sys.path and they `import ports`. Gossip and DNS
listen on TCP and UDP at the same port, hence `free_dual_port`; HTTP and the server port need
TCP only.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_dual_port() -> int:
    """A port free for both TCP and UDP (gossip and DNS bind both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise OSError("no port free for both TCP and UDP")

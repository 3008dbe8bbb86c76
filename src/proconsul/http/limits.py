"""The size and time bounds of the HTTP server, in one value the agent builds from its config.

They exist so that a client can neither exhaust memory (header and body sizes, pipelined
requests, connections per address) nor hold connections open for free (header, body and idle
timeouts). The defaults are Consul's: Go's 1 MiB DefaultMaxHeaderBytes, 200 connections per
client address (`limits.http_max_conns_per_client`), and gzip on every route.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HttpLimits"]


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Bounds applied to every connection; timeouts are seconds.

    Read timeouts only run while the server waits for the client: a handler that blocks for
    minutes on a long poll does not count against them.
    """

    #: Largest request head (request line and headers); more is answered 431 and closed.
    max_header_bytes: int = 1 << 20
    #: Time to receive a whole head, counted from the connection's start or the head's first byte.
    header_timeout: float = 10.0
    #: Time the body of one request may take to arrive.
    body_timeout: float = 60.0
    #: Time a keep-alive connection may sit between requests, and time a client may leave
    #: answers unread while the socket's buffer is full.
    idle_timeout: float = 90.0
    #: After an answer that ends the connection, time allowed for the client to read it and
    #: close, while its further bytes are read and dropped (closing on unread bytes would send
    #: a reset that can destroy the answer).
    linger_timeout: float = 2.0
    #: After the client half-closes, time a running handler is left to finish before it is
    #: cancelled as abandoned.
    eof_grace: float = 1.0
    #: Parsed requests waiting behind the running one before the connection stops reading.
    max_pipelined: int = 16
    #: Open connections allowed from one client address; 0 means no limit.
    max_conns_per_client: int = 200
    #: Compress bodies for clients that accept gzip, as Consul does on every route.
    gzip: bool = True
    #: zlib level for those bodies (6 is what Go's gzip.DefaultCompression means).
    gzip_level: int = 6
    #: Smaller bodies go out as they are: Consul's gzip handler uses gziphandler's default
    #: minimum of 1400 bytes (below one packet, compressing saves nothing).
    gzip_min_size: int = 1400
    #: Run each handler inside the read callback until it first waits, so that answers which
    #: need no waiting skip two trips through the event loop (about a third more requests per
    #: second). Until that first wait no task is current, so the handler must not use
    #: task-bound APIs (asyncio.timeout, TaskGroup, current_task) before awaiting something.
    #: From Python 3.12 handlers always start eagerly inside their own task and this is unused.
    eager_handlers: bool = False

    def sweep_interval(self) -> float:
        """How often the timeout sweep runs: a fraction of the shortest timeout, in [0.02, 1]."""
        shortest = min(
            self.header_timeout,
            self.body_timeout,
            self.idle_timeout,
            self.linger_timeout,
            self.eof_grace,
        )
        return max(0.02, min(1.0, shortest / 4))

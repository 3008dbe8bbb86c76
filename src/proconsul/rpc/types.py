"""The byte a connection to the server RPC port opens with (Consul's agent/pool/conn.go).

The numbers are fixed by the wire: a Consul agent dialling us writes one of them first.
"""

from __future__ import annotations

from enum import IntEnum


class RPCType(IntEnum):
    CONSUL = 0
    RAFT = 1
    #: the old muxado multiplexer; no longer accepted
    MULTIPLEX = 2
    TLS = 3
    MULTIPLEX_V2 = 4
    SNAPSHOT = 5
    GOSSIP = 6
    TLS_INSECURE = 7
    GRPC = 8

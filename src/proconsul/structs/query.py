"""Options every read carries and the metadata every read answers with (Consul's
structs.QueryOptions and structs.QueryMeta)."""

from __future__ import annotations

from dataclasses import dataclass

CONSISTENCY_LEADER = "leader"
CONSISTENCY_CONSISTENT = "consistent"
CONSISTENCY_STALE = "stale"


@dataclass(slots=True)
class QueryOptions:
    datacenter: str = ""
    token: str = ""
    min_query_index: int = 0
    #: seconds; 0 means the server's default_query_time
    max_query_time: float = 0.0
    allow_stale: bool = False
    require_consistent: bool = False
    #: seconds; > 0 bounds how stale a stale read may be
    max_stale: float = 0.0
    filter: str = ""


@dataclass(slots=True)
class QueryMeta:
    index: int = 0
    #: milliseconds since the answering server last heard from the leader
    last_contact_ms: int = 0
    known_leader: bool = True
    #: set only by endpoints that report it (catalog, health); KV and sessions do not
    consistency_level: str = ""


@dataclass(slots=True)
class WriteRequest:
    datacenter: str = ""
    token: str = ""

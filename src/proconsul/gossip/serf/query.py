"""Serf queries: what a requester sets, collects and waits for, and what a responder may answer
(mirrors hashicorp/serf serf/query.go).

A query is gossiped like an event, but every member that passes its filters may ack it and answer
once, straight back to the requester by UDP, before its deadline. Responses can also be relayed
through a few random members, so one lossy path does not lose the answer.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from proconsul.errors import GossipError
from proconsul.gossip.serf import codec
from proconsul.gossip.serf.messages import NodeFilter, QueryResponse, TagFilter

__all__ = ["NodeResponse", "QueryEvent", "QueryParam", "QueryResponseCollector",
           "default_query_timeout", "should_process"]


def default_query_timeout(gossip_interval: float, mult: int, n: int) -> float:
    """GossipInterval x QueryTimeoutMult x ceil(log10(n + 1)) (serf DefaultQueryTimeout)."""
    return gossip_interval * mult * max(1, math.ceil(math.log10(n + 1)))


@dataclass
class QueryParam:
    """How to run a query: filters (all must pass), acks, relaying, and the timeout (0 means
    Serf's default for the pool's size)."""

    filter_nodes: list[str] = field(default_factory=list)
    filter_tags: dict[str, str] = field(default_factory=dict)
    request_ack: bool = False
    relay_factor: int = 0
    timeout: float = 0.0

    def encode_filters(self) -> list[bytes] | None:
        out: list[bytes] = []
        if self.filter_nodes:
            out.append(codec.encode_filter(NodeFilter(list(self.filter_nodes))))
        for tag, expr in self.filter_tags.items():
            out.append(codec.encode_filter(TagFilter(tag, expr)))
        return out or None


def should_process(filters: list[bytes] | None, name: str, tags: dict[str, str]) -> bool:
    """Whether this member passes every filter of a query; an unknown filter fails it."""
    for raw in filters or ():
        try:
            filt = codec.decode_filter(raw)
        except GossipError:
            return False
        if isinstance(filt, NodeFilter):
            if name not in filt.nodes:
                return False
        else:
            try:
                if re.search(filt.expr, tags.get(filt.tag, "")) is None:
                    return False
            except re.error:
                return False
    return True


@dataclass
class NodeResponse:
    from_: str
    payload: bytes


class QueryResponseCollector:
    """The requester's side: acks and responses as they arrive, each member counted once,
    until the deadline closes both streams."""

    def __init__(self, ltime: int, qid: int, deadline: float, request_ack: bool,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.ltime = ltime
        self.id = qid
        self.deadline = deadline
        self.request_ack = request_ack
        self.acks: asyncio.Queue[str | None] = asyncio.Queue()
        self.responses: asyncio.Queue[NodeResponse | None] = asyncio.Queue()
        self._acked: set[str] = set()
        self._answered: set[str] = set()
        self._closed = False
        self._timer = loop.call_at(deadline, self.close)

    @property
    def finished(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._timer.cancel()
        self.acks.put_nowait(None)
        self.responses.put_nowait(None)

    def deliver(self, resp: QueryResponse) -> None:
        if self._closed:
            return
        if resp.ack:
            if self.request_ack and resp.from_ not in self._acked:
                self._acked.add(resp.from_)
                self.acks.put_nowait(resp.from_)
        elif resp.from_ not in self._answered:
            self._answered.add(resp.from_)
            self.responses.put_nowait(NodeResponse(resp.from_, resp.payload or b""))


class QueryEvent:
    """A query as delivered to the application; `respond` answers it once before its
    deadline."""

    def __init__(self, ltime: int, qid: int, name: str, payload: bytes, deadline: float,
                 send: Callable[[QueryResponse], None], now: Callable[[], float],
                 size_limit: int, source_node: str) -> None:
        self.ltime = ltime
        self.id = qid
        self.name = name
        self.payload = payload
        self.deadline = deadline
        self.source_node = source_node
        self._send = send
        self._now = now
        self._size_limit = size_limit
        self._responded = False

    def respond(self, payload: bytes) -> None:
        """Answer the query; the sender fills in this member's name."""
        if self._responded:
            raise GossipError("response already sent")
        if self._now() > self.deadline:
            raise GossipError("response is past the deadline")
        resp = QueryResponse(self.ltime, self.id, "", 0, payload)
        raw = codec.encode(resp)
        if len(raw) > self._size_limit:
            raise GossipError(f"response exceeds limit of {self._size_limit} bytes")
        self._responded = True
        self._send(resp)

"""The path every Serf event takes to the application (serf's chain of event channels built in
hashicorp/serf `serf/serf.go` Create).

serf hands each event to a stack of stages, in this order:

1. the snapshot, which records member changes and the user-event and query Lamport times, so
   it sees every query that passed the filters, internal ones included;
2. the internal-query handler (`SerfDelegate.dispatch_query`), which answers `_serf_*`
   queries, keeps them from the application and forwards the rest;
3. the user-event coalescer (`user_coalesce_period` / `user_quiescent_period`), which holds
   events sent with coalescing allowed and passes everything else on;
4. the member-event coalescer (`coalesce_period` / `quiescent_period`);
5. the application's callback.

A coalescer exists only when both of its periods are positive. Here the stages are plain
calls on the event loop; a coalescer's timer delivers what it held later, through the stages
after it. Closing flushes the coalescers, as serf's coalescing loops do on shutdown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from proconsul.gossip.serf.coalesce import Coalescer, MemberEventCoalescer, UserEventCoalescer
from proconsul.gossip.serf.config import SerfConfig, SerfMember, UserEventRecord
from proconsul.gossip.serf.events import MemberEvent
from proconsul.gossip.serf.query import QueryEvent
from proconsul.gossip.serf.snapshot import Snapshotter

__all__ = ["EventPipeline", "SerfEvent"]

SerfEvent = MemberEvent[SerfMember] | UserEventRecord | QueryEvent


class EventPipeline:
    """Snapshot, internal queries, user-event and member-event coalescing, then `deliver`."""

    def __init__(self, config: SerfConfig, snapshotter: Snapshotter | None,
                 dispatch_query: Callable[[QueryEvent], None],
                 deliver: Callable[[SerfEvent], None]) -> None:
        self.snapshotter = snapshotter
        self._dispatch_query = dispatch_query
        self._deliver = deliver
        self.member_coalescer: MemberEventCoalescer | None = None
        self.user_coalescer: UserEventCoalescer | None = None
        if config.coalesce_period > 0 and config.quiescent_period > 0:
            self.member_coalescer = MemberEventCoalescer(
                self._delivered_batch, config.coalesce_period, config.quiescent_period)
        if config.user_coalesce_period > 0 and config.user_quiescent_period > 0:
            self.user_coalescer = UserEventCoalescer(
                self._user_batch, config.user_coalesce_period, config.user_quiescent_period)

    def feed(self, event: SerfEvent) -> None:
        """Take one event from the Serf state machine."""
        snap = self.snapshotter
        if snap is not None:
            if isinstance(event, MemberEvent):
                snap.record_member_event(event)
            elif isinstance(event, UserEventRecord):
                snap.user_event(event.ltime)
            else:
                snap.query(event.ltime)
        if isinstance(event, QueryEvent):
            self._dispatch_query(event)
        else:
            self.forward(event)

    def forward(self, event: SerfEvent) -> None:
        """The stages after the internal-query handler: coalescing, then the application.
        `dispatch_query` calls this for every query that is not internal."""
        if self.user_coalescer is not None:
            self.user_coalescer.feed(event)
        else:
            self._member_stage(event)

    def _user_batch(self, batch: list[object]) -> None:
        for event in batch:
            self._member_stage(event)

    def _member_stage(self, event: object) -> None:
        if self.member_coalescer is not None:
            self.member_coalescer.feed(event)
        else:
            self._deliver(cast(SerfEvent, event))

    def _delivered_batch(self, batch: list[object]) -> None:
        for event in batch:
            self._deliver(cast(SerfEvent, event))

    @property
    def coalescers(self) -> list[Coalescer]:
        """The coalescers in the order events pass through them."""
        return [c for c in (self.user_coalescer, self.member_coalescer) if c is not None]

    def close(self) -> None:
        """Deliver whatever the coalescers hold; later events pass straight through."""
        for coalescer in self.coalescers:
            coalescer.close()

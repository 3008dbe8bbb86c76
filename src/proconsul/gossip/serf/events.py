"""Member events as Serf hands them to the application (hashicorp/serf `serf/event.go`).

Serf delivers user events as `config.UserEventRecord` (LTime, Name, Payload and the
coalesce flag, Go's `UserEvent` event) and queries as `query.QueryEvent`; this module holds
the member side. A member event may name several members because the member-event coalescer
batches them; it is generic in the member record, which only needs a `name` (the snapshot
also reads `addr` and `port`). Serf hands out copies of its member records, taken when the
change happened, as Go's events carry `Member` values. Event types are the strings handlers
and the agent RPC see ("member-join", ...), so they compare equal to plain strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

__all__ = ["MEMBER_EVENT_TYPES", "EventType", "MemberEvent", "NamedMember"]


class EventType(StrEnum):
    """serf's `EventType`, by the names its `String()` gives."""

    MEMBER_JOIN = "member-join"
    MEMBER_LEAVE = "member-leave"
    MEMBER_FAILED = "member-failed"
    MEMBER_UPDATE = "member-update"
    MEMBER_REAP = "member-reap"
    USER = "user"
    QUERY = "query"


class NamedMember(Protocol):
    """What a member record must offer to be coalesced (`messages.Member` qualifies)."""

    @property
    def name(self) -> str: ...


M = TypeVar("M", bound=NamedMember)

#: The types a MemberEvent can carry.
MEMBER_EVENT_TYPES = frozenset({
    EventType.MEMBER_JOIN, EventType.MEMBER_LEAVE, EventType.MEMBER_FAILED,
    EventType.MEMBER_UPDATE, EventType.MEMBER_REAP,
})


@dataclass(slots=True)
class MemberEvent(Generic[M]):
    """One membership change of `type` affecting `members`."""

    type: EventType
    members: list[M] = field(default_factory=list)

    def __str__(self) -> str:
        return str(self.type)

"""How Raft servers talk (hashicorp/raft transport.go and commands.go).

The messages carry hashicorp/raft's fields; `wire.py` maps them to its msgpack field names.
A Transport sends the four basic RPCs and hands the ones it receives to an RPCHandler (the Raft
server). Capabilities a transport may lack are Protocols of their own, checked at run time:
WithPreVote (RequestPreVote) and WithPipeline (AppendEntries without waiting for each answer).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, runtime_checkable

from proconsul.raft.log import Log

#: the only protocol version spoken (hashicorp/raft ProtocolVersionMax)
PROTOCOL_VERSION = 3


@dataclass(slots=True)
class RPCHeader:
    protocol_version: int = PROTOCOL_VERSION
    #: the sender's server ID and address
    id: str = ""
    addr: str = ""


@dataclass(slots=True)
class AppendEntriesRequest:
    header: RPCHeader
    term: int
    leader: str
    prev_log_entry: int = 0
    prev_log_term: int = 0
    entries: list[Log] = field(default_factory=list)
    leader_commit_index: int = 0

    def is_heartbeat(self) -> bool:
        """A bare keep-alive: it changes no log and no commit index."""
        return (not self.entries and not self.prev_log_entry and not self.prev_log_term
                and not self.leader_commit_index)


@dataclass(slots=True)
class AppendEntriesResponse:
    header: RPCHeader
    term: int
    #: the follower's last log index, a hint for where to resume after a mismatch
    last_log: int
    success: bool
    #: the mismatch is normal (the follower lacks the previous entry); retry without backoff
    no_retry_backoff: bool = False


@dataclass(slots=True)
class RequestVoteRequest:
    header: RPCHeader
    term: int
    candidate: str
    last_log_index: int
    last_log_term: int
    #: set by a candidate a leader asked to take over: voters that still follow that leader
    #: may vote for it
    leadership_transfer: bool = False


@dataclass(slots=True)
class RequestVoteResponse:
    header: RPCHeader
    term: int
    granted: bool


@dataclass(slots=True)
class RequestPreVoteRequest:
    header: RPCHeader
    #: the term the candidate would stand in; nobody's term changes for a pre-vote
    term: int
    last_log_index: int
    last_log_term: int


@dataclass(slots=True)
class RequestPreVoteResponse:
    header: RPCHeader
    term: int
    granted: bool


@dataclass(slots=True)
class InstallSnapshotRequest:
    header: RPCHeader
    term: int
    leader: str
    last_log_index: int
    last_log_term: int
    #: the configuration as of the snapshot, encoded as a CONFIGURATION entry's data
    configuration: bytes
    configuration_index: int
    #: bytes of snapshot state that follow the request on the stream
    size: int
    snapshot_version: int = 1


@dataclass(slots=True)
class InstallSnapshotResponse:
    header: RPCHeader
    term: int
    success: bool


@dataclass(slots=True)
class TimeoutNowRequest:
    header: RPCHeader


@dataclass(slots=True)
class TimeoutNowResponse:
    header: RPCHeader


class RPCHandler(Protocol):
    """The receiving side: the Raft server answers each RPC a transport delivers."""

    async def handle_append_entries(self, req: AppendEntriesRequest) -> AppendEntriesResponse:
        ...

    async def handle_request_vote(self, req: RequestVoteRequest) -> RequestVoteResponse: ...

    async def handle_request_pre_vote(
        self, req: RequestPreVoteRequest
    ) -> RequestPreVoteResponse: ...

    async def handle_install_snapshot(
        self, req: InstallSnapshotRequest, data: AsyncIterator[bytes]
    ) -> InstallSnapshotResponse:
        """`data` yields exactly `req.size` bytes of state unless the stream breaks."""
        ...

    async def handle_timeout_now(self, req: TimeoutNowRequest) -> TimeoutNowResponse: ...


class Transport(Protocol):
    """Sends RPCs to peers named by (server ID, address); raises TransportError when no answer
    comes back."""

    def local_addr(self) -> str: ...

    def set_handler(self, handler: RPCHandler | None) -> None:
        """Where received RPCs go; None refuses them (a server that is not running)."""
        ...

    async def append_entries(
        self, server_id: str, target: str, req: AppendEntriesRequest
    ) -> AppendEntriesResponse: ...

    async def request_vote(
        self, server_id: str, target: str, req: RequestVoteRequest
    ) -> RequestVoteResponse: ...

    async def install_snapshot(
        self, server_id: str, target: str, req: InstallSnapshotRequest, data: BinaryIO
    ) -> InstallSnapshotResponse:
        """Send the request, then stream `req.size` bytes read from `data`."""
        ...

    async def timeout_now(
        self, server_id: str, target: str, req: TimeoutNowRequest
    ) -> TimeoutNowResponse: ...

    async def close(self) -> None: ...


@runtime_checkable
class WithPreVote(Protocol):
    async def request_pre_vote(
        self, server_id: str, target: str, req: RequestPreVoteRequest
    ) -> RequestPreVoteResponse: ...


class AppendPipeline(Protocol):
    """AppendEntries to one follower, sent back to back; answers come in request order."""

    async def append_entries(
        self, req: AppendEntriesRequest
    ) -> asyncio.Future[AppendEntriesResponse]:
        """Send `req` (waiting only while too many are in flight) and return the future of its
        answer, which fails with TransportError if the pipeline breaks."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class WithPipeline(Protocol):
    async def append_entries_pipeline(self, server_id: str, target: str) -> AppendPipeline:
        ...

"""Errors of the replicated Raft core, worded as hashicorp/raft words them.

The ones that mean "this server cannot commit right now" derive from NoLeader, so the server's
endpoints (which already turn NoLeader into Consul's answer) treat them alike; their text is
raft's own, which is what Consul shows when such an error reaches a client.
"""

from __future__ import annotations

from proconsul.errors import NoLeader, ProconsulError, RPCError


class _NotCommitting(NoLeader):
    message = "No cluster leader"

    def __init__(self) -> None:
        RPCError.__init__(self, self.message)


class NotLeader(_NotCommitting):
    message = "node is not the leader"


class LeadershipLost(_NotCommitting):
    """The entry may still commit under the next leader: the outcome is unknown."""

    message = "leadership lost while committing log"


class AbortedByRestore(_NotCommitting):
    message = "snapshot restored while committing log"


class RaftShutdown(_NotCommitting):
    message = "raft is already shutdown"


class LeadershipTransferInProgress(_NotCommitting):
    message = "leadership transfer in progress"


class CantBootstrap(ProconsulError):
    def __init__(self) -> None:
        super().__init__("bootstrap only works on new clusters")


class ConfigurationError(RPCError):
    """A membership change that would leave an invalid configuration, or raced another."""


class LeadershipTransferError(RPCError):
    """The transfer did not complete; this server is still the leader."""


class TransportError(ProconsulError):
    """An RPC did not get an answer: the peer is unreachable, the connection broke, the peer
    answered with an error, or the transport is closed."""

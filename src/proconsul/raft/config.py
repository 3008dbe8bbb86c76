"""Settings of a replicated Raft server (hashicorp/raft config.go), in seconds.

The defaults are hashicorp/raft's base timings; Consul multiplies the three timeouts by
`performance.raft_multiplier` (`scaled`) and uses its own short timings in -dev (`dev`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(slots=True)
class Config:
    server_id: str
    #: this server's address as peers dial it (the transport's local address)
    address: str
    #: a follower that hears nothing from a leader for this long starts an election
    heartbeat_timeout: float = 1.0
    #: how long a candidate waits for votes before starting over
    election_timeout: float = 1.0
    #: a leader that cannot reach a quorum for this long steps down
    leader_lease_timeout: float = 0.5
    #: longest a follower waits to learn that entries it holds were committed
    commit_timeout: float = 0.05
    #: entries per AppendEntries request
    max_append_entries: int = 64
    #: commands the leader appends to its own log with one write (one fsync)
    max_apply_batch: int = 1024
    #: AppendEntries requests in flight to one follower when pipelining
    max_inflight: int = 8
    #: ask for pre-votes before bumping the term, so a rejoining server cannot depose a
    #: healthy leader
    pre_vote: bool = True
    #: entries applied since the last snapshot that trigger a new one (raft_snapshot_threshold)
    snapshot_threshold: int = 16384
    #: how often the threshold is checked (raft_snapshot_interval)
    snapshot_interval: float = 30.0
    #: entries kept in the log behind a snapshot, for followers that are a little behind
    #: (raft_trailing_logs)
    trailing_logs: int = 10240

    def scaled(self, multiplier: int) -> Config:
        """The timeouts multiplied as Consul's raft_multiplier does."""
        return dataclasses.replace(
            self, heartbeat_timeout=self.heartbeat_timeout * multiplier,
            election_timeout=self.election_timeout * multiplier,
            leader_lease_timeout=self.leader_lease_timeout * multiplier,
        )

    @classmethod
    def dev(cls, server_id: str, address: str) -> Config:
        """Consul -dev's timings: heartbeat 35ms, election 52ms, leader lease 20ms."""
        return cls(server_id, address, heartbeat_timeout=0.035, election_timeout=0.052,
                   leader_lease_timeout=0.020)

    def validate(self) -> None:
        if not self.server_id or not self.address:
            raise ValueError("a Raft server needs an ID and an address")
        if self.heartbeat_timeout <= 0 or self.election_timeout <= 0:
            raise ValueError("heartbeat and election timeouts must be positive")
        if not 0 < self.leader_lease_timeout <= self.heartbeat_timeout:
            raise ValueError("leader_lease_timeout must be positive and at most "
                             "heartbeat_timeout")
        if self.max_append_entries < 1 or self.max_apply_batch < 1 or self.max_inflight < 1:
            raise ValueError("batch and in-flight limits must be at least 1")

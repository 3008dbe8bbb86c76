"""Membership arithmetic and encodings: one change at a time from the latest configuration,
hashicorp/raft's validity rules, the stored form shared with the single-voter node, Go's
duration text in stats, and the wire maps with hashicorp/raft's field names."""

from __future__ import annotations

import msgpack
import pytest

from proconsul.raft import wire
from proconsul.raft.cluster import go_duration
from proconsul.raft.configuration import (
    Change,
    Configuration,
    Server,
    Suffrage,
    check_configuration,
    next_configuration,
)
from proconsul.raft.errors import ConfigurationError
from proconsul.raft.log import Log
from proconsul.raft.transport import (
    AppendEntriesRequest,
    InstallSnapshotRequest,
    RequestVoteRequest,
    RPCHeader,
)

A = Server("a", "10.0.0.1:8300")
B = Server("b", "10.0.0.2:8300")


def test_changes_follow_hashicorp_raft() -> None:
    base = Configuration.of([A])
    two = next_configuration(base, 1, Change.ADD_NONVOTER, "b", B.address)
    assert two.get("b") == Server("b", B.address, Suffrage.NONVOTER)
    assert two.quorum() == 1 and [s.id for s in two.voters()] == ["a"]
    promoted = next_configuration(two, 2, Change.ADD_VOTER, "b", B.address)
    assert promoted.has_vote("b") and promoted.quorum() == 2
    # a non-voter add never takes a vote away, but moves the address
    moved = next_configuration(promoted, 3, Change.ADD_NONVOTER, "b", "10.0.0.9:8300")
    assert moved.get("b") == Server("b", "10.0.0.9:8300", Suffrage.VOTER)
    demoted = next_configuration(promoted, 3, Change.DEMOTE_VOTER, "b")
    assert not demoted.has_vote("b")
    removed = next_configuration(demoted, 4, Change.REMOVE_SERVER, "b")
    assert removed == base
    with pytest.raises(ConfigurationError, match="configuration changed since 2"):
        next_configuration(promoted, 3, Change.REMOVE_SERVER, "b", prev_index=2)
    with pytest.raises(ConfigurationError, match="need at least one voter"):
        next_configuration(base, 1, Change.REMOVE_SERVER, "a")
    with pytest.raises(ConfigurationError, match="duplicate address"):
        next_configuration(base, 1, Change.ADD_VOTER, "c", A.address)
    with pytest.raises(ConfigurationError, match="empty ID"):
        check_configuration(Configuration.of([Server("", "x:1")]))
    with pytest.raises(ConfigurationError, match="empty address"):
        check_configuration(Configuration.of([Server("x", "")]))


def test_stored_form_is_the_single_voter_nodes() -> None:
    conf = Configuration.of([A, Server("b", B.address, Suffrage.NONVOTER)])
    assert conf.to_data() == {"Servers": [
        {"Suffrage": "Voter", "ID": "a", "Address": A.address},
        {"Suffrage": "Nonvoter", "ID": "b", "Address": B.address},
    ]}
    assert Configuration.decode(conf.encode()) == conf
    # hashicorp/raft numbers suffrage; both forms read
    assert Configuration.from_data(
        {"Servers": [{"Suffrage": 1, "ID": "b", "Address": "x:1"}]}
    ).servers[0].suffrage is Suffrage.NONVOTER
    assert conf.go_string() == ("[{Suffrage:Voter ID:a Address:10.0.0.1:8300} "
                                "{Suffrage:Nonvoter ID:b Address:10.0.0.2:8300}]")


def test_go_duration_text() -> None:
    assert go_duration(0) == "0s"
    assert go_duration(0.0000005) == "500ns"
    assert go_duration(0.0123456) == "12.3456ms"
    assert go_duration(1.5) == "1.5s"
    assert go_duration(63.25) == "1m3.25s"
    assert go_duration(3723) == "1h2m3s"


def test_wire_maps_use_hashicorp_field_names() -> None:
    head = RPCHeader(id="a", addr="10.0.0.1:8300")
    req = AppendEntriesRequest(head, 3, "10.0.0.1:8300", 9, 2, [Log(10, 3, 0, b"cmd")], 8)
    packed = msgpack.packb(wire.encode_append_entries(req), use_bin_type=True)
    raw = msgpack.unpackb(packed, raw=True)
    assert set(raw) == {b"ProtocolVersion", b"ID", b"Addr", b"Term", b"Leader",
                        b"PrevLogEntry", b"PrevLogTerm", b"Entries", b"LeaderCommitIndex"}
    assert raw[b"Entries"][0][b"Data"] == b"cmd"
    assert wire.decode_append_entries(raw) == req
    vote = RequestVoteRequest(head, 4, "10.0.0.1:8300", 10, 3, True)
    raw = msgpack.unpackb(msgpack.packb(wire.encode_request_vote(vote)), raw=True)
    assert raw[b"LeadershipTransfer"] is True and wire.decode_request_vote(raw) == vote
    snap = InstallSnapshotRequest(head, 4, "10.0.0.1:8300", 100, 3, b"cfg", 1, 12)
    raw = msgpack.unpackb(msgpack.packb(wire.encode_install_snapshot(snap),
                                        use_bin_type=True), raw=True)
    assert raw[b"SnapshotVersion"] == 1 and wire.decode_install_snapshot(raw) == snap
    with pytest.raises(ValueError, match="Term is not an integer"):
        wire.decode_append_entries({b"Term": b"x"})

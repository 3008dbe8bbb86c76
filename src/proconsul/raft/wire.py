"""The Raft messages on the wire, as hashicorp/raft's NetworkTransport frames them.

A request is one type byte followed by the msgpack map of the request (Go field names; the
RPCHeader's fields inlined at the top level, as go-msgpack inlines an embedded struct). An
answer is the msgpack error string ("" for none) followed by the msgpack map of the response.
InstallSnapshot's request is followed by exactly `Size` bytes of snapshot state. Byte-slice
fields (addresses, IDs, entry data) travel as msgpack bin; maps are read with raw keys.
"""

from __future__ import annotations

from typing import Any

from proconsul.raft.log import Log
from proconsul.raft.transport import (
    AppendEntriesRequest,
    AppendEntriesResponse,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    RequestPreVoteRequest,
    RequestPreVoteResponse,
    RequestVoteRequest,
    RequestVoteResponse,
    RPCHeader,
    TimeoutNowRequest,
    TimeoutNowResponse,
)

# the type byte, hashicorp/raft's numbering
RPC_APPEND_ENTRIES = 0
RPC_REQUEST_VOTE = 1
RPC_INSTALL_SNAPSHOT = 2
RPC_TIMEOUT_NOW = 3
RPC_REQUEST_PRE_VOTE = 4

Wire = dict[str, Any]
Raw = dict[bytes, Any]


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def _int(raw: Raw, key: bytes) -> int:
    value = raw.get(key) or 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"field {key.decode()} is not an integer")
    return value


def _header(header: RPCHeader) -> Wire:
    return {"ProtocolVersion": header.protocol_version, "ID": header.id.encode(),
            "Addr": header.addr.encode()}


def _read_header(raw: Raw) -> RPCHeader:
    return RPCHeader(_int(raw, b"ProtocolVersion"), _text(raw.get(b"ID")),
                     _text(raw.get(b"Addr")))


def decode_error(value: Any) -> str:
    return _text(value)


# -- AppendEntries --------------------------------------------------------------------------

def encode_append_entries(req: AppendEntriesRequest) -> Wire:
    wire = _header(req.header)
    wire.update(
        Term=req.term, Leader=req.leader.encode(), PrevLogEntry=req.prev_log_entry,
        PrevLogTerm=req.prev_log_term,
        Entries=[{"Index": e.index, "Term": e.term, "Type": e.type, "Data": e.data,
                  "Extensions": None} for e in req.entries],
        LeaderCommitIndex=req.leader_commit_index,
    )
    return wire


def decode_append_entries(raw: Raw) -> AppendEntriesRequest:
    entries = []
    for item in raw.get(b"Entries") or ():
        data = item.get(b"Data") or b""
        if not isinstance(data, bytes):
            raise ValueError("log entry data is not bytes")
        entries.append(Log(_int(item, b"Index"), _int(item, b"Term"), _int(item, b"Type"),
                           data))
    return AppendEntriesRequest(
        _read_header(raw), _int(raw, b"Term"), _text(raw.get(b"Leader")),
        _int(raw, b"PrevLogEntry"), _int(raw, b"PrevLogTerm"), entries,
        _int(raw, b"LeaderCommitIndex"),
    )


def encode_append_entries_response(resp: AppendEntriesResponse) -> Wire:
    wire = _header(resp.header)
    wire.update(Term=resp.term, LastLog=resp.last_log, Success=resp.success,
                NoRetryBackoff=resp.no_retry_backoff)
    return wire


def decode_append_entries_response(raw: Raw) -> AppendEntriesResponse:
    return AppendEntriesResponse(_read_header(raw), _int(raw, b"Term"), _int(raw, b"LastLog"),
                                 bool(raw.get(b"Success")), bool(raw.get(b"NoRetryBackoff")))


# -- votes ----------------------------------------------------------------------------------

def encode_request_vote(req: RequestVoteRequest) -> Wire:
    wire = _header(req.header)
    wire.update(Term=req.term, Candidate=req.candidate.encode(),
                LastLogIndex=req.last_log_index, LastLogTerm=req.last_log_term,
                LeadershipTransfer=req.leadership_transfer)
    return wire


def decode_request_vote(raw: Raw) -> RequestVoteRequest:
    return RequestVoteRequest(
        _read_header(raw), _int(raw, b"Term"), _text(raw.get(b"Candidate")),
        _int(raw, b"LastLogIndex"), _int(raw, b"LastLogTerm"),
        bool(raw.get(b"LeadershipTransfer")),
    )


def encode_request_vote_response(resp: RequestVoteResponse) -> Wire:
    wire = _header(resp.header)
    wire.update(Term=resp.term, Peers=None, Granted=resp.granted)
    return wire


def decode_request_vote_response(raw: Raw) -> RequestVoteResponse:
    return RequestVoteResponse(_read_header(raw), _int(raw, b"Term"),
                               bool(raw.get(b"Granted")))


def encode_request_pre_vote(req: RequestPreVoteRequest) -> Wire:
    wire = _header(req.header)
    wire.update(Term=req.term, LastLogIndex=req.last_log_index, LastLogTerm=req.last_log_term)
    return wire


def decode_request_pre_vote(raw: Raw) -> RequestPreVoteRequest:
    return RequestPreVoteRequest(_read_header(raw), _int(raw, b"Term"),
                                 _int(raw, b"LastLogIndex"), _int(raw, b"LastLogTerm"))


def encode_request_pre_vote_response(resp: RequestPreVoteResponse) -> Wire:
    wire = _header(resp.header)
    wire.update(Term=resp.term, Granted=resp.granted)
    return wire


def decode_request_pre_vote_response(raw: Raw) -> RequestPreVoteResponse:
    return RequestPreVoteResponse(_read_header(raw), _int(raw, b"Term"),
                                  bool(raw.get(b"Granted")))


# -- InstallSnapshot ------------------------------------------------------------------------

def encode_install_snapshot(req: InstallSnapshotRequest) -> Wire:
    wire = _header(req.header)
    wire.update(
        SnapshotVersion=req.snapshot_version, Term=req.term, Leader=req.leader.encode(),
        LastLogIndex=req.last_log_index, LastLogTerm=req.last_log_term, Peers=None,
        Configuration=req.configuration, ConfigurationIndex=req.configuration_index,
        Size=req.size,
    )
    return wire


def decode_install_snapshot(raw: Raw) -> InstallSnapshotRequest:
    configuration = raw.get(b"Configuration") or b""
    if not isinstance(configuration, bytes):
        raise ValueError("snapshot configuration is not bytes")
    size = _int(raw, b"Size")
    if size < 0:
        raise ValueError("snapshot size is negative")
    return InstallSnapshotRequest(
        _read_header(raw), _int(raw, b"Term"), _text(raw.get(b"Leader")),
        _int(raw, b"LastLogIndex"), _int(raw, b"LastLogTerm"), configuration,
        _int(raw, b"ConfigurationIndex"), size, _int(raw, b"SnapshotVersion"),
    )


def encode_install_snapshot_response(resp: InstallSnapshotResponse) -> Wire:
    wire = _header(resp.header)
    wire.update(Term=resp.term, Success=resp.success)
    return wire


def decode_install_snapshot_response(raw: Raw) -> InstallSnapshotResponse:
    return InstallSnapshotResponse(_read_header(raw), _int(raw, b"Term"),
                                   bool(raw.get(b"Success")))


# -- TimeoutNow -----------------------------------------------------------------------------

def encode_timeout_now(req: TimeoutNowRequest) -> Wire:
    return _header(req.header)


def decode_timeout_now(raw: Raw) -> TimeoutNowRequest:
    return TimeoutNowRequest(_read_header(raw))


def encode_timeout_now_response(resp: TimeoutNowResponse) -> Wire:
    return _header(resp.header)


def decode_timeout_now_response(raw: Raw) -> TimeoutNowResponse:
    return TimeoutNowResponse(_read_header(raw))

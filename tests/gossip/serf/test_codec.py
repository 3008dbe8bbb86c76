"""Serf messages: every one captured from serf 0.9.4 decodes to the values the manifest shows
and re-encodes to the same bytes; filters, relays, keyring payloads, push/pull user state and
tags likewise; malformed input only ever raises GossipFormatError."""

from __future__ import annotations

import base64
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proconsul.errors import GossipFormatError
from proconsul.gossip import codec as memberlist_codec
from proconsul.gossip.serf import codec
from proconsul.gossip.serf.codec import (
    TAGS_TOO_LARGE,
    decode,
    decode_filter,
    decode_relay,
    decode_tags,
    encode,
    encode_filter,
    encode_relay,
    encode_tags,
)
from proconsul.gossip.serf.messages import (
    MESSAGE_TYPE_NAMES,
    QUERY_FLAG_ACK,
    QUERY_FLAG_NO_BROADCAST,
    STATUS_ALIVE,
    ConflictResponse,
    Join,
    KeyRequest,
    KeyResponse,
    Leave,
    Member,
    NodeFilter,
    PushPull,
    Query,
    QueryResponse,
    Relay,
    RelayHeader,
    TagFilter,
    UDPAddr,
    UserEvent,
    UserEventEntry,
    UserEvents,
)
from tests.gossip.serf.vectors import VECTORS, files, go_view, push_pulls, serf_messages

SERF_MESSAGES = serf_messages()
PUSH_PULLS = push_pulls()


def test_captures_cover_every_gossiped_type() -> None:
    kinds = {entry["serf_type"] for _, entry in SERF_MESSAGES}
    assert kinds == {"join", "leave", "userEvent", "query", "queryResponse", "relay"}
    assert len(PUSH_PULLS) == 22


@pytest.mark.parametrize(("name", "entry"), SERF_MESSAGES,
                         ids=[f"{name}:{i}" for i, (name, _) in enumerate(SERF_MESSAGES)])
def test_captured_message_decodes_and_reencodes(name: str, entry: dict[str, Any]) -> None:
    raw = bytes.fromhex(entry["raw_hex"])
    msg = decode(raw)
    assert MESSAGE_TYPE_NAMES[raw[0]] == entry["serf_type"]
    assert encode(msg) == raw
    if isinstance(msg, Relay):
        header = go_view(msg.header)
        assert header == entry["relay_header"]
        inner = entry["inner"]
        assert msg.message.hex() == inner["raw_hex"]
        assert go_view(decode(msg.message)) == inner["body"]
        assert encode_relay(msg.header, encode(decode(msg.message))) == raw
        return
    assert go_view(msg) == entry["body"]


def test_captured_query_annotations() -> None:
    """Filters, flags and keyring payloads inside queries decode as the manifest says."""
    seen_filters = seen_keys = 0
    for _, entry in SERF_MESSAGES:
        if entry["serf_type"] != "query":
            continue
        query = decode(bytes.fromhex(entry["raw_hex"]))
        assert isinstance(query, Query)
        notes = entry["annotations"]
        assert query.ack == ("ack" in notes["Flags"])
        assert not query.no_broadcast
        assert query.timeout == int(notes["Timeout_s"] * 1e9)
        expected_filters = []
        for note in notes["Filters"]:
            if note["filter"] == "node":
                expected_filters.append(NodeFilter(note["nodes"]))
            else:
                expected_filters.append(TagFilter(note["value"]["Tag"], note["value"]["Expr"]))
        decoded = [decode_filter(raw) for raw in query.filters or ()]
        assert decoded == expected_filters
        assert [encode_filter(f) for f in decoded] == (query.filters or [])
        seen_filters += bool(decoded)
        payload_note = notes.get("Payload")
        if isinstance(payload_note, dict) and payload_note.get("serf_type") == "keyRequest":
            assert query.payload is not None
            request = decode(query.payload)
            assert isinstance(request, KeyRequest)
            assert go_view(request) == payload_note["body"]
            assert encode(request) == query.payload
            seen_keys += 1
    assert seen_filters >= 3
    assert seen_keys >= 4


def test_relay_factor_and_relays_match_queries() -> None:
    relayed = [entry for _, entry in SERF_MESSAGES
               if entry["serf_type"] == "query" and entry["body"]["RelayFactor"] == 1]
    assert relayed
    relays = [decode(bytes.fromhex(e["raw_hex"])) for _, e in SERF_MESSAGES
              if e["serf_type"] == "relay"]
    assert relays
    for relay in relays:
        assert isinstance(relay, Relay)
        inner = decode(relay.message)
        assert isinstance(inner, QueryResponse)
        # relayed answers go back to the node that asked, by its query's address
        origin = [q for q in relayed if q["body"]["ID"] == inner.id]
        assert origin and origin[0]["body"]["SourceNode"] == relay.header.dest_name
        assert origin[0]["body"]["Port"] == relay.header.dest_addr.port


def test_captured_key_responses() -> None:
    count = 0
    for _, entry in SERF_MESSAGES:
        note = entry.get("annotations", {}).get("Payload")
        if not (isinstance(note, dict) and note.get("serf_type") == "keyResponse"):
            continue
        resp = decode(bytes.fromhex(entry["raw_hex"]))
        assert isinstance(resp, QueryResponse) and resp.payload is not None
        key_resp = decode(resp.payload)
        assert isinstance(key_resp, KeyResponse)
        assert go_view(key_resp) == note["body"]
        assert encode(key_resp) == resp.payload
        for key in key_resp.keys or ():
            assert len(base64.b64decode(key)) == 16
        count += 1
    assert count >= 4


def _capture_plaintext(entry: dict[str, Any]) -> bytes:
    if entry["layers"] and entry["layers"][0]["layer"] == "encrypt":
        return bytes.fromhex(entry["layers"][0]["plaintext_hex"])
    return (VECTORS / entry["file"]).read_bytes()


def test_serf_leaves_of_capture_files() -> None:
    """Peeling the captured packets with the memberlist codec finds exactly the Serf
    messages the manifest lists, and each re-encodes byte for byte."""
    checked = 0
    for entry in files("udp"):
        leaves = memberlist_codec.ingest(_capture_plaintext(entry))
        serf = [leaf[1:] for leaf in leaves if leaf[0] == 0x08]
        assert [s.hex() for s in serf] == [m["serf"]["raw_hex"] for m in entry["messages"]
                                           if "serf" in m]
        for raw in serf:
            assert encode(decode(raw)) == raw
            checked += 1
    assert checked == len(SERF_MESSAGES)


def _user_state(raw_hex: str, nodes: int) -> bytes:
    """The bytes after a push/pull's header and node states."""
    raw = bytes.fromhex(raw_hex)
    assert raw[0] == 0x06
    unpacker = msgpack.Unpacker(raw=True)
    unpacker.feed(raw[1:])
    header = unpacker.unpack()
    assert header[b"Nodes"] == nodes
    for _ in range(nodes):
        unpacker.unpack()
    return raw[1 + unpacker.tell():]


@pytest.mark.parametrize(("name", "msg"), PUSH_PULLS, ids=[name for name, _ in PUSH_PULLS])
def test_push_pull_user_state(name: str, msg: dict[str, Any]) -> None:
    state = _user_state(msg["raw_hex"], len(msg["nodes"]))
    assert len(state) == msg["header"]["UserStateLen"] == msg["user_state_len"]
    expected = msg["user_state"]
    assert state.hex() == expected["raw_hex"]
    pp = decode(state)
    assert isinstance(pp, PushPull)
    assert encode(pp) == state
    body = dict(expected["body"])
    del body["Events"]
    view = go_view(pp)
    events = view.pop("Events")
    assert view == body
    assert len(events) == expected["annotations"]["Events"]["slots"] == 512
    non_nil = {str(i): slot for i, slot in enumerate(events) if slot is not None}
    assert non_nil == expected["annotations"]["Events"]["non_nil"]
    # StatusLTimes is a Go map: kept in wire order so re-encoding is exact
    assert list(pp.status_ltimes or {}) == list(body["StatusLTimes"])


def test_push_pull_built_from_scratch_matches_capture() -> None:
    _, msg = next(p for p in PUSH_PULLS if p[1]["user_state"]["body"]["LeftMembers"])
    body = msg["user_state"]["body"]
    events: list[UserEvents | None] = [None] * 512
    events[1] = UserEvents(1, [UserEventEntry("deploy", b"v1")])
    pp = PushPull(ltime=body["LTime"], status_ltimes=dict(body["StatusLTimes"]),
                  left_members=list(body["LeftMembers"]), event_ltime=body["EventLTime"],
                  events=events, query_ltime=body["QueryLTime"])
    assert encode(pp).hex() == msg["user_state"]["raw_hex"]


def test_nil_and_empty_are_kept_apart() -> None:
    empty = PushPull(ltime=1, status_ltimes=None, left_members=None, events=None)
    raw = encode(empty)
    assert raw.count(b"\xc0") == 3
    assert decode(raw) == empty
    q = Query(ltime=1, id=2, addr=b"\x7f\x00\x00\x01", port=1, source_node="a", name="n",
              filters=[], payload=b"")
    decoded = decode(encode(q))
    assert isinstance(decoded, Query)
    assert decoded.filters == [] and decoded.payload == b""
    assert decode(encode(KeyRequest(b""))) == KeyRequest(b"")
    assert decode(encode(KeyRequest(None))) == KeyRequest(None)


def test_hand_built_messages_round_trip_in_sorted_key_order() -> None:
    samples = [
        Leave(7, "node-a", True),
        Join(3, "node-b"),
        UserEvent(9, "deploy", b"\x00\xff", cc=True),
        Query(ltime=1 << 63, id=0xFFFFFFFF, addr=bytes(16), port=65535, source_node="x",
              filters=[encode_filter(NodeFilter(["a"]))], flags=QUERY_FLAG_NO_BROADCAST,
              relay_factor=255, timeout=-5, name="q" * 40, payload=b"p" * 70000),
        QueryResponse(2, 3, "from", QUERY_FLAG_ACK, None),
        KeyResponse(True, "ok", ["a", "b"], "a"),
        ConflictResponse(Member("n", b"\x0a\x00\x00\x01", 8301, {"role": "consul"},
                                STATUS_ALIVE, 1, 5, 2, 2, 5, 4)),
        ConflictResponse(None),
    ]
    for msg in samples:
        raw = encode(msg)
        assert decode(raw) == msg
        keys = list(msgpack.unpackb(raw[1:], raw=True) or {})
        assert keys == sorted(keys)
    assert encode(ConflictResponse(None)) == b"\x06\xc0"
    # old-spec msgpack: long strings are str16/str32, never str8 or bin
    long_name = encode(Join(1, "n" * 40))
    assert b"\xda\x00\x28" in long_name and b"\xd9" not in long_name


def test_relay_round_trip() -> None:
    inner = encode(QueryResponse(5, 6, "c", 0, b"answer"))
    header = RelayHeader(UDPAddr(b"\x7f\x00\x00\x01", 7946, ""), "a")
    raw = encode_relay(header, inner)
    assert raw[0] == 9 and raw.endswith(inner)
    relay = decode_relay(raw)
    assert relay == Relay(header, inner)
    assert encode(relay) == raw
    assert decode(raw) == relay


def test_filters() -> None:
    node = encode_filter(NodeFilter(["a", "c"]))
    assert node.hex() == "0092a161a163"
    tag = encode_filter(TagFilter("role", "node"))
    assert tag.hex() == "0182a445787072a46e6f6465a3546167a4726f6c65"
    assert decode_filter(node) == NodeFilter(["a", "c"])
    assert decode_filter(tag) == TagFilter("role", "node")
    for bad in (b"", b"\x02\x90", b"\x00\x81\xa1a\xa1b", b"\x01\x92\x01\x02", b"\x00\x91\x01"):
        with pytest.raises(GossipFormatError):
            decode_filter(bad)


CAPTURED_METAS = {
    "ff82a26463a3646331a4726f6c65a46e6f6465": {"dc": "dc1", "role": "node"},
    "ff82a4726f6c65a46e6f6465a26463a3646331": {"role": "node", "dc": "dc1"},
    "ff83a4726f6c65a46e6f6465a26463a3646331a47261636ba27231":
        {"role": "node", "dc": "dc1", "rack": "r1"},
    "ff83a26463a3646331a4726f6c65a46e6f6465a47261636ba27231":
        {"dc": "dc1", "role": "node", "rack": "r1"},
}


def _captured_metas() -> set[str]:
    metas: set[str] = set()
    for entry in files():
        for msg in entry["messages"]:
            meta = (msg.get("body") or {}).get("Meta")
            if meta:
                metas.add(meta)
            for node in msg.get("nodes", ()):
                metas.add(node["body"]["Meta"])
    return {meta.removeprefix("hex:") for meta in metas}


def test_captured_metas_decode_and_reencode() -> None:
    assert _captured_metas() == set(CAPTURED_METAS)
    for meta_hex, tags in CAPTURED_METAS.items():
        meta = bytes.fromhex(meta_hex)
        decoded = decode_tags(meta)
        assert decoded == tags and list(decoded) == list(tags)
        assert encode_tags(decoded) == meta


def test_tags_rules() -> None:
    assert decode_tags(b"consul") == {"role": "consul"}
    assert decode_tags(b"") == {"role": ""}
    assert decode_tags(None) == {"role": ""}
    assert encode_tags({"role": "consul", "dc": "dc1"}, protocol_version=2) == b"consul"
    assert encode_tags({}) == b"\xff\x80"
    # 512 bytes in total, magic byte included
    fits = {"k": "v" * (512 - 1 - 1 - 2 - 3)}
    assert len(encode_tags(fits)) == 512
    with pytest.raises(ValueError, match=r"^Encoded length of tags exceeds limit of 512 bytes$"):
        encode_tags({"k": "v" * 600})
    assert TAGS_TOO_LARGE == "Encoded length of tags exceeds limit of 512 bytes"
    for bad in (b"\xff", b"\xff\x90", b"\xff\x81\xa1a\x01", b"\xff\x81\x01\xa1a"):
        with pytest.raises(GossipFormatError):
            decode_tags(bad)


@pytest.mark.parametrize("raw", [
    b"",
    b"\x0a\x80",
    b"\x01",
    b"\x01\x92\x01\x02",
    b"\x01\x81\xa5LTime\xa1x",
    b"\x01\x81\xa5LTime\xff",
    b"\x00\x81\xa5Prune\x01",
    b"\x04\x81\xa4Port\xce\x00\x01\x00\x00",
    b"\x04\x81\xabRelayFactor\xcd\x01\x00",
    b"\x04\x81\xa7Filters\x91\x01",
    b"\x02\x81\xa6Events\x91\x01",
    b"\x02\x81\xacStatusLTimes\x81\x01\x01",
    b"\x05\x81\xa2ID\xcb\x00\x00\x00\x00\x00\x00\x00\x00",
    b"\x09",
    b"\x09\x81\xa8DestAddr\x01",
    b"\x06\x81\xa4Tags\x81\xa1a\x01",
    b"\x03\x81\xa4Name\xc7\x01\x05a",
])
def test_malformed_messages(raw: bytes) -> None:
    with pytest.raises(GossipFormatError):
        decode(raw)


def test_lenient_like_go() -> None:
    """Unknown keys and trailing bytes are ignored, missing keys are zero values."""
    assert decode(b"\x01\x82\xa5Extra\x01\xa4Node\xa1a" + b"junk") == Join(0, "a")
    assert decode(b"\x03\x80") == UserEvent(0, "", None, False)
    assert decode(b"\x09\x80") == Relay(RelayHeader(UDPAddr(b"", 0, ""), ""), b"")


def test_unknown_types_are_rejected_by_encode() -> None:
    with pytest.raises(TypeError):
        encode(UserEventEntry("x"))  # type: ignore[arg-type]
    assert codec.message_type_name(9) == "relay"
    assert codec.message_type_name(200) == "unknown(200)"


# -- fuzz ------------------------------------------------------------------------------------

_SEEDS = [bytes.fromhex(e["raw_hex"]) for _, e in SERF_MESSAGES[:40]] + [
    bytes.fromhex(msg["user_state"]["raw_hex"]) for _, msg in PUSH_PULLS[-2:]]


def _decode_everything(raw: bytes) -> None:
    for fn in (decode, decode_filter, decode_tags, decode_relay):
        try:
            fn(raw)
        except GossipFormatError:
            pass


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(raw: bytes) -> None:
    _decode_everything(raw)
    _decode_everything(bytes((raw[0] % 10,)) + raw[1:] if raw else raw)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(_SEEDS), st.data())
def test_fuzz_mutated_captures(seed: bytes, data: st.DataObject) -> None:
    buf = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.integers(0, 3))
        pos = data.draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == 0 and buf:
            buf[pos] = data.draw(st.integers(0, 255))
        elif op == 1:
            buf.insert(pos, data.draw(st.integers(0, 255)))
        elif op == 2 and buf:
            del buf[pos]
        else:
            del buf[pos:]
    _decode_everything(bytes(buf))


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.floats()
    | st.binary(max_size=20) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from([b"LTime", b"Node", b"Events", b"Filters", b"Tags",
                                       b"StatusLTimes", b"DestAddr", b"Keys", b"Payload",
                                       b"IP", b"Name"]), inner, max_size=4),
    max_leaves=12), st.integers(0, 11))
def test_fuzz_typed_garbage(obj: Any, msg_type: int) -> None:
    """Well-formed msgpack with the right keys but wrong value types."""
    raw = bytes((msg_type,)) + msgpack.packb(obj, use_bin_type=True)
    _decode_everything(raw)

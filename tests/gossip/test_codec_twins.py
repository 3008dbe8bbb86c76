"""The compiled and pure codec twins agree on everything: the properties feed both the same
generated messages, msgpack bodies and packets and compare every outcome (bytes, message
objects, leaves and their drop reasons, or the exception's type and text)."""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proconsul.gossip.messages import (
    Ack,
    Alive,
    Dead,
    ErrResp,
    IndirectPing,
    Nack,
    Ping,
    PushNodeState,
    PushPullHeader,
    Suspect,
    UserMsg,
    UserMsgHeader,
)
from tests.conftest import load_twin

COMPILED = "proconsul._speedups.gossip_codec"
PURE = "proconsul.gossip.codec_py"
GO_KEYS = [b"Node", b"SeqNo", b"SourceAddr", b"SourceNode", b"SourcePort", b"Nack", b"Port",
           b"Target", b"Payload", b"From", b"Incarnation", b"Addr", b"Meta", b"Vsn", b"Error",
           b"Name", b"State", b"Join", b"Nodes", b"UserStateLen", b"UserMsgLen", b"Algo",
           b"Buf"]
LEAF_TYPES = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x0B, 0x0D]

pytestmark = pytest.mark.c_extension


def twins(request: pytest.FixtureRequest) -> tuple[ModuleType, ModuleType]:
    """(compiled, pure); skips when the compiled twins are disabled."""
    return load_twin(request, COMPILED), load_twin(request, PURE)


def outcome(fn: Any, *args: Any, **kwargs: Any) -> tuple[str, Any]:
    """What a call did: its result, or the type and text of what it raised."""
    try:
        return "ok", fn(*args, **kwargs)
    except Exception as exc:  # both twins must raise the same thing, whatever it is
        return type(exc).__name__, str(exc)


# -- generated values: mostly well-typed, sometimes not, so both paths of encode are covered ---

u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 2**16 - 1)
texts = st.one_of(st.sampled_from(["", "a", "node-1.dc1", "ünï", "x" * 40]), st.text(max_size=40),
                  st.binary(max_size=20).map(lambda b: b.decode("utf-8", "surrogateescape")))
blobs = st.one_of(st.binary(max_size=80), st.sampled_from([b"", b"\x7f\x00\x00\x01",
                                                           b"\x00" * 300, b"\xa5" * 70000]))
odd = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), st.integers(-2**70, 2**70),
                st.binary(max_size=8), st.text(max_size=8), st.lists(st.integers(0, 3),
                                                                       max_size=2))


def sometimes(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, strategy, strategy, odd)


ints = sometimes(st.one_of(u32, st.integers(-2**63, 2**64 - 1)))
small = sometimes(u16)
strs = sometimes(texts)
bins = sometimes(blobs)
nbins = sometimes(st.one_of(st.none(), blobs))
bools = sometimes(st.booleans())

messages = st.one_of(
    st.builds(Ping, ints, strs, bins, small, strs),
    st.builds(IndirectPing, ints, bins, small, strs, bools, bins, small, strs),
    st.builds(Ack, ints, nbins),
    st.builds(Nack, ints),
    st.builds(Suspect, ints, strs, strs),
    st.builds(Alive, ints, strs, bins, small, nbins, bins),
    st.builds(Dead, ints, strs, strs),
    st.builds(ErrResp, strs),
    st.builds(UserMsg, bins),
)
small_blobs = st.binary(max_size=80)
good_messages = st.one_of(
    st.builds(Ping, u32, texts, small_blobs, u16, texts),
    st.builds(IndirectPing, u32, small_blobs, u16, texts, st.booleans(), small_blobs, u16, texts),
    st.builds(Ack, u32, st.none() | st.binary(min_size=130, max_size=130)),
    st.builds(Nack, u32),
    st.builds(Suspect, u32, texts, texts),
    st.builds(Alive, u32, texts, small_blobs, u16, st.none() | small_blobs, small_blobs),
    st.builds(Dead, u32, texts, texts),
    st.builds(UserMsg, small_blobs),
)
states = st.builds(PushNodeState, strs, bins, small, nbins, ints, ints, bins)
headers = st.builds(PushPullHeader, ints, ints, bools)
user_headers = st.builds(UserMsgHeader, ints)


@settings(max_examples=500, deadline=None)
@given(msg=messages)
def test_encode_decode(request: pytest.FixtureRequest, msg: Any) -> None:
    c, py = twins(request)
    encoded = outcome(py.encode, msg)
    assert outcome(c.encode, msg) == encoded
    if encoded[0] == "ok":
        assert outcome(c.decode, encoded[1]) == outcome(py.decode, encoded[1])


@settings(max_examples=300, deadline=None)
@given(state=states, header=headers, user_header=user_headers)
def test_stream_structs(request: pytest.FixtureRequest, state: PushNodeState,
                        header: PushPullHeader, user_header: UserMsgHeader) -> None:
    c, py = twins(request)
    for name, value in (("node_state", state), ("header", header),
                        ("user_msg_header", user_header)):
        encoded = outcome(getattr(py, f"encode_{name}"), value)
        assert outcome(getattr(c, f"encode_{name}"), value) == encoded
        if encoded[0] == "ok":
            obj = msgpack.unpackb(encoded[1], raw=True)
            decoded = outcome(getattr(py, f"decode_{name}"), obj)
            assert outcome(getattr(c, f"decode_{name}"), obj) == decoded


def test_wrong_types(request: pytest.FixtureRequest) -> None:
    c, py = twins(request)
    for fn in ("encode", "encode_node_state", "encode_header", "encode_user_msg_header",
               "encode_compress", "add_crc", "make_compound", "split_compound", "decode",
               "decode_compress", "decode_node_state", "ingest"):
        for value in (object(), None, 5, "text", [b"\x00"], (b"\x07\x00",), bytearray(b"\x00"),
                      memoryview(b"\x07\x01\x00\x01\x08"), {b"Name": b"x"}):
            assert outcome(getattr(c, fn), value) == outcome(getattr(py, fn), value), (fn, value)


# -- msgpack bodies: what a hostile or sloppy peer could put after a type byte -------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(width=32),
    st.binary(max_size=40), st.text(max_size=20), st.sampled_from(GO_KEYS),
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=12)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(GO_KEYS),
                                                      st.binary(max_size=6)),
                                            inner, max_size=4)),
    max_leaves=12,
)
go_keys = st.sampled_from(GO_KEYS)
bodies = st.dictionaries(st.one_of(go_keys, go_keys, go_keys, go_keys, st.text(max_size=6),
                                   st.integers(0, 9)),
                         st.one_of(scalars, scalars, values), max_size=9)


@st.composite
def packed_body(draw: st.DrawFn) -> bytes:
    """A msgpack body in any of the encodings msgpack-python can make, then maybe damaged."""
    obj = draw(st.one_of(bodies, bodies, bodies, values))
    body = msgpack.packb(obj, use_bin_type=draw(st.booleans()), strict_types=False,
                         use_single_float=draw(st.booleans()))
    body = bytearray(body)
    for _ in range(draw(st.integers(0, 2))):
        how = draw(st.sampled_from(["flip", "cut", "tail", "dup"]))
        if how == "flip" and body:
            body[draw(st.integers(0, len(body) - 1))] ^= 1 << draw(st.integers(0, 7))
        elif how == "cut":
            del body[draw(st.integers(0, len(body))):]
        elif how == "tail":
            body += draw(st.binary(max_size=8))
        elif how == "dup" and body and 0x81 <= body[0] <= 0x8E:
            # repeat the first entry: a map with a duplicate key (last one wins)
            first = msgpack.Unpacker(raw=True)
            first.feed(bytes(body[1:]))
            try:
                first.skip()
                first.skip()
            except msgpack.OutOfData:
                continue
            entry = body[1:1 + first.tell()]
            body = bytearray((body[0] + 1,)) + body[1:] + entry
    return bytes(body)


@settings(max_examples=1500, deadline=None)
@given(msg_type=st.sampled_from([*LEAF_TYPES, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0C, 0xF4, 0x42]),
       body=packed_body() | st.binary(max_size=64))
def test_decode_agrees_on_any_body(request: pytest.FixtureRequest, msg_type: int,
                                   body: bytes) -> None:
    c, py = twins(request)
    buf = bytes((msg_type,)) + body
    assert outcome(c.decode, buf) == outcome(py.decode, buf)
    wrapped = b"\x09" + body
    assert outcome(c.decode_compress, wrapped) == outcome(py.decode_compress, wrapped)


@settings(max_examples=300, deadline=None)
@given(obj=bodies | values)
def test_stream_struct_decoders_agree(request: pytest.FixtureRequest, obj: Any) -> None:
    c, py = twins(request)
    if isinstance(obj, dict):
        obj = {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}
    for name in ("decode_node_state", "decode_header", "decode_user_msg_header"):
        assert outcome(getattr(c, name), obj) == outcome(getattr(py, name), obj)


# -- packets ------------------------------------------------------------------------------------

@st.composite
def packets(draw: st.DrawFn) -> bytes:
    """A packet as serf would send it (compound, LZW, CRC, maybe nested), then damaged."""
    from proconsul.gossip import codec_py

    leaves = [codec_py.encode(draw(good_messages)) for _ in range(draw(st.integers(1, 6)))]
    pkt = codec_py.prepare(leaves, compress=draw(st.booleans()), crc=draw(st.booleans()))
    if draw(st.booleans()):
        inner = codec_py.prepare([pkt, *leaves[:2]], compress=draw(st.booleans()))
        pkt = codec_py.prepare([inner], crc=draw(st.booleans()))
    buf = bytearray(pkt)
    rng = random.Random(draw(st.integers(0, 2**32)))
    for _ in range(draw(st.integers(0, 3))):
        how = rng.choice(["flip", "cut", "splice", "length"])
        if how == "flip" and buf:
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif how == "cut":
            del buf[rng.randrange(len(buf) + 1):]
        elif how == "splice":
            at = rng.randrange(len(buf) + 1)
            buf[at:at] = rng.randbytes(rng.randrange(9))
        elif how == "length" and len(buf) > 4:
            at = rng.randrange(len(buf) - 1)
            buf[at:at + 2] = rng.choice([b"\xff\xff", b"\x00\x00", b"\x7f\xff"])
    return bytes(buf)


@settings(max_examples=600, deadline=None)
@given(pkt=packets() | st.binary(max_size=120))
def test_ingest_agrees(request: pytest.FixtureRequest, pkt: bytes) -> None:
    c, py = twins(request)
    c_errors: list[str] = []
    py_errors: list[str] = []
    got = outcome(c.ingest, pkt, errors=c_errors)
    assert got == outcome(py.ingest, pkt, errors=py_errors)
    assert c_errors == py_errors
    if got[0] == "ok":
        for leaf in got[1]:
            assert outcome(c.decode, leaf) == outcome(py.decode, leaf)


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.binary(max_size=300), max_size=300), compress=st.booleans(),
       crc=st.booleans(), label=st.sampled_from([b"", b"dc1", b"x" * 255, b"y" * 256]))
def test_send_side_agrees(request: pytest.FixtureRequest, parts: list[bytes], compress: bool,
                          crc: bool, label: bytes) -> None:
    c, py = twins(request)
    assert outcome(c.make_compound, parts) == outcome(py.make_compound, parts)
    assert outcome(c.make_compounds, parts) == outcome(py.make_compounds, parts)
    assert (outcome(c.prepare, parts, compress=compress, crc=crc, label=label)
            == outcome(py.prepare, parts, compress=compress, crc=crc, label=label))
    for leaf in parts[:3]:
        assert outcome(c.add_crc, leaf) == outcome(py.add_crc, leaf)
        assert outcome(c.encode_compress, leaf) == outcome(py.encode_compress, leaf)
        assert outcome(c.split_compound, leaf) == outcome(py.split_compound, leaf)


@settings(max_examples=200, deadline=None)
@given(pkt=packets(), label=st.sampled_from([b"", b"dc1", b"other"]),
       prefix=st.sampled_from([b"", b"\xf4", b"\xf4\x00", b"\xf4\x03dc1", b"\xf4\x05ot"]),
       skip=st.booleans())
def test_labels_agree(request: pytest.FixtureRequest, pkt: bytes, label: bytes, prefix: bytes,
                      skip: bool) -> None:
    c, py = twins(request)
    data = prefix + pkt
    assert (outcome(c.ingest, data, label=label, skip_inbound_label_check=skip)
            == outcome(py.ingest, data, label=label, skip_inbound_label_check=skip))


def test_many_distinct_values(request: pytest.FixtureRequest) -> None:
    # more names, addresses, metas and ports than the compiled twin's interning tables hold,
    # twice over and in a different order, so slots are shared, missed and handed over
    c, py = twins(request)
    raws = [py.encode(Alive(i, f"node-{i % 3000}", bytes((10, i >> 16 & 255, i >> 8 & 255,
                                                          i & 255)), 1000 + i % 5000,
                            b"\xff\x81\xa2dc\xa3dc" + str(i % 700).encode(),
                            b"\x01\x05\x02\x02\x05" + bytes((i % 7,))))
            for i in range(6000)]
    rng = random.Random(3)
    for order in (raws, rng.sample(raws, len(raws)), raws[::-1]):
        for raw in order:
            assert c.decode(raw) == py.decode(raw)

"""TCP stream framing against serf 0.9.4's captured push/pulls, and against hostile peers.

A stream reader talks to a peer that keeps the connection open for the reply, so it must return
as soon as the message is complete, and it must leave whatever follows unread. The captured
push/pulls are fed in small random pieces through a fake Stream that blocks (as an open socket
would) once its bytes run out; anything that waits for more than the message hangs the test
into its timeout. The writer must reproduce serf's bytes exactly, LZW wrapper included. Damaged
and random input may only ever raise GossipFormatError or GossipDecryptError, and a declared
length that is too large must be refused before anything is read or allocated for it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import struct
import time
import tracemalloc
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proconsul.errors import GossipDecryptError, GossipFormatError
from proconsul.gossip import codec, lzw
from proconsul.gossip.keyring import Keyring
from proconsul.gossip.messages import (
    Ack,
    Alive,
    ErrResp,
    Message,
    Nack,
    Ping,
    PushNodeState,
    PushPull,
    UserMsg,
)
from proconsul.gossip.stream import (
    MAX_PUSH_STATE_BYTES,
    _scan,
    encode_push_pull,
    encode_stream,
    read_message,
)
from proconsul.gossip.transport import StreamPair

VECTORS = Path(__file__).parent / "vectors"
MANIFEST: dict[str, Any] = json.loads((VECTORS / "manifest.json").read_text())
KEYS = [base64.b64decode(text) for text in MANIFEST["keys_b64"]]
PUSH_PULLS = [f for f in MANIFEST["files"] if f["transport"] == "tcp" and f["kind"] == "gossip"]
TRAILER = b"\x02<the reply that follows on the same connection>"
ALLOWED = (GossipFormatError, GossipDecryptError)


def data_of(entry: dict[str, Any]) -> bytes:
    return (VECTORS / entry["file"]).read_bytes()


def ring() -> Keyring:
    return Keyring(KEYS)


class ChunkStream:
    """A Stream over fixed bytes. Each read returns a random piece of 1..max_chunk bytes (never
    more than asked); when the bytes run out it returns EOF, or with `hang` it blocks like a
    peer that keeps the connection open."""

    peer = ("127.0.0.1", 7946)

    def __init__(self, data: bytes, *, seed: int = 0, max_chunk: int = 7,
                 hang: bool = False) -> None:
        self.data = data
        self.pos = 0
        self.rng = random.Random(seed)
        self.max_chunk = max_chunk
        self.hang = hang
        self.reads = 0

    @property
    def unread(self) -> bytes:
        return self.data[self.pos:]

    async def read(self, n: int) -> bytes:
        assert n > 0
        self.reads += 1
        if self.pos >= len(self.data) and self.hang:
            await asyncio.Event().wait()
        size = self.rng.randint(1, max(1, min(n, self.max_chunk)))
        out = self.data[self.pos:self.pos + size]
        self.pos += len(out)
        return out

    async def readexactly(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = await self.read(n - len(out))
            if not chunk:
                raise asyncio.IncompleteReadError(out, n)
            out += chunk
        return out

    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass


def read(stream: ChunkStream, **kwargs: Any) -> Message:
    async def main() -> Message:
        return await asyncio.wait_for(read_message(stream, **kwargs), 5)

    return asyncio.run(main())


def read_bytes(data: bytes, **kwargs: Any) -> Message:
    return read(ChunkStream(data), **kwargs)


def node_from_manifest(body: dict[str, Any]) -> PushNodeState:
    def raw(value: str | None) -> bytes | None:
        if value is None:
            return None
        assert value.startswith("hex:")
        return bytes.fromhex(value[4:])

    return PushNodeState(name=body["Name"], addr=raw(body["Addr"]) or b"", port=body["Port"],
                         meta=raw(body["Meta"]), incarnation=body["Incarnation"],
                         state=body["State"], vsn=raw(body["Vsn"]) or b"")


def check_against_manifest(msg: Message, entry: dict[str, Any]) -> PushPull:
    assert isinstance(msg, PushPull)
    (recorded,) = entry["messages"]
    header = recorded["header"]
    assert msg.join is header["Join"]
    assert len(msg.nodes) == header["Nodes"]
    assert len(msg.user_state) == header["UserStateLen"]
    assert msg.nodes == [node_from_manifest(n["body"]) for n in recorded["nodes"]]
    assert msg.user_state.hex() == recorded["user_state"]["raw_hex"]
    assert encode_push_pull(msg).hex() == recorded["raw_hex"]
    return msg


# -- the capture -----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("entry", PUSH_PULLS, ids=lambda e: e["file"])
def test_vector_parses_in_small_pieces_and_leaves_the_rest(entry: dict[str, Any],
                                                           seed: int) -> None:
    data = data_of(entry)
    stream = ChunkStream(data + TRAILER, seed=seed, max_chunk=1 + seed * 5, hang=True)
    keyring = ring() if entry["file"].startswith("encrypted/") else None
    msg = read(stream, keyring=keyring)
    check_against_manifest(msg, entry)
    assert stream.unread == TRAILER


@pytest.mark.parametrize("entry", [e for e in PUSH_PULLS
                                   if e["file"].startswith("plain-nocompress/")],
                         ids=lambda e: e["file"])
def test_uncompressed_push_pull_reencodes_byte_for_byte(entry: dict[str, Any]) -> None:
    data = data_of(entry)
    msg = read_bytes(data)
    assert isinstance(msg, PushPull)
    assert encode_push_pull(msg) == data
    assert encode_stream(msg) == data


@pytest.mark.parametrize("entry", [e for e in PUSH_PULLS if e["file"].startswith("plain/")],
                         ids=lambda e: e["file"])
def test_compressed_push_pull_reencodes_byte_for_byte(entry: dict[str, Any]) -> None:
    data = data_of(entry)
    msg = read_bytes(data)
    assert encode_stream(msg, compress=True) == data


@pytest.mark.parametrize("entry", [e for e in PUSH_PULLS if e["file"].startswith("encrypted/")],
                         ids=lambda e: e["file"])
def test_encrypted_push_pull_round_trips(entry: dict[str, Any]) -> None:
    data = data_of(entry)
    layer = entry["layers"][0]
    msg = read_bytes(data, keyring=ring())
    check_against_manifest(msg, entry)
    # the LZW layer inside the frame is reproduced exactly; only the nonce is new
    assert encode_stream(msg, compress=True).hex() == layer["plaintext_hex"]
    sender = Keyring([KEYS[layer["key_index"]]])
    for version in (1, 0):
        sealed = encode_stream(msg, compress=True, keyring=sender, encrypt_version=version)
        assert sealed[0] == 0x0A and sealed[5] == version
        assert int.from_bytes(sealed[1:5], "big") == len(sealed) - 5
        assert read_bytes(sealed, keyring=ring()) == msg
    # the frame is bound to the key: a ring without it refuses
    with pytest.raises(GossipDecryptError, match="No installed keys could decrypt"):
        read_bytes(data, keyring=Keyring([KEYS[1 - layer["key_index"]]]))


def test_real_stream_reader_keeps_the_reply_bytes() -> None:
    entry = next(e for e in PUSH_PULLS if e["file"].startswith("plain/"))
    data = data_of(entry)

    class Writer:
        def write(self, data: bytes) -> None:
            pass

        async def drain(self) -> None:
            pass

        def close(self) -> None:
            pass

    async def main() -> tuple[Message, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(data + TRAILER)  # no EOF: the peer waits for our reply
        msg = await asyncio.wait_for(read_message(StreamPair(reader, Writer(), ("x", 1))), 5)
        return msg, await reader.read(len(TRAILER))

    msg, rest = asyncio.run(main())
    check_against_manifest(msg, entry)
    assert rest == TRAILER


# -- the other stream messages ---------------------------------------------------------------

OTHER_MESSAGES: list[Message] = [
    Ping(seq_no=7, node="b", source_addr=b"\x7f\x00\x00\x01", source_port=7946, source_node="a"),
    Ping(seq_no=0, node=""),
    Ack(seq_no=7),
    Ack(seq_no=2**32 - 1, payload=b"\x01" * 130),
    ErrResp("Too many pending push/pull requests"),
    UserMsg(b"\x01\x82serf"),
    UserMsg(b""),
    PushPull(join=False),
]


@pytest.mark.parametrize("msg", OTHER_MESSAGES, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize(("compress", "encrypted", "label"), [
    (False, False, b""), (True, False, b""), (False, True, b""), (True, True, b""),
    (True, True, b"prod"), (False, False, b"prod"),
])
def test_messages_round_trip(msg: Message, compress: bool, encrypted: bool,
                             label: bytes) -> None:
    keyring = ring() if encrypted else None
    data = encode_stream(msg, compress=compress, keyring=keyring, label=label)
    stream = ChunkStream(data + TRAILER, hang=True)
    assert read(stream, keyring=keyring, label=label) == msg
    assert stream.unread == TRAILER


def test_wire_layouts() -> None:
    assert encode_stream(UserMsg(b"abc")) == b"\x08\x81\xaaUserMsgLen\x03abc"
    assert encode_stream(ErrResp("x")) == b"\x0d\x81\xa5Error\xa1x"
    assert encode_stream(Ack(seq_no=1)) == codec.encode(Ack(seq_no=1))
    lzw_wrapped = encode_stream(Ping(seq_no=1, node="a"), compress=True)
    assert lzw_wrapped == codec.encode_compress(lzw.compress(codec.encode(Ping(1, "a"))))
    assert encode_stream(Ping(1, "a"), label=b"lbl")[:5] == b"\xf4\x03lbl"
    for msg in (Alive(1, "a", b"", 1), Nack(1)):
        with pytest.raises(TypeError):
            encode_stream(msg)


# -- policy ----------------------------------------------------------------------------------

def test_encryption_policy() -> None:
    plain = encode_stream(Ping(1, "a"))
    sealed = encode_stream(Ping(1, "a"), keyring=ring())
    with pytest.raises(GossipDecryptError,
                       match=r"^Encryption is configured but remote state is not encrypted$"):
        read_bytes(plain, keyring=ring())
    assert read_bytes(plain, keyring=ring(), verify_incoming=False) == Ping(1, "a")
    with pytest.raises(GossipDecryptError,
                       match=r"^Remote state is encrypted and encryption is not configured$"):
        read_bytes(sealed)
    with pytest.raises(GossipDecryptError):
        read_bytes(sealed, keyring=Keyring([bytes(16)]))


def test_label_policy() -> None:
    labelled = encode_stream(Ping(1, "a"), label=b"lbl")
    bare = encode_stream(Ping(1, "a"))
    assert read_bytes(labelled, label=b"lbl") == Ping(1, "a")
    with pytest.raises(GossipFormatError, match="unacceptable label"):
        read_bytes(labelled)
    with pytest.raises(GossipFormatError, match="unacceptable label"):
        read_bytes(bare, label=b"lbl")
    assert read_bytes(bare, label=b"lbl", skip_inbound_label_check=True) == Ping(1, "a")
    with pytest.raises(GossipFormatError, match="double label"):
        read_bytes(labelled, label=b"lbl", skip_inbound_label_check=True)
    with pytest.raises(GossipFormatError, match="label header cannot be empty"):
        read_bytes(b"\xf4\x00" + bare)
    with pytest.raises(GossipFormatError, match="cannot decode label"):
        read_bytes(b"\xf4\x05ab")


def test_label_is_authenticated_data() -> None:
    # a dialer's stream: header plus AAD; a reply: AAD only, no header (memberlist >= 0.3.0)
    first = encode_stream(Ping(1, "a"), keyring=ring(), label=b"lbl")
    assert first.startswith(b"\xf4\x03lbl\x0a")
    assert read_bytes(first, keyring=ring(), label=b"lbl") == Ping(1, "a")
    reply = encode_stream(Ack(1), keyring=ring(), label=b"lbl", label_header=False)
    assert reply[0] == 0x0A
    assert read_bytes(reply, keyring=ring(), label=b"lbl", label_header=False) == Ack(1)
    with pytest.raises(GossipDecryptError):
        read_bytes(reply, keyring=ring(), label=b"other", label_header=False)
    with pytest.raises(GossipDecryptError):
        read_bytes(reply, keyring=ring(), label_header=False)


@pytest.mark.parametrize("data", [
    b"", b"\x04" + codec.encode(Alive(1, "a", b"", 1))[1:], b"\x01\x80", b"\x03\x80",
    b"\x07\x00", b"\x0b\x80", b"\x0c\x00\x00\x00\x00\x00", b"\xff",
    codec.encode_compress(lzw.compress(codec.encode_compress(lzw.compress(b"\x00\x80")))),
    codec.encode_compress(b""), b"\x09\x82\xa4Algo\x01\xa3Buf\xa0",
    b"\x06\x83\xa4Join\xc3\xa5Nodes\x01\xacUserStateLen\x00\x81\xa4Name\x01",
    b"\x06\x81\xa5Nodes\xff", b"\x08\x81\xaaUserMsgLen\xff", b"\x00\xc1", b"\x00\x92\x01\x02",
])
def test_malformed_streams(data: bytes) -> None:
    with pytest.raises(GossipFormatError):
        read_bytes(data)


def test_nested_encryption_is_refused() -> None:
    inner = encode_stream(Ping(1, "a"), keyring=ring())
    outer = b"\x0a" + struct.pack(">I", 29 + len(inner)) + ring().encrypt(
        inner, b"\x0a" + struct.pack(">I", 29 + len(inner)), 1)
    with pytest.raises(GossipFormatError, match="invalid msgType"):
        read_bytes(outer, keyring=ring())


@pytest.mark.parametrize("entry", PUSH_PULLS, ids=lambda e: e["file"])
def test_every_truncation_is_a_format_error(entry: dict[str, Any]) -> None:
    data = data_of(entry)
    keyring = ring() if entry["file"].startswith("encrypted/") else None

    async def main() -> None:
        for cut in range(len(data)):
            with pytest.raises(GossipFormatError):
                await read_message(ChunkStream(data[:cut], max_chunk=64), keyring=keyring)

    asyncio.run(main())


# -- hostile lengths -------------------------------------------------------------------------

def header(nodes: int, user_state_len: int) -> bytes:
    return b"\x06" + msgpack.packb({b"Join": False, b"Nodes": nodes,
                                    b"UserStateLen": user_state_len}, use_bin_type=False)


@pytest.mark.parametrize("data", [
    b"\x0a" + struct.pack(">I", MAX_PUSH_STATE_BYTES + 1),
    b"\x0a\xff\xff\xff\xff",
    header(2**20 + 1, 0),
    header(-1, 0),
    header(1, MAX_PUSH_STATE_BYTES + 1),
    header(0, -5),
    b"\x08\x81\xaaUserMsgLen\xce\xff\xff\xff\xff",
    header(1, 0) + b"\x81\xa4Name\xdb\xff\xff\xff\xff",
    header(1, 0) + b"\xdf\xff\xff\xff\xff",
    header(1, 0) + b"\x81\xa4Meta\xdd\xff\xff\xff\xff",
    b"\x09\x82\xa4Algo\x00\xa3Buf\xdb\x7f\xff\xff\xff",
])
def test_oversized_lengths_are_refused_without_waiting(data: bytes) -> None:
    # the stream blocks after these bytes: only a reader that refuses up front returns
    stream = ChunkStream(data, hang=True)
    keyring = ring() if data[0] == 0x0A else None
    started = time.monotonic()
    with pytest.raises(GossipFormatError):
        read(stream, keyring=keyring)
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("data", [
    header(2**20, MAX_PUSH_STATE_BYTES) + b"\x80",
    header(0, MAX_PUSH_STATE_BYTES) + b"abc",
    b"\x0a" + struct.pack(">I", MAX_PUSH_STATE_BYTES) + b"\x01" + bytes(40),
    b"\x08\x81\xaaUserMsgLen" + msgpack.packb(MAX_PUSH_STATE_BYTES) + b"x",
    header(1, 0) + b"\x81\xa4Name\xdb\x01\x00\x00\x00abc",
])
def test_large_declared_lengths_allocate_nothing_up_front(data: bytes) -> None:
    keyring = ring() if data[0] == 0x0A else None
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(GossipFormatError):
            read(ChunkStream(data, max_chunk=4096), keyring=keyring)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 2
    assert peak < 1 << 20


def test_max_size_is_the_callers() -> None:
    data = encode_stream(PushPull(join=True, user_state=bytes(5000)))
    assert read_bytes(data, max_size=5000) == PushPull(join=True, user_state=bytes(5000))
    with pytest.raises(GossipFormatError, match="user state length"):
        read_bytes(data, max_size=4999)
    sealed = encode_stream(Ping(1, "a"), keyring=ring())
    with pytest.raises(GossipFormatError, match="larger than limit"):
        read_bytes(sealed, keyring=ring(), max_size=len(sealed) - 6)


# -- the read-size bound ---------------------------------------------------------------------

MSGPACK_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.binary(max_size=300) | st.text(max_size=40)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=20)),
    lambda inner: st.lists(inner, max_size=20)
    | st.dictionaries(st.binary(max_size=8), inner, max_size=20),
    max_leaves=40,
)


@settings(max_examples=300)
@given(MSGPACK_VALUES, st.booleans())
def test_scan_never_asks_past_the_object(value: Any, bin_type: bool) -> None:
    """What a reader asks for is a lower bound: it never exceeds what the object still lacks,
    so no read can take bytes that belong to the next message."""
    packed = msgpack.packb(value, use_bin_type=bin_type)
    assert _scan(bytearray(packed + b"\x00trailing"), 0) == (0, len(packed))
    for cut in range(len(packed)):
        missing, end = _scan(bytearray(packed[:cut]), 0)
        assert end == -1
        assert 1 <= missing <= len(packed) - cut


# -- fuzzing ---------------------------------------------------------------------------------

SAMPLES = [data_of(entry) for entry in PUSH_PULLS] + [
    encode_stream(msg, compress=c) for msg in OTHER_MESSAGES for c in (False, True)]
INNER = [data_of(entry) for entry in PUSH_PULLS
         if entry["file"].startswith("plain-nocompress/")] + [
    encode_stream(msg) for msg in OTHER_MESSAGES]
BIG = [b"\xce\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff",
       b"\xdd\x7f\xff\xff\xff", b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00", b"\xcd\xff\xff"]


@st.composite
def mutate(draw: st.DrawFn, pool: list[bytes]) -> bytes:
    """Truncations, bit flips, splices with another sample, insertions, deletions and huge
    length fields planted into a valid sample."""
    data = bytearray(draw(st.sampled_from(pool)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["truncate", "flip", "splice", "insert", "delete", "big"]))
        if op == "truncate":
            del data[at:]
        elif op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "splice":
            other = draw(st.sampled_from(pool))
            data[at:] = other[draw(st.integers(0, len(other))):]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        else:
            big = draw(st.sampled_from(BIG))
            data[at:at + len(big)] = big
    return bytes(data)


def wrap(inner: bytes, how: str) -> bytes:
    """Valid outer layers around a damaged message, so the damage reaches the inner parser."""
    if how in ("compress", "both"):
        inner = codec.encode_compress(lzw.compress(inner))
    if how in ("encrypt", "both"):
        frame = b"\x0a" + struct.pack(">I", 29 + len(inner))
        inner = frame + ring().encrypt(inner, frame, 1)
    return inner


def only_allowed_errors(data: bytes, seed: int, **kwargs: Any) -> None:
    stream = ChunkStream(data, seed=seed, max_chunk=1 + seed % 300)
    try:
        msg = read(stream, **kwargs)
    except ALLOWED:
        return
    assert isinstance(msg, (Ping, Ack, PushPull, UserMsg, ErrResp))


FUZZ = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=300), st.integers(0, 1000), st.booleans(), st.booleans())
def test_fuzz_random_bytes(data: bytes, seed: int, encrypted: bool, verify: bool) -> None:
    only_allowed_errors(data, seed, keyring=ring() if encrypted else None,
                        verify_incoming=verify)


@FUZZ
@given(mutate(SAMPLES), st.integers(0, 1000), st.booleans())
def test_fuzz_mutated_vectors(data: bytes, seed: int, encrypted: bool) -> None:
    only_allowed_errors(data, seed, keyring=ring() if encrypted else None)


@FUZZ
@given(mutate(INNER), st.sampled_from(["plain", "compress", "encrypt", "both"]),
       st.integers(0, 1000))
def test_fuzz_damage_behind_valid_layers(inner: bytes, how: str, seed: int) -> None:
    encrypted = how in ("encrypt", "both")
    only_allowed_errors(wrap(inner, how), seed, keyring=ring() if encrypted else None)


@FUZZ
@given(mutate([data_of(e) for e in PUSH_PULLS if e["file"].startswith("encrypted/")]),
       st.integers(0, 1000))
def test_fuzz_encrypted_frames(data: bytes, seed: int) -> None:
    only_allowed_errors(data, seed, keyring=ring())

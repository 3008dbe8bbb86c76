"""Hostile packets through both codec twins: ingest and decode only ever raise GossipFormatError.

The receive path parses whatever arrives on the gossip port. Random bytes, real captures with
bit flips, cuts and splices, containers nested past every limit and lengths that claim far more
than the datagram holds must all end in GossipFormatError (a GossipError, so the transport's
log-and-drop catches it) and never in another exception, a crash, or memory that stays behind.
"""

from __future__ import annotations

import gc
import json
import random
import sys
import tracemalloc
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proconsul.errors import GossipError, GossipFormatError
from proconsul.gossip import lzw
from tests.conftest import load_twin, twin_params

COMPILED = "proconsul._speedups.gossip_codec"
PURE = "proconsul.gossip.codec_py"
VECTORS = Path(__file__).parent / "vectors"
SEEDS = [(VECTORS / f["file"]).read_bytes()
         for f in json.loads((VECTORS / "manifest.json").read_text())["files"]
         if f["transport"] == "udp" and f["file"].split("/")[0] in ("plain", "plain-nocompress")]


@pytest.fixture(params=twin_params(COMPILED, PURE))
def codec(request: pytest.FixtureRequest) -> ModuleType:
    return load_twin(request, request.param)


def swallow(codec: ModuleType, pkt: bytes) -> list[Any]:
    """ingest + decode every leaf the way the transport does; only GossipFormatError may
    escape ingest, and a leaf that fails to decode is dropped the same way."""
    assert issubclass(GossipFormatError, GossipError)
    errors: list[str] = []
    try:
        leaves = codec.ingest(pkt, errors=errors)
    except GossipFormatError:
        return []
    assert all(isinstance(e, str) for e in errors)
    decoded = []
    for leaf in leaves:
        assert isinstance(leaf, bytes) and leaf
        try:
            decoded.append(codec.decode(leaf))
        except GossipFormatError:
            pass
    return decoded


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A captured packet with a few flips, cuts, splices or inflated length fields."""
    buf = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 5))):
        how = draw(st.sampled_from(["flip", "cut", "splice", "graft", "inflate", "byte"]))
        if how == "flip" and buf:
            buf[draw(st.integers(0, len(buf) - 1))] ^= 1 << draw(st.integers(0, 7))
        elif how == "cut":
            del buf[draw(st.integers(0, len(buf))):]
        elif how == "splice":
            at = draw(st.integers(0, len(buf)))
            end = draw(st.integers(at, len(buf)))
            buf[at:end] = draw(st.binary(max_size=16))
        elif how == "graft":
            # the tail of another capture, so the layers mix
            other = draw(st.sampled_from(SEEDS))
            buf[draw(st.integers(0, len(buf))):] = other[draw(st.integers(0, len(other))):]
        elif how == "inflate" and len(buf) > 3:
            at = draw(st.integers(0, len(buf) - 3))
            buf[at:at + 3] = draw(st.sampled_from(
                [b"\xff\xff\xff", b"\xda\xff\xff", b"\xdb\xff\xff", b"\xdd\xff\xff",
                 b"\xdf\xff\xff", b"\xc9\xff\xff", b"\x07\xff\xff", b"\x09\x9f\xdd"]))
        elif how == "byte" and buf:
            buf[draw(st.integers(0, len(buf) - 1))] = draw(st.sampled_from(
                [0x00, 0x07, 0x08, 0x09, 0x0C, 0xC1, 0xD4, 0xD8, 0xF4, 0xFF]))
    return bytes(buf)


@pytest.mark.parametrize("name", twin_params(COMPILED, PURE))
@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=400))
def test_random_bytes(request: pytest.FixtureRequest, name: str, data: bytes) -> None:
    swallow(load_twin(request, name), data)


@pytest.mark.parametrize("name", twin_params(COMPILED, PURE))
@settings(max_examples=600, deadline=None)
@given(data=mutated())
def test_mutated_captures(request: pytest.FixtureRequest, name: str, data: bytes) -> None:
    swallow(load_twin(request, name), data)


def nested_compress(codec: ModuleType, leaf: bytes, depth: int) -> bytes:
    for _ in range(depth):
        leaf = codec.encode_compress(lzw.compress(leaf))
    return leaf


def nested_compound(codec: ModuleType, leaf: bytes, depth: int) -> bytes:
    for _ in range(depth):
        leaf = codec.make_compound([leaf])
    return leaf


NACK = bytes.fromhex("0b81a55365714e6f0a")


def test_nesting_limits(codec: ModuleType) -> None:
    # eight containers deep is accepted (real peers use two), a ninth is refused
    for wrap in (nested_compress, nested_compound):
        assert codec.ingest(wrap(codec, NACK, 8)) == [NACK]
    with pytest.raises(GossipFormatError, match="nested too deep"):
        codec.ingest(nested_compress(codec, NACK, 9))
    # inside a compound the over-deep part is dropped and its siblings are still delivered
    for wrap in (nested_compress, nested_compound):
        errors: list[str] = []
        pkt = codec.make_compound([wrap(codec, NACK, 8), NACK])
        assert codec.ingest(pkt, errors=errors) == [NACK]
        assert errors == ["compound part: containers nested too deep"]


@pytest.mark.parametrize("depth", [1, 100, 1023, 1024, 1025, 5000])
@pytest.mark.parametrize("kind", [b"\x91", b"\x81\xa1k"])
def test_deep_msgpack(codec: ModuleType, depth: int, kind: bytes) -> None:
    # msgpack-python (the pure twin's parser) allows 1024 open containers; the value of an
    # unknown key must still be well-formed
    body = b"\x81\xa1X" + kind * depth + b"\xc0"
    if depth + 1 <= 1024:
        assert codec.decode(b"\x00" + body) is not None
    else:
        with pytest.raises(GossipFormatError):
            codec.decode(b"\x00" + body)
    swallow(codec, b"\x00" + body)


@pytest.mark.parametrize("body", [
    "db ffffffff", "da ffff 41", "c6 ffffffff", "dd ffffffff", "df ffffffff", "dc ffff",
    "de ffff", "c9 ffffffff 01", "c8 ffff 01", "81 a4 4e6f6465 db 7fffffff", "8f", "9f",
    "81 a5 5365714e6f cf ffffffffffffffff", "81 a5 5365714e6f d3 8000000000000000",
    "81 a4 4e6f6465 c1", "81 c1 00", "81 d7 ff 00000000 ffffffff 00", "81 a4 4e6f6465 d8 80",
])
def test_huge_or_bad_declared_lengths(codec: ModuleType, body: str) -> None:
    with pytest.raises(GossipFormatError):
        codec.decode(b"\x00" + bytes.fromhex(body.replace(" ", "")))
    swallow(codec, b"\x00" + bytes.fromhex(body.replace(" ", "")))


def test_huge_compound_and_packet(codec: ModuleType) -> None:
    # 255 parts each claiming 65535 bytes: all truncated, nothing allocated for them
    pkt = b"\x07\xff" + b"\xff\xff" * 255 + b"\x00" * 100
    errors: list[str] = []
    assert codec.ingest(pkt, errors=errors) == []
    assert errors == ["compound: 255 truncated parts"]
    with pytest.raises(GossipFormatError, match="exceeds"):
        codec.ingest(b"\x00" * 65537)
    with pytest.raises(GossipFormatError, match="truncated compound length slice"):
        codec.ingest(b"\x07\xff\x00")


def test_decompression_budget(codec: ModuleType) -> None:
    # each part inflates to 10 MiB (the LZW default limit); the packet-wide budget is 40 MiB
    bomb = codec.encode_compress(lzw.compress(b"\x08" + bytes((10 << 20) - 1)))
    assert len(bomb) < 20000
    errors: list[str] = []
    leaves = codec.ingest(codec.make_compound([bomb] * 5), errors=errors)
    assert len(leaves) == 4
    assert errors == ["compound part: decompressed size limit exceeded"]
    over = codec.encode_compress(lzw.compress(bytes((10 << 20) + 1)))
    with pytest.raises(GossipFormatError, match="exceeds"):
        codec.ingest(over)


def test_memory_does_not_grow(codec: ModuleType) -> None:
    rng = random.Random(5)
    corpus = list(SEEDS)
    for seed in SEEDS[:60]:
        buf = bytearray(seed)
        for _ in range(3):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        corpus.append(bytes(buf))
        corpus.append(seed[:rng.randrange(len(seed))])
    corpus += [b"\x00" + b"\x91" * 2000, b"\x07\xff" + b"\xff" * 600]
    probe = corpus[0]

    def rounds(n: int) -> None:
        for _ in range(n):
            for pkt in corpus:
                swallow(codec, pkt)

    rounds(2)
    gc.collect()
    refs = sys.getrefcount(probe)
    tracemalloc.start()
    try:
        rounds(1)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        rounds(6)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"{grown} bytes stayed behind"
    assert sys.getrefcount(probe) == refs

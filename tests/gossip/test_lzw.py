"""Both LZW twins: Go-exact output, round trips, the captured serf buffers, hostile input, limits.

memberlist keeps a compressed packet only when it is shorter, so the encoder must make Go's
`compress/lzw` (LSB, literal width 8) bytes exactly, and the decoder sees untrusted input.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proconsul.errors import GossipFormatError
from proconsul.gossip import codec_py
from tests.conftest import load_twin, twin_params

COMPILED = "proconsul._speedups.gossip_lzw"
PURE = "proconsul.gossip.lzw_py"
VECTORS = Path(__file__).parent / "vectors"
MANIFEST: dict[str, Any] = json.loads((VECTORS / "manifest.json").read_text())


def captured() -> list[tuple[str, bytes, bytes]]:
    """(file, LZW buffer, decompressed) for every unencrypted compress layer, UDP and TCP."""
    out = []
    for entry in MANIFEST["files"]:
        if entry["file"].startswith("encrypted/"):
            continue
        for layer in entry["layers"]:
            if layer["layer"] != "compress":
                continue
            data = (VECTORS / entry["file"]).read_bytes()
            wrapped = data[5:] if layer["path"] == ["hasCrc"] else data
            assert layer["path"] in ([], ["hasCrc"])
            out.append((entry["file"], codec_py.decode_compress(wrapped),
                        bytes.fromhex(layer["decompressed_hex"])))
    return out


CAPTURED = captured()


@pytest.fixture(params=twin_params(COMPILED, PURE))
def lzw(request: pytest.FixtureRequest) -> ModuleType:
    return load_twin(request, request.param)


def pack_codes(codes: list[int], width: int = 9) -> bytes:
    """LSB-first packing of fixed-width codes, for hand-made streams."""
    bits = nbits = 0
    out = bytearray()
    for code in codes:
        bits |= code << nbits
        nbits += width
        while nbits >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8
    if nbits:
        out.append(bits & 0xFF)
    return bytes(out)


# Low-entropy inputs grow long matches and fill the 4096-entry table (the reset path).
low_entropy = st.builds(lambda alphabet, n, seed: bytes(random.Random(seed).choices(alphabet, k=n)),
                        st.binary(min_size=1, max_size=4), st.integers(0, 20000),
                        st.integers(0, 2**32))
inputs = st.one_of(st.binary(max_size=3000), low_entropy)


def test_there_are_captured_buffers() -> None:
    assert len(CAPTURED) >= 20
    assert any(name.startswith("plain/tcp-") for name, _, _ in CAPTURED)


@pytest.mark.parametrize(("name", "buf", "plain"), CAPTURED, ids=[c[0] for c in CAPTURED])
def test_captured_buffers(lzw: ModuleType, name: str, buf: bytes, plain: bytes) -> None:
    assert lzw.decompress(buf) == plain
    assert lzw.compress(plain) == buf
    # Go >= 1.17 writers start with a clear code (256 in 9 bits)
    assert (buf[0] | (buf[1] & 1) << 8) == 256


def test_known_streams(lzw: ModuleType) -> None:
    assert lzw.compress(b"") == pack_codes([256, 257])
    assert lzw.decompress(pack_codes([256, 257])) == b""
    # pre-1.17 writers start with a literal; anything after the end code is ignored
    assert lzw.decompress(pack_codes([97, 98, 257]) + b"\xff\xff") == b"ab"
    # KwKwK: code 258 used by the very step that defines it
    assert lzw.decompress(pack_codes([256, 97, 258, 257])) == b"aaa"
    assert lzw.compress(b"aaa") == pack_codes([256, 97, 258, 257])


@pytest.mark.parametrize("size", [0, 1, 2, 255, 256, 511, 512, 4094, 4095, 4096, 20000])
def test_round_trip_sizes(lzw: ModuleType, size: int) -> None:
    for data in (bytes(size), bytes(i % 256 for i in range(size)),
                 random.Random(size).randbytes(size)):
        assert lzw.decompress(lzw.compress(data)) == data


@pytest.mark.c_extension
@settings(max_examples=300, deadline=None)
@given(inputs)
def test_twins_compress_identically(request: pytest.FixtureRequest, data: bytes) -> None:
    compiled, pure = load_twin(request, COMPILED), load_twin(request, PURE)
    out = pure.compress(data)
    assert compiled.compress(data) == out
    assert pure.decompress(out) == data
    assert compiled.decompress(out) == data


@pytest.mark.parametrize("name", twin_params(COMPILED, PURE))
@settings(max_examples=150, deadline=None)
@given(data=inputs)
def test_round_trip(request: pytest.FixtureRequest, name: str, data: bytes) -> None:
    lzw = load_twin(request, name)
    assert lzw.decompress(lzw.compress(data)) == data
    assert lzw.decompress(bytearray(lzw.compress(data))) == data


def outcome(fn: Any, buf: bytes) -> tuple[str, Any]:
    """The result, or the GossipFormatError text; anything else propagates and fails."""
    try:
        return "ok", fn(buf)
    except GossipFormatError as exc:
        return "error", str(exc)


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A valid stream with bit flips, a cut, a splice, or plain random bytes."""
    from proconsul.gossip import lzw_py

    buf = bytearray(lzw_py.compress(draw(inputs)))
    kind = draw(st.sampled_from(["flip", "cut", "splice", "random"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 4))):
            buf[draw(st.integers(0, len(buf) - 1))] ^= 1 << draw(st.integers(0, 7))
    elif kind == "cut":
        del buf[draw(st.integers(0, len(buf))):]
    elif kind == "splice":
        at = draw(st.integers(0, len(buf)))
        buf[at:at] = draw(st.binary(max_size=64))
    else:
        buf = bytearray(draw(st.binary(max_size=600)))
    return bytes(buf)


@pytest.mark.parametrize("name", twin_params(COMPILED, PURE))
@settings(max_examples=300, deadline=None)
@given(data=damaged())
def test_garbage_raises_only_gossip_format_error(request: pytest.FixtureRequest, name: str,
                                                 data: bytes) -> None:
    lzw = load_twin(request, name)
    kind, value = outcome(lzw.decompress, data)
    assert kind == "error" or isinstance(value, bytes)


@pytest.mark.c_extension
@settings(max_examples=300, deadline=None)
@given(data=damaged())
def test_twins_agree_on_garbage(request: pytest.FixtureRequest, data: bytes) -> None:
    compiled, pure = load_twin(request, COMPILED), load_twin(request, PURE)
    assert outcome(compiled.decompress, data) == outcome(pure.decompress, data)


def test_limit(lzw: ModuleType) -> None:
    data = bytes(range(256)) * 40
    buf = lzw.compress(data)
    assert lzw.decompress(buf, len(data)) == data
    with pytest.raises(GossipFormatError, match="exceeds"):
        lzw.decompress(buf, len(data) - 1)
    with pytest.raises(GossipFormatError, match="exceeds 0 bytes"):
        lzw.decompress(lzw.compress(b"x"), 0)
    assert lzw.decompress(lzw.compress(b""), 0) == b""
    with pytest.raises(ValueError, match="negative"):
        lzw.decompress(buf, -1)
    # a small stream that expands a lot stops at the limit, not at the end of memory
    bomb = lzw.compress(bytes(10 << 20))
    assert len(bomb) < 200_000
    with pytest.raises(GossipFormatError, match="exceeds"):
        lzw.decompress(bomb, 1 << 20)
    assert lzw.DEFAULT_LIMIT == 10 << 20


def test_truncated_and_invalid(lzw: ModuleType) -> None:
    with pytest.raises(GossipFormatError, match="unexpected EOF"):
        lzw.decompress(b"")
    with pytest.raises(GossipFormatError, match="unexpected EOF"):
        lzw.decompress(lzw.compress(b"hello world")[:-2])
    with pytest.raises(GossipFormatError, match="invalid code"):
        lzw.decompress(pack_codes([256, 300, 257]))


@pytest.mark.parametrize("size", [7, 8, 9, 2040, 2047, 2048, 2049, 2064, 4100, 70000])
def test_outputs_around_the_buffer_edges(lzw: ModuleType, size: int) -> None:
    """Long repeated runs, short runs and literals ending at every spot near a buffer edge.

    A packet-sized output is built in a fixed buffer and longer ones move to a growing one;
    runs are copied in words, so a run that ends at the exact limit or capacity must not spill
    into the result.
    """
    rng = random.Random(size)
    for data in (bytes(size), (b"abcdefghij" * size)[:size],
                 bytes(rng.choice(b"ab") for _ in range(size)),
                 rng.randbytes(size // 2) + bytes(size - size // 2)):
        buf = lzw.compress(data)
        assert lzw.decompress(buf) == data
        assert lzw.decompress(buf, size) == data
        with pytest.raises(GossipFormatError, match=f"exceeds {size - 1} bytes"):
            lzw.decompress(buf, size - 1)


def test_buffer_kinds(lzw: ModuleType) -> None:
    data = b"node-1.dc1 node-2.dc1 node-3.dc1 " * 30
    buf = lzw.compress(data)
    padded = b"\x00\x01" + buf + b"\x02"
    for view in (buf, bytearray(buf), memoryview(buf), memoryview(padded)[2:-1]):
        assert lzw.decompress(view) == data

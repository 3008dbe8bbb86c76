"""Both codec twins against packets captured from real serf 0.9.4 agents (memberlist 0.2.2).

Every plain and uncompressed UDP capture must peel down to exactly the leaves the manifest lists,
every memberlist leaf must decode to the manifest's field values and re-encode byte for byte,
and the send path (compound, Go-exact LZW, CRC) must rebuild each captured packet as sent.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from proconsul.errors import GossipFormatError
from proconsul.gossip import lzw
from proconsul.gossip.messages import Ack, Alive, Dead, IndirectPing, Nack, Ping, Suspect, UserMsg
from tests.conftest import load_twin, twin_params

VECTORS = Path(__file__).parent / "vectors"
MANIFEST: dict[str, Any] = json.loads((VECTORS / "manifest.json").read_text())
UDP = [f for f in MANIFEST["files"]
       if f["transport"] == "udp" and f["file"].split("/")[0] in ("plain", "plain-nocompress")]
LEAF_TYPES = {"ping": Ping, "indirectPing": IndirectPing, "ack": Ack, "suspect": Suspect,
              "alive": Alive, "dead": Dead, "nack": Nack}
# Go field name -> attribute, as messages.py names them.
ATTRS = {"SeqNo": "seq_no", "Node": "node", "SourceAddr": "source_addr",
         "SourcePort": "source_port", "SourceNode": "source_node", "Nack": "nack",
         "Port": "port", "Target": "target", "Payload": "payload", "From": "from_",
         "Incarnation": "incarnation", "Addr": "addr", "Meta": "meta", "Vsn": "vsn"}
LEAVES = [(f["file"], i, m) for f in UDP for i, m in enumerate(f["messages"])
          if m["type"] in LEAF_TYPES]


@pytest.fixture(params=twin_params("proconsul._speedups.gossip_codec",
                                   "proconsul.gossip.codec_py"))
def codec(request: pytest.FixtureRequest) -> ModuleType:
    return load_twin(request, request.param)


def packet(entry: dict[str, Any]) -> bytes:
    return (VECTORS / entry["file"]).read_bytes()


def leaves(entry: dict[str, Any]) -> list[bytes]:
    return [bytes.fromhex(m["raw_hex"]) for m in entry["messages"]]


def manifest_value(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("hex:"):
        return bytes.fromhex(value[4:])
    return value


def test_the_vectors_are_there() -> None:
    # a broken checkout must not turn this module into a handful of vacuous passes
    assert len(UDP) >= 140
    assert len(LEAVES) >= 150
    assert {m["type"] for _, _, m in LEAVES} == set(LEAF_TYPES)


@pytest.mark.parametrize("entry", UDP, ids=[f["file"] for f in UDP])
def test_ingest_gives_the_captured_leaves(codec: ModuleType, entry: dict[str, Any]) -> None:
    errors: list[str] = []
    assert codec.ingest(packet(entry), errors=errors) == leaves(entry)
    assert errors == []


@pytest.mark.parametrize("entry", UDP, ids=[f["file"] for f in UDP])
def test_prepare_rebuilds_the_captured_packet(codec: ModuleType, entry: dict[str, Any]) -> None:
    # serf compresses whenever LZW makes the packet shorter (plain run) and adds the CRC only on
    # gossip to known peers; with Go-exact LZW every packet comes out as it was sent.
    compress = entry["file"].startswith("plain/")
    crc = "hasCrc" in entry["layers_seen"]
    assert codec.prepare(leaves(entry), compress=compress, crc=crc) == packet(entry)


@pytest.mark.parametrize(("name", "index", "msg"), LEAVES,
                         ids=[f"{name}#{i}:{m['type']}" for name, i, m in LEAVES])
def test_leaf_decodes_to_the_manifest_and_reencodes(codec: ModuleType, name: str, index: int,
                                                    msg: dict[str, Any]) -> None:
    raw = bytes.fromhex(msg["raw_hex"])
    decoded = codec.decode(raw)
    assert type(decoded) is LEAF_TYPES[msg["type"]]
    for key, value in msg["body"].items():
        assert getattr(decoded, ATTRS[key]) == manifest_value(value), key
    assert msg["reencode_identical"]
    assert codec.encode(decoded) == raw


def test_user_leaves_stay_opaque(codec: ModuleType) -> None:
    users = [bytes.fromhex(m["raw_hex"]) for f in UDP for m in f["messages"]
             if m["type"] == "user"]
    assert users
    for raw in users:
        decoded = codec.decode(raw)
        assert decoded == UserMsg(raw[1:])
        assert codec.encode(decoded) == raw


def test_ack_payload_nil_and_coordinate(codec: ModuleType) -> None:
    # relayed acks carry a nil payload (c0), direct ones serf's 130-byte coordinate
    assert codec.encode(Ack(7, None)) == bytes.fromhex("0282a75061796c6f6164c0a55365714e6f07")
    assert codec.decode(bytes.fromhex("0282a75061796c6f6164c0a55365714e6f07")) == Ack(7, None)
    acks = [m for _, _, m in LEAVES if m["type"] == "ack"]
    assert any(len(manifest_value(m["body"]["Payload"])) == 130 for m in acks)


@pytest.mark.parametrize("entry", [f for f in UDP if "hasCrc" in f["layers_seen"]],
                         ids=lambda f: f["file"])
def test_crc_layer(codec: ModuleType, entry: dict[str, Any]) -> None:
    pkt = packet(entry)
    layer = entry["layers"][0]
    assert layer["layer"] == "hasCrc" and layer["ok"]
    assert pkt[1:5].hex() == layer["crc32_be"]
    assert codec.add_crc(pkt[5:]) == pkt
    broken = pkt[:5] + bytes((pkt[5] ^ 0x01,)) + pkt[6:]
    with pytest.raises(GossipFormatError, match="CRC mismatch"):
        codec.ingest(broken)


def test_crc_is_zlibs(codec: ModuleType) -> None:
    # every length around the compiled twin's 16- and 64-byte folding steps, and a full packet
    data = bytes((i * 131 + 7) & 0xFF for i in range(1500))
    for size in [*range(0, 300), 1399, 1400, 1401, 1500]:
        assert codec.add_crc(data[:size]) == b"\x0c" + zlib.crc32(data[:size]).to_bytes(4, "big") \
            + data[:size]


@pytest.mark.parametrize("entry", [f for f in UDP if "compress" in f["layers_seen"]],
                         ids=lambda f: f["file"])
def test_compress_layer(codec: ModuleType, entry: dict[str, Any]) -> None:
    pkt = packet(entry)
    wrapped = pkt[5:] if pkt[0] == 0x0C else pkt
    layer = next(layer for layer in entry["layers"] if layer["layer"] == "compress")
    buf = codec.decode_compress(wrapped)
    assert len(buf) == layer["compressed_len"]
    assert lzw.decompress(buf) == bytes.fromhex(layer["decompressed_hex"])
    assert codec.encode_compress(lzw.compress(bytes.fromhex(layer["decompressed_hex"]))) == wrapped


@pytest.mark.parametrize("entry", [f for f in UDP if "compound" in f["layers_seen"]],
                         ids=lambda f: f["file"])
def test_compound_layer(codec: ModuleType, entry: dict[str, Any]) -> None:
    layer = next(layer for layer in entry["layers"] if layer["layer"] == "compound")
    parts = leaves(entry)
    assert [len(p) for p in parts] == layer["part_lengths"]
    compound = codec.make_compound(parts)
    assert codec.split_compound(compound) == (parts, 0)
    assert codec.make_compounds(parts) == [compound]
    # the truncated tail is dropped and counted; what fits is still delivered
    cut = compound[:-1]
    assert codec.split_compound(cut) == (parts[:-1], 1)
    errors: list[str] = []
    assert codec.ingest(cut, errors=errors) == parts[:-1]
    assert errors == ["compound: 1 truncated parts"]

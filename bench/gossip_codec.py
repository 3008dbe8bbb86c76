"""Compiled vs pure timing of the memberlist packet codec and its LZW.

python bench/gossip_codec.py [--quick]
    times both twins of proconsul.gossip.codec (and of proconsul.gossip.lzw) on what a gossip
    node handles per packet: encode and decode of ping, ack (with serf's 130-byte coordinate),
    alive, suspect and dead; LZW of a ~1 KB compound of alives; and the receive path, ingest
    plus decode of every leaf, on two packets captured from serf 0.9.4 (CRC + LZW + a compound
    of four alives and a join, and CRC + an uncompressed compound). Prints operations per second
    for each twin and the compiled/pure ratio, best of several timed loops.

The codec rows give both codec twins the same (compiled, when built) LZW, as the selectors do
in a normal install, so they measure the codec alone; the "all pure" row is what a
PROCONSUL_NO_EXTENSIONS=1 node pays, pure LZW included.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from proconsul.gossip import codec_py, lzw_py
from proconsul.gossip.messages import Ack, Alive, Dead, Ping, Suspect

VECTORS = Path(__file__).resolve().parent.parent / "tests" / "gossip" / "vectors"
#: CRC + LZW + compound: alive x4, serf join (a join gossip burst).
COMPRESSED = (VECTORS / "plain" / "udp-compound-0017.bin").read_bytes()
#: CRC + compound: alive x3, serf join, sent with -disable-compression.
UNCOMPRESSED = (VECTORS / "plain-nocompress" / "udp-compound-0006.bin").read_bytes()
CODECS = {"py": "proconsul.gossip.codec_py", "c": "proconsul._speedups.gossip_codec"}
LZWS = {"py": "proconsul.gossip.lzw_py", "c": "proconsul._speedups.gossip_lzw"}

ACK_PAYLOAD = next(codec_py.decode(leaf).payload  # serf's Vivaldi coordinate, 130 bytes
                   for leaf in codec_py.ingest((VECTORS / "plain" / "udp-ack-0138.bin")
                                               .read_bytes())
                   if leaf[0] == 0x02)
MESSAGES = {
    "ping": Ping(17, "node-17.dc1", b"\x0a\x00\x00\x07", 8301, "node-3.dc1"),
    "ack (130 B payload)": Ack(17, ACK_PAYLOAD),
    "alive": Alive(4, "node-17.dc1", b"\x0a\x00\x00\x11", 8301,
                   b"\xff\x83\xa2dc\xa3dc1\xa4role\xa4node\xa4rack\xa2r1",
                   b"\x01\x05\x02\x02\x05\x05"),
    "suspect": Suspect(4, "node-17.dc1", "node-3.dc1"),
    "dead": Dead(4, "node-17.dc1", "node-3.dc1"),
}
assert len(ACK_PAYLOAD) == 130
# ~1 KB of piggybacked alives, as one compound (what memberlist tries to compress).
LZW_INPUT = codec_py.make_compound([
    codec_py.encode(Alive(i, f"node-{i}.dc1", bytes((10, 0, 0, i)), 8301,
                          b"\xff\x82\xa2dc\xa3dc1\xa4role\xa4node", b"\x01\x05\x02\x02\x05\x05"))
    for i in range(12)])

MANY_ALIVES = [
    codec_py.encode(Alive(i, f"node-{i}.dc1", bytes((10, 1, i >> 8, i & 0xFF)), 8301 + i,
                          b"\xff\x82\xa2dc\xa3dc1\xa4role\xa4n" + str(i).encode(),
                          b"\x01\x05\x02\x02\x05\x05"))
    for i in range(4096)]

Op = Callable[[], object]


def codec_ops(codec: ModuleType, lzw: ModuleType) -> dict[str, Op]:
    """name -> zero-argument callable, for one twin (LZW passed in for the ingest rows)."""
    ops: dict[str, Op] = {}
    encode, decode, ingest = codec.encode, codec.decode, codec.ingest
    for name, msg in MESSAGES.items():
        raw = codec_py.encode(msg)
        ops[f"encode {name}"] = lambda msg=msg: encode(msg)
        ops[f"decode {name}"] = lambda raw=raw: decode(raw)
    # 4096 different nodes: more than the compiled twin's interning tables hold, so this is
    # the cost when addresses, names and meta are not values it has seen before
    many = itertools.cycle(MANY_ALIVES)
    ops["decode alive, 4096 distinct nodes"] = lambda: decode(next(many))
    unzip = lzw.decompress
    compressed = lzw_py.compress(LZW_INPUT)
    ops[f"lzw compress {len(LZW_INPUT)} B compound"] = lambda: lzw.compress(LZW_INPUT)
    ops[f"lzw decompress {len(compressed)} B"] = lambda: unzip(compressed)
    ops["ingest+decode crc+lzw+compound(5)"] = (
        lambda: [decode(leaf) for leaf in ingest(COMPRESSED)])
    ops["ingest+decode crc+compound(4)"] = (
        lambda: [decode(leaf) for leaf in ingest(UNCOMPRESSED)])
    return ops


def per_op_ns(op: Op, target: float, repeat: int) -> float:
    """Best of `repeat` timed loops of about `target` seconds each, in ns per call."""
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            op()
        spent = time.perf_counter() - start
        if spent >= target / 4:
            break
        n *= 4
    n = max(1, int(n * target / spent))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            op()
        best = min(best, time.perf_counter() - start)
    return best / n * 1e9


def row(title: str, py: float, c: float | None) -> None:
    if c is None:
        print(f"{title:38} {1e9 / py:>12,.0f} {'-':>14} {'-':>8}")
    else:
        print(f"{title:38} {1e9 / py:>12,.0f} {1e9 / c:>14,.0f} {py / c:>7.1f}x")


def bench(target: float, repeat: int) -> None:
    codecs: dict[str, ModuleType] = {}
    lzws: dict[str, ModuleType] = {}
    for label in ("py", "c"):
        try:
            codecs[label] = importlib.import_module(CODECS[label])
            lzws[label] = importlib.import_module(LZWS[label])
        except ImportError:
            print(f"({CODECS[label]} not available: build with setup.py build_ext --inplace)")
    live_lzw = lzws.get("c", lzws["py"])
    py_ops = codec_ops(codecs["py"], lzws["py"])
    c_ops = codec_ops(codecs["c"], lzws["c"]) if "c" in codecs else {}
    # the codec twins share one LZW in a normal install: swap the pure codec's ingest rows to it
    shared = codec_ops(codecs["py"], live_lzw)
    print(f"{'operation (per second)':38} {'pure':>12} {'compiled':>14} {'ratio':>8}")
    for name, op in py_ops.items():
        is_lzw = name.startswith("lzw")
        py = per_op_ns(op if is_lzw else shared[name], target, repeat)
        c = per_op_ns(c_ops[name], target, repeat) if c_ops else None
        row(name, py, c)
    # what a node without extensions pays for the compressed packet: pure codec + pure LZW
    py = per_op_ns(lambda: [codecs["py"].decode(leaf) for leaf in codecs["py"].ingest(
        COMPRESSED, decompress=lzws["py"].decompress)], target, repeat)
    c = per_op_ns(c_ops["ingest+decode crc+lzw+compound(5)"], target, repeat) if c_ops else None
    row("all pure vs all compiled: crc+lzw+cmp", py, c)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short loops (about 5 s in all)")
    args = parser.parse_args()
    if args.quick:
        bench(target=0.02, repeat=3)
    else:
        bench(target=0.25, repeat=5)


if __name__ == "__main__":
    main()

"""Selector for the memberlist packet codec: the compiled twin when built, the pure one otherwise.

Gossip code imports the codec from here. Type checkers see the pure twin (both have the same
names, signatures and bytes); PROCONSUL_NO_EXTENSIONS=1 forces the pure twin at run time.
`codec_py` and `codec_c` name the two modules for tests and benchmarks (`codec_c` is None when
nothing was compiled), and `IMPLEMENTATION` says which one is live.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from proconsul._compat import NO_EXTENSIONS
from proconsul.gossip import codec_py

__all__ = [
    "IMPLEMENTATION", "MAX_COMPOUND_PARTS", "MAX_PACKET_SIZE", "META_MAX_SIZE",
    "UDP_BUFFER_SIZE", "add_crc", "codec_c", "codec_py", "decode", "decode_compress",
    "decode_header", "decode_node_state", "decode_user_msg_header", "encode", "encode_compress",
    "encode_header", "encode_node_state", "encode_user_msg_header", "ingest", "make_compound",
    "make_compounds", "prepare", "split_compound",
]

codec_c: ModuleType | None = None
if not (TYPE_CHECKING or NO_EXTENSIONS):
    try:
        from proconsul._speedups import gossip_codec as codec_c
    except ImportError:
        codec_c = None

if TYPE_CHECKING:
    _impl = codec_py
else:
    _impl = codec_py if codec_c is None else codec_c
IMPLEMENTATION = "py" if _impl is codec_py else "c"

MAX_COMPOUND_PARTS = codec_py.MAX_COMPOUND_PARTS
MAX_PACKET_SIZE = codec_py.MAX_PACKET_SIZE
META_MAX_SIZE = codec_py.META_MAX_SIZE
UDP_BUFFER_SIZE = codec_py.UDP_BUFFER_SIZE
add_crc = _impl.add_crc
decode = _impl.decode
decode_compress = _impl.decode_compress
decode_header = _impl.decode_header
decode_node_state = _impl.decode_node_state
decode_user_msg_header = _impl.decode_user_msg_header
encode = _impl.encode
encode_compress = _impl.encode_compress
encode_header = _impl.encode_header
encode_node_state = _impl.encode_node_state
encode_user_msg_header = _impl.encode_user_msg_header
ingest = _impl.ingest
make_compound = _impl.make_compound
make_compounds = _impl.make_compounds
prepare = _impl.prepare
split_compound = _impl.split_compound

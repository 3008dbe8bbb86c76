"""Selector for memberlist's LZW: the compiled twin when built, the pure one otherwise.

Gossip code imports `compress`/`decompress` from here. Type checkers see the pure twin (both
have the same names, signatures and bytes); PROCONSUL_NO_EXTENSIONS=1 forces the pure twin at run
time. `lzw_py` and `lzw_c` name the two modules for tests and benchmarks (`lzw_c` is None when
nothing was compiled), and `IMPLEMENTATION` says which one is live.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from proconsul._compat import NO_EXTENSIONS
from proconsul.gossip import lzw_py

__all__ = ["DEFAULT_LIMIT", "IMPLEMENTATION", "compress", "decompress", "lzw_c", "lzw_py"]

lzw_c: ModuleType | None = None
if not (TYPE_CHECKING or NO_EXTENSIONS):
    try:
        from proconsul._speedups import gossip_lzw as lzw_c
    except ImportError:
        lzw_c = None

if TYPE_CHECKING:
    _impl = lzw_py
else:
    _impl = lzw_py if lzw_c is None else lzw_c
IMPLEMENTATION = "py" if _impl is lzw_py else "c"

DEFAULT_LIMIT = _impl.DEFAULT_LIMIT
compress = _impl.compress
decompress = _impl.decompress

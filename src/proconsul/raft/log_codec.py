"""Selector for the Raft log record framing: the compiled twin when built, the pure one otherwise.

The log store imports framing and the recovery scan from here. Type checkers always see the pure
twin (both have the same names, signatures and bytes); PROCONSUL_NO_EXTENSIONS=1 forces the pure
twin at run time so one install can exercise both. `log_codec_py` and `log_codec_c` name the two
modules for tests and benchmarks (`log_codec_c` is None when nothing was compiled), and
`IMPLEMENTATION` says which one is live.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from proconsul._compat import NO_EXTENSIONS
from proconsul.raft import log_codec_py

__all__ = [
    "FORMAT_VERSION",
    "IMPLEMENTATION",
    "RECORD_OVERHEAD",
    "ScanResult",
    "decode_entries",
    "encode_entries",
    "log_codec_c",
    "log_codec_py",
    "scan",
]

log_codec_c: ModuleType | None = None
if not (TYPE_CHECKING or NO_EXTENSIONS):
    try:
        from proconsul._speedups import raft_log as log_codec_c
    except ImportError:
        log_codec_c = None

if TYPE_CHECKING:
    _impl = log_codec_py
else:
    _impl = log_codec_py if log_codec_c is None else log_codec_c
IMPLEMENTATION = "py" if _impl is log_codec_py else "c"

FORMAT_VERSION = _impl.FORMAT_VERSION
RECORD_OVERHEAD = _impl.RECORD_OVERHEAD
ScanResult = _impl.ScanResult
decode_entries = _impl.decode_entries
encode_entries = _impl.encode_entries
scan = _impl.scan

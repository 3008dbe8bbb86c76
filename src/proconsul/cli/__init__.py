"""The `proconsul` command line, which also answers as `consul` through a symlink.

Commands follow Consul's grammar and output byte for byte where scripts read it.  The helpers here
write lines the way Consul's `cli.Ui` does: results on stdout, errors on stderr, one trailing
newline each, and raw bytes untouched (KV values need not be UTF-8).
"""

from __future__ import annotations

import sys


def out(text: str = "") -> None:
    """A result line on stdout."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def out_bytes(data: bytes) -> None:
    """A raw result (a KV value) on stdout, followed by a newline as Consul prints it."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data + b"\n")
    sys.stdout.buffer.flush()


def err(text: str) -> None:
    """An error line on stderr."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()

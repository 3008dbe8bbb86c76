"""The `proconsul` command line, which also answers as `consul` through a symlink.

Commands follow Consul's grammar and output byte for byte where scripts read it.  The helpers here
write lines the way Consul's `cli.Ui` does: results on stdout, errors on stderr, one trailing
newline each, and raw bytes untouched (KV values need not be UTF-8); background complaints (a
failing watch query, an unparsable environment variable) are logged in hclog's layout.
"""

from __future__ import annotations

import sys
import time


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


_LEVELS = {"ERROR": "[ERROR]", "WARN": "[WARN] ", "INFO": "[INFO] ", "DEBUG": "[DEBUG]"}


def log(level: str, name: str, message: str, **fields: str) -> None:
    """A log line on stderr in hclog's layout, as Consul's client libraries log."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now))
    zone = time.strftime("%z", time.localtime(now))
    zone = "Z" if zone in ("+0000", "-0000") else zone
    pairs = "".join(f' {k}="{v}"' if (" " in v or '"' in v or not v) else f" {k}={v}"
                    for k, v in ((k, v.replace('"', '\\"')) for k, v in fields.items()))
    err(f"{stamp}.{int(now * 1000) % 1000:03d}{zone} {_LEVELS.get(level, level)} {name}: "
        f"{message}{':' + pairs if pairs else ''}")

"""Check output capping, byte-for-byte as Consul reports it.

Operators and tooling grep check output for Consul's own truncation markers, so the two
shapes Consul uses are kept exactly: script/docker output keeps the *last* bytes behind a
`Captured N of M bytes` header (the end of a failing script is where the error is), and TTL
notes keep the *first* bytes followed by ` ... (captured N of M bytes)`.
"""

from __future__ import annotations

from .base import DEFAULT_OUTPUT_MAX_SIZE


def effective_max_size(size: int) -> int:
    """Consul falls back to the 4 KiB default for any non-positive cap, never to 'unlimited'."""
    return size if size >= 1 else DEFAULT_OUTPUT_MAX_SIZE


def truncate_ttl_output(output: str, max_size: int) -> str:
    """Cap an update's output the way TTL updates are capped (lengths count UTF-8 bytes)."""
    limit = effective_max_size(max_size)
    raw = output.encode("utf-8", "surrogateescape")
    total = len(raw)
    if total <= limit:
        return output
    head = raw[:limit].decode("utf-8", "ignore")
    return f"{head} ... (captured {limit} of {total} bytes)"


class TailBuffer:
    """Keeps only the last `size` bytes written while counting everything, so a chatty
    probe costs bounded memory however much it prints."""

    __slots__ = ("_buf", "size", "total_written")

    def __init__(self, size: int) -> None:
        self.size = effective_max_size(size)
        self._buf = bytearray()
        self.total_written = 0

    def write(self, data: bytes) -> None:
        self.total_written += len(data)
        if len(data) >= self.size:
            self._buf[:] = data[-self.size:]
            return
        self._buf += data
        excess = len(self._buf) - self.size
        if excess > 0:
            del self._buf[:excess]

    def text(self) -> str:
        """The kept bytes alone, as HTTP checks report a body."""
        return bytes(self._buf).decode("utf-8", "replace")

    def captured_text(self) -> str:
        """The kept bytes with Consul's header when anything was dropped (script/docker)."""
        body = self.text()
        if self.total_written > len(self._buf):
            return f"Captured {len(self._buf)} of {self.total_written} bytes\n...\n{body}"
        return body

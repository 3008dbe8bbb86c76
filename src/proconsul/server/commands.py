"""FSM commands: one message-type byte followed by a msgpack body with Go field names.

This is the byte string Raft carries in each log entry. The type numbers are Consul's
structs.MessageType values; the table is append-only, never renumber an entry.
"""

from __future__ import annotations

import enum
from typing import Any

import msgpack

from proconsul.errors import CommandError


class MessageType(enum.IntEnum):
    REGISTER = 0
    DEREGISTER = 1
    KVS = 2
    SESSION = 3
    TOMBSTONE = 5
    TXN = 8


#: The high bit marks a type a newer server may send that this one may skip (Consul's
#: IgnoreUnknownTypeFlag); every other unknown type is an error.
IGNORE_UNKNOWN_FLAG = 0x80


_packer = msgpack.Packer(use_bin_type=True)


def encode(msg_type: MessageType, body: dict[str, Any]) -> bytes:
    """Commands are encoded on the event loop thread only, so one Packer serves them all."""
    packed: bytes = _packer.pack(body)
    return bytes((int(msg_type),)) + packed


def decode(buf: bytes) -> tuple[int, dict[str, Any]]:
    if not buf:
        raise CommandError("empty command")
    try:
        body = msgpack.unpackb(buf[1:], raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as err:
        raise CommandError(f"failed to decode command of type {buf[0]}: {err}") from None
    if not isinstance(body, dict):
        raise CommandError(f"command of type {buf[0]} is not a map")
    return buf[0], body

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
    COORDINATE_BATCH_UPDATE = 6
    TXN = 8
    AUTOPILOT = 9


#: The high bit marks a type a newer server may send that this one may skip (Consul's
#: IgnoreUnknownTypeFlag); every other unknown type is an error.
IGNORE_UNKNOWN_FLAG = 0x80


_packer = msgpack.Packer(use_bin_type=True)


def encode(msg_type: MessageType, body: dict[str, Any], ignore_unknown: bool = False) -> bytes:
    """Commands are encoded on the event loop thread only, so one Packer serves them all.

    `ignore_unknown` sets IGNORE_UNKNOWN_FLAG on the type byte, for commands an older server
    may safely skip (Consul sends coordinate batches that way).
    """
    packed: bytes = _packer.pack(body)
    type_byte = int(msg_type) | (IGNORE_UNKNOWN_FLAG if ignore_unknown else 0)
    return bytes((type_byte,)) + packed


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

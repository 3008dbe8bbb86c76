"""memberlist's TCP stream framing (mirrors readStream, readRemoteState, readUserMsg and
rawSendMsgStream in hashicorp/memberlist net.go; gossip-wire.md §3).

A stream carries one message each way with no outer length: `[type][msgpack...][raw bytes]`,
optionally LZW-compressed (`[0x09][compress]`), optionally sealed in a length-prefixed frame
(`[0x0a][u32 BE length][vsn][nonce][ct+tag]`, AAD = those 5 bytes + label), optionally led by a
label (`[0xf4][len][label]`, written once by the dialer, memberlist >= 0.3.0).

The peer keeps the connection open for our reply, so the reader can never wait for EOF, and
it must not read a byte past the message either: those bytes belong to whoever reads next. So
every read asks for no more than the message still certainly needs. For a msgpack object that
lower bound comes from `_scan`, which walks the bytes already read and counts every element
still pending as at least one byte; after a push/pull header the node count and user-state
length raise it further. Reads are then few and large, yet never overshoot. Complete objects
are decoded by a `msgpack.Unpacker(raw=True)` fed with the same bytes, and `tell()` marks where
raw bytes (user state, user message) begin.

Hostile input costs at most what it sends: each declared length (frame, node count, user state,
msgpack string or container) is checked against `max_size` before anything is read for it, and
nothing is allocated ahead of the bytes arriving. Anything malformed or cut short (EOF included)
raises GossipFormatError; key and encryption-policy failures raise GossipDecryptError. Transport
errors (OSError) and cancellation pass through untouched; the caller bounds the whole exchange
with memberlist's TCPTimeout.
"""

from __future__ import annotations

import struct
from functools import partial
from typing import Any

import msgpack

from proconsul.errors import GossipDecryptError, GossipFormatError
from proconsul.gossip import codec, lzw
from proconsul.gossip.codec_py import (
    Decrypter,
    Encrypter,
    _compress_buf,
    add_label,
    check_label,
    run_decompress,
)
from proconsul.gossip.keyring import encrypted_length
from proconsul.gossip.messages import (
    ACK_RESP_MSG,
    COMPRESS_MSG,
    ENCRYPT_MSG,
    ERR_MSG,
    HAS_LABEL_MSG,
    MESSAGE_TYPE_NAMES,
    PING_MSG,
    PUSH_PULL_MSG,
    USER_MSG,
    Ack,
    ErrResp,
    Message,
    Ping,
    PushPull,
    PushPullHeader,
    UserMsg,
    UserMsgHeader,
)
from proconsul.gossip.transport import Stream

__all__ = [
    "MAX_PUSH_STATE_BYTES", "MAX_PUSH_STATE_NODES", "encode_push_pull", "encode_stream",
    "read_message",
]

#: `maxPushStateBytes`: largest encrypted frame, user state or user message accepted.
MAX_PUSH_STATE_BYTES = 20 * 1024 * 1024
#: `maxPushStateNodes` (memberlist master): node states in one push/pull.
MAX_PUSH_STATE_NODES = 1024 * 1024
#: Largest single read; a bigger need is met by several reads.
_CHUNK = 64 * 1024
#: Label header and frame header, on top of the message itself.
_SLACK = 2 + 255 + 5
_FRAME = struct.Struct(">BI")

# -- msgpack lengths -------------------------------------------------------------------------
# For first bytes 0xc0..0xdf: (fixed size, width of the length field, kind). A fixed size of 0
# means the size comes from the length field.
_SCALAR, _BYTES, _EXT, _ARRAY, _MAP = range(5)
_SPEC: tuple[tuple[int, int, int] | None, ...] = (
    (1, 0, _SCALAR), None, (1, 0, _SCALAR), (1, 0, _SCALAR),  # nil, (never used), false, true
    (0, 1, _BYTES), (0, 2, _BYTES), (0, 4, _BYTES),  # bin 8/16/32
    (0, 1, _EXT), (0, 2, _EXT), (0, 4, _EXT),  # ext 8/16/32
    (5, 0, _SCALAR), (9, 0, _SCALAR),  # float 32/64
    (2, 0, _SCALAR), (3, 0, _SCALAR), (5, 0, _SCALAR), (9, 0, _SCALAR),  # uint 8..64
    (2, 0, _SCALAR), (3, 0, _SCALAR), (5, 0, _SCALAR), (9, 0, _SCALAR),  # int 8..64
    (3, 0, _SCALAR), (4, 0, _SCALAR), (6, 0, _SCALAR), (10, 0, _SCALAR), (18, 0, _SCALAR),
    (0, 1, _BYTES), (0, 2, _BYTES), (0, 4, _BYTES),  # str 8/16/32
    (0, 2, _ARRAY), (0, 4, _ARRAY), (0, 2, _MAP), (0, 4, _MAP),
)


def _scan(buf: bytearray, pos: int) -> tuple[int, int]:
    """Walk one msgpack object at `buf[pos:]` without decoding it.

    Returns (0, end) when it is complete, else (missing, -1) where `missing` is a lower bound on
    the bytes still to come: the rest of a cut-off header or payload, plus one byte for every
    element not yet started. Iterative (a pending-element counter, no stack), so nesting depth
    costs nothing here.
    """
    end = len(buf)
    pending = 1
    while pending:
        if pos >= end:
            return pending, -1
        b = buf[pos]
        pending -= 1
        if b < 0x80 or b >= 0xE0:
            pos += 1
        elif b < 0x90:
            pending += 2 * (b & 0x0F)
            pos += 1
        elif b < 0xA0:
            pending += b & 0x0F
            pos += 1
        elif b < 0xC0:
            pos += 1 + (b & 0x1F)
        else:
            spec = _SPEC[b - 0xC0]
            if spec is None:
                raise GossipFormatError("invalid msgpack type byte 0xc1")
            size, width, kind = spec
            if width:
                if pos + 1 + width > end:
                    return pos + 1 + width - end + pending, -1
                count = int.from_bytes(buf[pos + 1:pos + 1 + width], "big")
                if kind == _BYTES:
                    size = 1 + width + count
                elif kind == _EXT:
                    size = 2 + width + count
                else:
                    pending += count if kind == _ARRAY else 2 * count
                    size = 1 + width
            pos += size
        if pos > end:
            return pos - end + pending, -1
    return 0, pos


class _Source:
    """The bytes of one message: a live stream read on demand, or a buffer already in memory
    (a decrypted frame, a decompressed body). `limit` caps everything it may ever hold."""

    __slots__ = ("_buf", "_fed", "_limit", "_stream", "_unpacker")

    def __init__(self, stream: Stream | None, data: bytes, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        size = max(limit, 1)
        # read_size is also the first buffer's size; msgpack's default would be 1 MiB per stream
        self._unpacker = msgpack.Unpacker(raw=True, max_buffer_size=size,
                                          read_size=min(size, 4096))
        #: bytes fed but not consumed yet; buf[0] is at stream offset unpacker.tell()
        self._buf = bytearray()
        self._fed = 0
        if data:
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        self._buf += data
        self._unpacker.feed(data)
        self._fed += len(data)

    async def _fill(self, missing: int) -> None:
        """Make `missing` more bytes available, reading no more than that."""
        if self._stream is None:
            raise GossipFormatError("message truncated")
        if self._fed + missing > self._limit:
            raise GossipFormatError(f"stream message larger than the {self._limit}-byte limit")
        while missing > 0:
            chunk = await self._stream.read(min(missing, _CHUNK))
            if not chunk:
                raise GossipFormatError("stream ended in the middle of a message")
            self._feed(chunk)
            missing -= len(chunk)

    async def take(self, n: int) -> bytes:
        """Exactly `n` raw bytes."""
        if n > len(self._buf):
            await self._fill(n - len(self._buf))
        data: bytes = self._unpacker.read_bytes(n)
        del self._buf[:n]
        return data

    async def _complete(self, extra: int) -> int:
        """Read until one whole msgpack object is buffered; its length. `extra` is a lower
        bound on the message bytes that follow the object, so reads can be larger."""
        while True:
            missing, end = _scan(self._buf, 0)
            if not missing:
                return end
            await self._fill(missing + extra)

    async def unpack(self, extra: int = 0) -> Any:
        """The next msgpack object, decoded (raw=True: bytes for every string)."""
        size = await self._complete(extra)
        start = self._unpacker.tell()
        try:
            obj = self._unpacker.unpack()
        except (ValueError, TypeError, OverflowError, RecursionError,
                msgpack.OutOfData) as exc:
            raise GossipFormatError(f"bad msgpack body: {exc}") from None
        if self._unpacker.tell() - start != size:
            raise GossipFormatError("msgpack object length mismatch")
        del self._buf[:size]
        return obj

    async def raw_object(self) -> bytes:
        """The next msgpack object's bytes, undecoded (for the codec's own decoders)."""
        return await self.take(await self._complete(0))


async def read_message(
    stream: Stream,
    *,
    keyring: Decrypter | None = None,
    label: bytes = b"",
    verify_incoming: bool = True,
    skip_inbound_label_check: bool = False,
    max_size: int = MAX_PUSH_STATE_BYTES,
    label_header: bool = True,
) -> Message:
    """Read one stream message: Ping, Ack, PushPull, UserMsg or ErrResp.

    Returns as soon as the message is complete and leaves any later bytes unread.
    `label_header` says whether the stream may start with a label header: true for what a
    dialer sends (the accepting side strips and checks it, as memberlist's handleConn), false
    for a reply, where the label is only authenticated data. Encrypted frames, user state and
    user messages are bounded by `max_size`, decompressed bodies by twice that (memberlist
    master's budget: the user state plus as much again for node states).
    """
    src = _Source(stream, b"", 2 * max_size + _SLACK)
    first = await _first_byte(src)
    aad = label
    if label_header:
        got = b""
        if first == HAS_LABEL_MSG:
            got = await _read_label(src)
            first = await _first_byte(src)
        aad = check_label(got, label, skip_inbound_label_check)

    if first == ENCRYPT_MSG:
        if keyring is None:
            raise GossipDecryptError("Remote state is encrypted and encryption is not configured")
        header = await src.take(4)
        length = int.from_bytes(header, "big")
        if length > max_size:
            raise GossipFormatError(f"Remote node state is larger than limit ({length})")
        sealed = await src.take(length)
        plain = keyring.decrypt(sealed, _FRAME.pack(ENCRYPT_MSG, length) + aad)
        if not plain:
            raise GossipFormatError("encrypted stream message is empty")
        first = plain[0]
        src = _Source(None, plain[1:], len(plain))
    elif keyring is not None and verify_incoming:
        raise GossipDecryptError("Encryption is configured but remote state is not encrypted")

    if first == COMPRESS_MSG:
        compressed = _compress_buf(await src.unpack())
        inner = run_decompress(partial(lzw.decompress, limit=2 * max_size), compressed)
        first = inner[0]
        src = _Source(None, inner[1:], len(inner))

    if first == PUSH_PULL_MSG:
        return await _read_push_pull(src, max_size)
    if first == USER_MSG:
        user = codec.decode_user_msg_header(await src.unpack())
        if not 0 <= user.user_msg_len <= max_size:
            raise GossipFormatError(f"user message length ({user.user_msg_len}) exceeds limit")
        return UserMsg(await src.take(user.user_msg_len))
    if first in (PING_MSG, ACK_RESP_MSG, ERR_MSG):
        return codec.decode(bytes((first,)) + await src.raw_object())
    name = MESSAGE_TYPE_NAMES.get(first, "unknown")
    raise GossipFormatError(f"Received invalid msgType ({first}, {name}) on a stream")


async def _first_byte(src: _Source) -> int:
    try:
        return (await src.take(1))[0]
    except GossipFormatError:
        raise GossipFormatError("stream closed before a message") from None


async def _read_label(src: _Source) -> bytes:
    """The label after a 0xf4 byte (memberlist's RemoveLabelHeaderFromStream)."""
    try:
        size = (await src.take(1))[0]
        got = await src.take(size) if size else b""
    except GossipFormatError:
        raise GossipFormatError("cannot decode label; stream has been truncated") from None
    if not got:
        raise GossipFormatError("label header cannot be empty when present")
    return got


async def _read_push_pull(src: _Source, max_size: int) -> PushPull:
    """Header, then exactly `Nodes` node states, then exactly `UserStateLen` raw bytes."""
    header = codec.decode_header(await src.unpack())
    count, user_len = header.nodes, header.user_state_len
    if not 0 <= count <= min(MAX_PUSH_STATE_NODES, max_size):
        raise GossipFormatError(f"number of nodes in header ({count}) exceeds limit")
    if not 0 <= user_len <= max_size:
        raise GossipFormatError(f"user state length ({user_len}) exceeds limit")
    nodes = []
    for index in range(count):
        # Every later node state is at least one byte, and the user state follows them all.
        obj = await src.unpack(count - index - 1 + user_len)
        nodes.append(codec.decode_node_state(obj))
    user_state = await src.take(user_len)
    return PushPull(join=header.join, nodes=nodes, user_state=user_state)


# -- writing ---------------------------------------------------------------------------------

def encode_push_pull(pp: PushPull) -> bytes:
    """`[0x06][header][node states...][user state]`, as memberlist's sendLocalState builds it
    (the header's counts are taken from the lists, so they cannot disagree)."""
    header = PushPullHeader(nodes=len(pp.nodes), user_state_len=len(pp.user_state),
                            join=pp.join)
    return b"".join((bytes((PUSH_PULL_MSG,)), codec.encode_header(header),
                     *(codec.encode_node_state(node) for node in pp.nodes), pp.user_state))


def encode_stream(
    msg: Message,
    *,
    compress: bool = False,
    keyring: Encrypter | None = None,
    label: bytes = b"",
    encrypt_version: int = 1,
    label_header: bool = True,
) -> bytes:
    """The bytes of one stream message, layered as memberlist's rawSendMsgStream does.

    Message -> LZW (always when `compress`: on streams memberlist does not compare sizes) ->
    encrypted frame sealed with the primary key, AAD = frame header + label -> label header.
    The label header belongs only at the start of a dialed stream; a reply passes
    `label_header=False` and keeps the label as authenticated data alone.
    """
    if isinstance(msg, PushPull):
        buf = encode_push_pull(msg)
    elif isinstance(msg, UserMsg):
        buf = (bytes((USER_MSG,)) + codec.encode_user_msg_header(UserMsgHeader(len(msg.payload)))
               + msg.payload)
    elif isinstance(msg, (Ping, Ack, ErrResp)):
        buf = codec.encode(msg)
    else:
        raise TypeError(f"{type(msg).__name__} is not sent on streams")
    if compress:
        buf = codec.encode_compress(lzw.compress(buf))
    if keyring is not None:
        frame = _FRAME.pack(ENCRYPT_MSG, encrypted_length(encrypt_version, len(buf)))
        buf = frame + keyring.encrypt(buf, frame + label, encrypt_version)
    return add_label(buf, label) if label_header else buf

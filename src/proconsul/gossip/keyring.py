"""memberlist's gossip keyring and AES-GCM sealing (mirrors hashicorp/memberlist keyring.go and
security.go), plus the keyring file serf and Consul keep next to their data.

Every UDP packet and every TCP stream message of an encrypted pool passes through `encrypt` or
`decrypt`, so each installed key carries one ready `AESGCM` object: building a cipher costs more
than sealing a 1400-byte packet. The key list is replaced as a whole on every change, never edited
in place, so a packet being opened while an operator rotates keys sees either the old or the new
ring, never a half-edited one.

Wire layout (gossip-wire.md §2.8): `[vsn][12-byte nonce][ciphertext || 16-byte tag]`. Version 0
PKCS#7-pads the plaintext to a multiple of 16 before sealing, version 1 does not; receivers accept
both. Index 0 is the primary key: it seals everything, and it is the first key tried on receive,
so during a rotation a packet under a newer key costs one failed open per key in front of it.

Error texts are memberlist 0.2.2's (the version serf 0.9.4 vendors) and serf's, because they reach
operators unchanged in keyring query responses and CLI output.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from proconsul.errors import GossipDecryptError, GossipError

__all__ = [
    "KEY_SIZES", "MAX_ENCRYPTION_VERSION", "NONCE_SIZE", "TAG_SIZE", "VERSION_SIZE", "Keyring",
    "KeyringError", "decode_key", "encode_key", "encrypted_length", "encryption_overhead",
    "validate_key",
]

#: AES-128, AES-192 and AES-256; `serf keygen` and `consul keygen` make 32-byte keys.
KEY_SIZES = (16, 24, 32)
VERSION_SIZE = 1
NONCE_SIZE = 12
TAG_SIZE = 16
_BLOCK_SIZE = 16
#: Versions 0 (padded) and 1 (unpadded) exist; anything higher is refused on receive.
MAX_ENCRYPTION_VERSION = 1

_HEADER = VERSION_SIZE + NONCE_SIZE


class KeyringError(GossipError, ValueError):
    """A key or keyring operation that cannot be done; `str(err)` is the text serf and
    memberlist answer with (keyring query responses carry it as the node's message)."""


def validate_key(key: bytes) -> None:
    """memberlist's ValidateKey: only AES key sizes are usable."""
    if len(key) not in KEY_SIZES:
        raise KeyringError("key size must be 16, 24 or 32 bytes")


def encryption_overhead(version: int) -> int:
    """Most bytes sealing adds: 29 for version 1, 45 for version 0 (padding can add 16). The
    piggyback budget of a gossip packet is reduced by this much."""
    if version == 0:
        return VERSION_SIZE + NONCE_SIZE + _BLOCK_SIZE + TAG_SIZE
    if version == 1:
        return VERSION_SIZE + NONCE_SIZE + TAG_SIZE
    raise ValueError(f"unsupported encryption version {version}")


def encrypted_length(version: int, size: int) -> int:
    """Exact sealed size of a `size`-byte plaintext; a TCP frame announces it before the
    ciphertext, and it is part of the frame's authenticated data."""
    if version >= 1:
        return _HEADER + size + TAG_SIZE
    return _HEADER + size + (_BLOCK_SIZE - size % _BLOCK_SIZE) + TAG_SIZE


# -- base64 keys -----------------------------------------------------------------------------
# Go's base64.StdEncoding, reproduced because its error text ("illegal base64 data at input byte
# N", with Go's choice of N) is what Consul and serf print for a bad key, and because it skips
# CR and LF anywhere, which Python's strict decoder does not.

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}
_PAD = 0x3D
_NEWLINES = (0x0A, 0x0D)


def _corrupt(offset: int) -> KeyringError:
    return KeyringError(f"illegal base64 data at input byte {offset}")


def _go_b64decode(text: str) -> bytes:
    """Go's `base64.StdEncoding.DecodeString`, quantum by quantum, with Go's error offsets."""
    src = text.encode("utf-8", "surrogateescape")
    n = len(src)
    out = bytearray()
    si = 0
    while si < n:
        quad = [0, 0, 0, 0]
        got = 0
        while got < 4:
            if si == n:
                if got == 0:
                    return bytes(out)
                raise _corrupt(si - got)
            c = src[si]
            si += 1
            value = _DECODE.get(c)
            if value is not None:
                quad[got] = value
                got += 1
                continue
            if c in _NEWLINES:
                continue
            if c != _PAD or got < 2:
                raise _corrupt(si - 1)
            if got == 2:  # "==" expected: the second '=' may follow newlines
                while si < n and src[si] in _NEWLINES:
                    si += 1
                if si == n:
                    raise _corrupt(n)
                if src[si] != _PAD:
                    raise _corrupt(si - 1)
                si += 1
            while si < n and src[si] in _NEWLINES:
                si += 1
            if si < n:
                raise _corrupt(si)
            break
        value = quad[0] << 18 | quad[1] << 12 | quad[2] << 6 | quad[3]
        out += value.to_bytes(3, "big")[:got - 1]
    return bytes(out)


def decode_key(text: str, *, validate: bool = True) -> bytes:
    """A key from its base64 text (as `encrypt`, `serf keys -install` and keyring files carry
    it). Errors carry Go's bare texts; callers add their own prefix as Consul does
    ("encrypt has invalid key: ...", "Invalid key: ...")."""
    key = _go_b64decode(text)
    if validate:
        validate_key(key)
    return key


def encode_key(key: bytes) -> str:
    """The base64 text of a key, as `serf keys -list` and keyring files show it."""
    return base64.b64encode(key).decode("ascii")


# -- the keyring -----------------------------------------------------------------------------

class Keyring:
    """An ordered set of AES keys; index 0 (the primary) seals, all of them open.

    Satisfies the codec's `Decrypter` and `Encrypter` protocols. Built like memberlist's
    NewKeyring: the primary first, then the other keys in order, duplicates dropped; with no
    `primary_key` the first of `keys` is primary. An empty keyring is allowed (encryption off).
    """

    __slots__ = ("_ring",)

    _ring: tuple[tuple[bytes, AESGCM], ...]

    def __init__(self, keys: Iterable[bytes] = (), primary_key: bytes | None = None) -> None:
        self._ring = ()
        keys = [bytes(key) for key in keys]
        if primary_key is None and keys:
            primary_key = keys[0]
        if primary_key is not None:
            if not primary_key:
                raise KeyringError("Empty primary key not allowed")
            self.add_key(primary_key)
        for key in keys:
            self.add_key(key)

    @classmethod
    def from_base64(cls, keys: Iterable[str]) -> Keyring:
        """A keyring from base64 keys, primary first (Consul's `encrypt`, a keyring file)."""
        return cls([decode_key(text, validate=False) for text in keys])

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Keyring:
        """Read a keyring file: a JSON array of base64 keys, primary first (serf's
        `-keyring-file`, Consul's serf/local.keyring and serf/remote.keyring)."""
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise KeyringError(f"Failed to read keyring file: {exc}") from None
        try:
            texts = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise KeyringError(f"Failed to decode keyring file: {exc}") from None
        if texts is None:
            texts = []
        if type(texts) is not list or not all(type(text) is str for text in texts):
            raise KeyringError("Failed to decode keyring file: expected a JSON array of strings")
        try:
            keys = [decode_key(text, validate=False) for text in texts]
        except KeyringError as exc:
            raise KeyringError(f"Failed to decode key from keyring: {exc}") from None
        if not keys:
            raise KeyringError("Keyring file contains no keys")
        try:
            return cls(keys)
        except KeyringError as exc:
            raise KeyringError(f"Failed to restore keyring: {exc}") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the keyring file (mode 0600, as serf) atomically: a crash leaves either the
        old file or the new one, never a torn one that would stop the agent from starting."""
        text = json.dumps(self.to_base64(), indent=2).encode("ascii")
        target = os.fspath(path)
        directory = os.path.dirname(target) or "."
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".keyring-", dir=directory)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(text)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise KeyringError(f"Failed to write keyring file: {exc}") from None

    # -- keys ----------------------------------------------------------------------------

    @property
    def keys(self) -> list[bytes]:
        """Installed keys, primary first (a copy)."""
        return [key for key, _ in self._ring]

    @property
    def primary_key(self) -> bytes | None:
        ring = self._ring
        return ring[0][0] if ring else None

    def to_base64(self) -> list[str]:
        return [encode_key(key) for key, _ in self._ring]

    def add_key(self, key: bytes) -> None:
        """Install a key for decryption (memberlist AddKey); a no-op when already installed.
        The first key ever added becomes the primary."""
        key = bytes(key)
        validate_key(key)
        ring = self._ring
        if any(installed == key for installed, _ in ring):
            return
        self._ring = (*ring, (key, AESGCM(key)))

    def use_key(self, key: bytes) -> None:
        """Make an installed key the primary; peers must already have it (memberlist UseKey)."""
        ring = self._ring
        for index, entry in enumerate(ring):
            if entry[0] == key:
                self._ring = (entry, *ring[:index], *ring[index + 1:])
                return
        raise KeyringError("Requested key is not in the keyring")

    def remove_key(self, key: bytes) -> None:
        """Drop a key (memberlist RemoveKey); removing one that is not installed does nothing,
        removing the primary is refused."""
        ring = self._ring
        if ring and ring[0][0] == key:
            raise KeyringError("Removing the primary key is not allowed")
        self._ring = tuple(entry for entry in ring if entry[0] != key)

    def __repr__(self) -> str:
        return f"<Keyring with {len(self._ring)} keys>"

    # -- sealing -------------------------------------------------------------------------

    def encrypt(self, buf: bytes, aad: bytes = b"", version: int = 1) -> bytes:
        """Seal `buf` with the primary key: `[version][random nonce][ciphertext+tag]`."""
        ring = self._ring
        if not ring:
            raise KeyringError("no primary key to encrypt with")
        if version == 0:
            pad = _BLOCK_SIZE - len(buf) % _BLOCK_SIZE
            data = bytes(buf) + bytes((pad,)) * pad
        elif version == 1:
            data = bytes(buf)
        else:
            raise ValueError(f"unsupported encryption version {version}")
        nonce = os.urandom(NONCE_SIZE)
        sealed: bytes = ring[0][1].encrypt(nonce, data, aad or None)
        return bytes((version,)) + nonce + sealed

    def decrypt(self, buf: bytes, aad: bytes = b"") -> bytes:
        """Open a sealed message with the first key that authenticates it, primary first."""
        if not buf:
            raise GossipDecryptError("Cannot decrypt empty payload")
        version = buf[0]
        if version > MAX_ENCRYPTION_VERSION:
            raise GossipDecryptError(f"Unsupported encryption version {version}")
        if len(buf) < encrypted_length(version, 0):
            raise GossipDecryptError(f"Payload is too small to decrypt: {len(buf)}")
        view = memoryview(buf)
        nonce = view[VERSION_SIZE:_HEADER]
        sealed = view[_HEADER:]
        associated = aad or None
        for _, cipher in self._ring:
            try:
                plain: bytes = cipher.decrypt(nonce, sealed, associated)
            except InvalidTag:
                continue
            if version == 0:
                return _unpad(plain)
            return plain
        raise GossipDecryptError("No installed keys could decrypt the message")


def _unpad(plain: bytes) -> bytes:
    """Strip PKCS#7 padding. Go trusts the pad byte (the tag already vouched for the sender);
    an impossible one is refused here instead of slicing garbage."""
    pad = plain[-1] if plain else 0
    if not 1 <= pad <= _BLOCK_SIZE or pad > len(plain):
        raise GossipDecryptError("invalid PKCS#7 padding in a version 0 message")
    return plain[:-pad]

"""A file-backed StableStore: Raft's current term and vote, replaced atomically.

Losing or half-writing the term or vote could let a server vote twice in one term, so every
change rewrites the whole (tiny) file under a temporary name, syncs it, renames it over the old
one and syncs the directory. A crash at any point leaves either the old file or the new one,
never a mixture, and a file that does not verify is an error rather than a reset to zero.

File layout: the 8-byte magic ``PCSTABL1``, the XXH64 (seed 0) of the body as a little-endian
uint64, then the body, a msgpack map of bytes keys to bytes values.
"""

from __future__ import annotations

import errno
import os
import struct
import threading

import msgpack
from xxhash import xxh64_intdigest

from proconsul.errors import DiskFull, StorageError
from proconsul.raft.stable import decode_uint64, encode_uint64

__all__ = ["FileStableStore", "fsync_dir", "storage_error"]

_MAGIC = b"PCSTABL1"
_SUM = struct.Struct("<Q")
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def storage_error(err: OSError, doing: str) -> StorageError:
    """The store error for a failed system call: DiskFull when the disk is full, so callers
    can tell "free some space" apart from a failing device."""
    if err.errno in _NO_SPACE:
        return DiskFull(f"no space left on device {doing}: {err.strerror}")
    return StorageError(f"{doing} failed: {err}")


def fsync_dir(path: str) -> None:
    """Sync a directory so that files created, renamed or removed in it survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class FileStableStore:
    """Term and vote in one small file; `set` is durable and crash-atomic when it returns."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._tmp = self.path + ".tmp"
        self._dir = os.path.dirname(os.path.abspath(self.path))
        self._lock = threading.Lock()
        if os.path.exists(self._tmp):
            # a write that never reached its rename: the old file is still the truth
            os.unlink(self._tmp)
        self._data = self._load()

    def _load(self) -> dict[bytes, bytes]:
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return {}
        except OSError as err:
            raise storage_error(err, f"reading the stable store {self.path}") from err
        if len(raw) < 16 or raw[:8] != _MAGIC:
            raise StorageError(f"stable store {self.path} is damaged: bad header")
        body = raw[16:]
        if _SUM.unpack_from(raw, 8)[0] != xxh64_intdigest(body):
            raise StorageError(f"stable store {self.path} is damaged: checksum mismatch")
        try:
            data = msgpack.unpackb(body, raw=True, strict_map_key=False)
        except (ValueError, msgpack.UnpackException) as err:
            raise StorageError(f"stable store {self.path} is damaged: {err}") from err
        if not isinstance(data, dict) or not all(
            isinstance(k, bytes) and isinstance(v, bytes) for k, v in data.items()
        ):
            raise StorageError(f"stable store {self.path} is damaged: not a map of bytes")
        return data

    def _replace(self, data: dict[bytes, bytes]) -> None:
        body = msgpack.packb(data, use_bin_type=True)
        blob = _MAGIC + _SUM.pack(xxh64_intdigest(body)) + body
        try:
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                _write_all(fd, blob)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self._tmp, self.path)
            fsync_dir(self._dir)
        except OSError as err:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            raise storage_error(err, f"writing the stable store {self.path}") from err

    def set(self, key: bytes, value: bytes) -> None:
        with self._lock:
            data = dict(self._data)
            data[bytes(key)] = bytes(value)
            self._replace(data)
            self._data = data

    def get(self, key: bytes) -> bytes:
        return self._data.get(bytes(key), b"")

    def set_uint64(self, key: bytes, value: int) -> None:
        self.set(key, encode_uint64(value))

    def get_uint64(self, key: bytes) -> int:
        return decode_uint64(self.get(key), f"stable store {self.path}", key)

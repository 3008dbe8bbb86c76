"""The durable Raft log: segment files of framed records, written by one thread with group commit.

A server acknowledges a write only after its log entry is on disk, so the append path decides
write latency and throughput. Each `store_logs` call frames its entries at once (on the caller's
thread, so a bad batch fails there) and queues the bytes; a single writer thread takes everything
queued, writes it with one system call per segment and makes it durable with one `fdatasync`.
Callers that arrive while a sync is in flight therefore share the next one, which is what lets
many writers go far beyond the disk's own sync rate. The event loop never waits on the disk: the
writer answers a whole batch with one `call_soon_threadsafe`.

Files in the directory:

* ``<first index, 20 digits>.seg``: records back to back (format and recovery rule in
  log_codec_py.py). A segment is closed when the next write would take it past `segment_size`;
  one store_logs call never spans two segments.
* ``log.meta``: a FileStableStore holding the index floor set by prefix deletion, so compaction
  never has to rewrite a segment that still holds entries to keep.

Consistency rules: only the writer thread changes files and the index; a failed write or sync is
cut back to the last durable length, fails its callers and every request queued behind it (their
indexes would follow a hole), and leaves the store usable. Suffix deletion removes later segments
newest first before truncating, so a crash in between leaves a prefix of the old log, never a
gap. first_index, last_index and get_log see durable entries only, so what they report is what
a restart would find.
"""

from __future__ import annotations

import asyncio
import bisect
import errno
import logging
import os
import re
import threading
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from proconsul.errors import LogCorruption, LogNotFound, StorageError
from proconsul.raft import log_codec
from proconsul.raft.file_stable import FileStableStore, fsync_dir, storage_error
from proconsul.raft.log import Log
from proconsul.raft.log_codec_py import ScanResult

__all__ = ["DEFAULT_SEGMENT_SIZE", "FileLogStore", "LogCodec"]

log = logging.getLogger("proconsul.raft.log")

DEFAULT_SEGMENT_SIZE = 64 << 20
#: Recently stored entries kept in memory, for the reads that follow appends.
DEFAULT_CACHE_SIZE = 1024
_SEGMENT_NAME = re.compile(r"^(\d{20})\.seg$")
_FLOOR_KEY = b"FirstIndex"
_OVERHEAD = log_codec.RECORD_OVERHEAD


class LogCodec(Protocol):
    """Either twin of the record framing (a module); injectable so benchmarks can compare."""

    def encode_entries(self, logs: Sequence[Log]) -> bytes: ...

    def decode_entries(
        self, buf: bytes | bytearray | memoryview, offset: int = ..., segment: str = ...
    ) -> tuple[list[Log], int]: ...

    def scan(
        self, buf: bytes | bytearray | memoryview, segment: str = ..., last: bool = ...
    ) -> ScanResult: ...


@dataclass(slots=True, eq=False)
class _Segment:
    first: int
    path: str
    fd: int  # read-only, used by get_log under the store lock
    offsets: array[int] = field(default_factory=lambda: array("Q"))
    end: int = 0  # durable length


class _Append:
    __slots__ = ("buf", "error", "first", "future", "last", "logs")

    def __init__(self, future: asyncio.Future[None], logs: Sequence[Log], buf: bytes,
                 first: int, last: int) -> None:
        # one flat class, no super() call: this runs once per append on the event loop
        self.future = future
        self.logs = logs
        self.buf = buf
        self.first = first
        self.last = last
        self.error: StorageError | None = None


class _Delete:
    __slots__ = ("error", "future", "prefix", "upto")

    def __init__(self, future: asyncio.Future[None], prefix: bool, upto: int) -> None:
        self.future = future
        #: a prefix deletion keeps `upto` and after (0: keep nothing); a suffix one keeps up
        #: to and including `upto`
        self.prefix = prefix
        self.upto = upto
        self.error: StorageError | None = None


_Request = _Append | _Delete


def _segment_path(directory: str, first: int) -> str:
    return os.path.join(directory, f"{first:020d}.seg")


class FileLogStore:
    """LogStore over segment files in `directory`.

    Construction runs the recovery scan, which blocks: do it before serving, or in an executor.
    `sync` and `write` are the system calls used for segment data (injectable so tests can count
    syncs and simulate a full disk); `syncs` counts data syncs. A caller cancelled while waiting
    does not withdraw its entries, which are still written.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        codec: LogCodec | None = None,
        sync: Callable[[int], None] = os.fdatasync,
        write: Callable[[int, memoryview], int] = os.write,
    ) -> None:
        if segment_size < 1:
            raise ValueError("segment_size must be positive")
        self.directory = os.fspath(directory)
        self.segment_size = segment_size
        self.syncs = 0
        self._codec: LogCodec = codec if codec is not None else log_codec
        self._encode = self._codec.encode_entries
        self._sync = sync
        self._write = write
        self._cache_size = cache_size
        self._cache: dict[int, Log] = {}
        # guards everything below that both threads touch
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._pending: list[_Request] = []
        self._idle = False
        self._closing = False
        self._closed = False
        self._exit: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        self._broken: StorageError | None = None
        self._segments: list[_Segment] = []
        self._firsts: list[int] = []
        self._first = 0  # durable
        self._last = 0
        self._accepted_first = 0  # durable plus queued
        self._accepted_last = 0
        # the writer thread's own state
        self._wfd = -1
        self._floor = 0
        self._changed = False  # whether a deletion in progress has touched any file
        os.makedirs(self.directory, exist_ok=True)
        self._meta = FileStableStore(os.path.join(self.directory, "log.meta"))
        try:
            self._recover()
        except BaseException:
            self._release()
            raise
        self._accepted_first, self._accepted_last = self._first, self._last
        self._thread = threading.Thread(target=self._run, name="raft-log-writer", daemon=True)
        self._thread.start()

    # -- recovery -------------------------------------------------------------------------------

    def _recover(self) -> None:
        self._floor = self._meta.get_uint64(_FLOOR_KEY)
        found: list[tuple[int, str]] = []
        for name in os.listdir(self.directory):
            match = _SEGMENT_NAME.match(name)
            if match:
                found.append((int(match.group(1)), os.path.join(self.directory, name)))
            elif name.endswith(".seg"):
                raise StorageError(f"unexpected file in the log directory: {name}")
        found.sort()
        removed = False
        # segments that end before the floor were dropped by a prefix deletion that was cut
        # short; their successor's name says where they ended
        while len(found) > 1 and found[1][0] <= self._floor:
            os.unlink(found.pop(0)[1])
            removed = True
        previous = 0
        for number, (first, path) in enumerate(found):
            last = number == len(found) - 1
            with open(path, "rb") as f:
                data = f.read()
            result = self._codec.scan(data, path, last)
            del data
            if not result.offsets:
                if not last:
                    raise LogCorruption(f"log segment {path} holds no records")
                os.unlink(path)
                removed = True
                continue
            if result.first_index != first:
                raise LogCorruption(
                    f"log segment {path} starts with index {result.first_index}, its name "
                    f"says {first}"
                )
            if previous and first != previous + 1:
                raise LogCorruption(
                    f"log segment {path} starts at index {first}, the previous one ends at "
                    f"{previous}"
                )
            if result.torn:
                log.warning("cutting a torn tail off %s at byte offset %d (%s, %d bytes)",
                            path, result.end, result.reason, result.size - result.end)
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.ftruncate(fd, result.end)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            previous = result.last_index
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            self._segments.append(_Segment(first, path, fd, result.offsets, result.end))
            self._firsts.append(first)
        if self._segments and self._floor > previous:
            # everything was deleted; the deletion stopped before all files were gone
            for segment in self._segments:
                os.close(segment.fd)
                os.unlink(segment.path)
            self._segments.clear()
            self._firsts.clear()
            removed = True
        if removed:
            fsync_dir(self.directory)
        if self._segments:
            self._first = max(self._segments[0].first, self._floor)
            self._last = previous
            active = self._segments[-1]
            self._wfd = os.open(active.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)

    # -- reads ----------------------------------------------------------------------------------

    def first_index(self) -> int:
        return self._first

    def last_index(self) -> int:
        return self._last

    def get_log(self, index: int) -> Log:
        with self._lock:
            if self._closed:
                raise StorageError("the log store is closed")
            cached = self._cache.get(index)
            if cached is not None:
                return cached
            if not self._first <= index <= self._last or not self._first:
                raise LogNotFound(
                    f"log entry {index} not found (the log holds {self._first}..{self._last})"
                )
            segment = self._segments[bisect.bisect_right(self._firsts, index) - 1]
            k = index - segment.first
            start = segment.offsets[k]
            stop = segment.offsets[k + 1] if k + 1 < len(segment.offsets) else segment.end
            try:
                data = os.pread(segment.fd, stop - start, start)
            except OSError as err:
                raise storage_error(err, f"reading {segment.path}") from err
        try:
            logs, _ = self._codec.decode_entries(data, 0, segment.path)
        except LogCorruption:
            logs = []
        if len(logs) != 1 or logs[0].index != index:
            raise LogCorruption(
                f"log segment {segment.path}: entry {index} at byte offset {start} does not "
                f"verify"
            )
        return logs[0]

    # -- writes (event loop side) ---------------------------------------------------------------

    def _submit(self, request: _Request) -> None:
        # with self._lock held
        if self._closed:
            raise StorageError("the log store is closed")
        if self._broken is not None:
            raise StorageError(f"the log store is unusable: {self._broken}")
        self._pending.append(request)
        if self._idle:
            self._idle = False
            self._wakeup.notify()

    async def store_logs(self, logs: Sequence[Log]) -> None:
        if not logs:
            return
        buf = self._encode(logs)  # validates fields and consecutive indexes
        first = logs[0].index
        future = asyncio.get_running_loop().create_future()
        request = _Append(future, logs, buf, first, first + len(logs) - 1)
        with self._lock:
            tail = self._accepted_last
            if tail and first != tail + 1:
                raise ValueError(f"log entries must follow index {tail}, got {first}")
            if not tail:
                self._accepted_first = first
            self._submit(request)
            self._accepted_last = request.last
        await future

    async def delete_range(self, lo: int, hi: int) -> None:
        future = asyncio.get_running_loop().create_future()
        with self._lock:
            first, last = self._accepted_first, self._accepted_last
            if lo > hi or not last or hi < first or lo > last:
                return
            if lo <= first:
                request = _Delete(future, True, hi + 1 if hi < last else 0)
            elif hi >= last:
                request = _Delete(future, False, lo - 1)
            else:
                raise ValueError(
                    f"cannot delete {lo}..{hi} from the middle of the log {first}..{last}"
                )
            self._submit(request)
            if request.prefix and request.upto:
                self._accepted_first = request.upto
            elif request.prefix:
                self._accepted_first = self._accepted_last = 0
            else:
                self._accepted_last = request.upto
        await future

    async def close(self) -> None:
        """Finish what is queued, stop the writer and release the files."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._closing = True
            self._exit = (loop, done)
            self._wakeup.notify()
        await done

    # -- the writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closing:
                    self._idle = True
                    self._wakeup.wait()
                self._idle = False
                batch = self._pending
                self._pending = []
                if not batch:
                    exit_to = self._exit
                    break
            try:
                self._process(batch)
            except Exception as err:  # a bug must not leave callers waiting forever
                log.exception("the log writer failed")
                self._broken = StorageError(f"the log writer failed: {err!r}")
                self._give_up(batch, self._broken, True)
        self._release()
        if exit_to is not None:
            loop, done = exit_to
            loop.call_soon_threadsafe(_resolve, done)

    def _process(self, batch: list[_Request]) -> None:
        appends: list[_Append] = []
        failed = False
        for request in batch:
            if failed:
                request.error = StorageError("an earlier log write failed")
            elif isinstance(request, _Append):
                appends.append(request)
            else:
                assert isinstance(request, _Delete)
                if self._flush(appends):
                    failed = True
                    request.error = StorageError("an earlier log write failed")
                else:
                    failed = self._delete(request)
                appends = []
        if appends and not failed:
            failed = self._flush(appends)
        if failed:
            # the requests of this batch carry their own outcome already
            self._give_up(batch, StorageError("an earlier log write failed"), False)
        else:
            self._answer(batch)

    def _give_up(self, batch: list[_Request], error: StorageError, whole: bool) -> None:
        """Answer a batch in which something failed, and fail everything queued behind it:
        those requests were accepted against entries that were not kept. `whole` fails every
        request of the batch too, for when it is unknown which of them were carried out."""
        with self._lock:
            behind = self._pending
            self._pending = []
            self._accepted_first, self._accepted_last = self._first, self._last
        for request in batch if whole else ():
            request.error = error
        for request in behind:
            request.error = error
        self._answer(batch + behind)

    def _answer(self, batch: list[_Request]) -> None:
        loop = batch[0].future.get_loop()
        try:
            if len(batch) == 1:
                loop.call_soon_threadsafe(_finish_one, batch[0])
            else:
                loop.call_soon_threadsafe(_finish, batch)
        except RuntimeError:
            # the callers' loop was closed under them; nobody is left to answer
            log.warning("dropping the answers to %d log requests: their loop is closed",
                        len(batch))

    def _fail(self, requests: Sequence[_Request], err: StorageError) -> None:
        for request in requests:
            request.error = err

    def _flush(self, appends: list[_Append]) -> bool:
        """Write and sync a run of appends, rolling segments as needed; True if it failed."""
        if not appends:
            return False
        chunk: list[_Append] = []
        size = self._segments[-1].end if self._segments else 0
        for request in appends:
            if self._wfd < 0 or (size and size + len(request.buf) > self.segment_size) or (
                not size and self._segments[-1].first != request.first
            ):
                if chunk and self._write_chunk(chunk):
                    self._fail(appends[appends.index(chunk[0]):], _last_error(chunk))
                    return True
                chunk = []
                try:
                    self._roll(request.first)
                except (OSError, StorageError) as err:
                    error = err if isinstance(err, StorageError) else storage_error(
                        err, f"creating a log segment in {self.directory}")
                    self._fail(appends[appends.index(request):], error)
                    return True
                size = 0
            chunk.append(request)
            size += len(request.buf)
        if self._write_chunk(chunk):
            self._fail(appends[appends.index(chunk[0]):], _last_error(chunk))
            return True
        return False

    def _write_chunk(self, chunk: list[_Append]) -> bool:
        """Append a chunk to the active segment and sync it; True (with the error stored on the
        chunk's first request) if it failed and was cut back."""
        segment = self._segments[-1]
        fd = self._wfd
        data = chunk[0].buf if len(chunk) == 1 else b"".join([r.buf for r in chunk])
        try:
            view = memoryview(data)
            while view:
                written = self._write(fd, view)
                if written <= 0:
                    raise OSError(errno.EIO, "write made no progress")
                view = view[written:]
            self._sync(fd)
            self.syncs += 1
        except OSError as err:
            chunk[0].error = storage_error(err, f"writing the log segment {segment.path}")
            try:
                os.ftruncate(fd, segment.end)
            except OSError as cut:
                self._broken = storage_error(cut, f"cutting back {segment.path}")
                log.error("log store unusable: %s", self._broken)
            return True
        cache = self._cache
        keep = self._cache_size
        with self._lock:
            offsets = segment.offsets
            pos = segment.end
            for request in chunk:
                if len(request.logs) == 1:
                    offsets.append(pos)
                    pos += len(request.buf)
                else:
                    for entry in request.logs:
                        offsets.append(pos)
                        pos += len(entry.data) + _OVERHEAD
                for entry in request.logs:
                    cache[entry.index] = entry
                    cache.pop(entry.index - keep, None)
            segment.end = pos
            if not self._first:
                self._first = chunk[0].first
            self._last = chunk[-1].last
        return False

    def _roll(self, first: int) -> None:
        """Start a new segment whose first entry is `first`."""
        if self._segments and not self._segments[-1].end:
            # an empty segment left by a failed write, named for an index not coming now
            self._drop_segments(len(self._segments) - 1)
        if not self._segments and self._floor > first:
            # the store was emptied by deletion and restarts below the old floor
            self._set_floor(0)
        path = _segment_path(self.directory, first)
        wfd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC,
                      0o644)
        rfd = -1
        try:
            rfd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            fsync_dir(self.directory)
        except OSError:
            # leave no half-made segment behind, or the next attempt would find its name taken
            for fd in (wfd, rfd):
                if fd >= 0:
                    os.close(fd)
            os.unlink(path)
            raise
        if self._wfd >= 0:
            os.close(self._wfd)
        self._wfd = wfd
        with self._lock:
            self._segments.append(_Segment(first, path, rfd))
            self._firsts.append(first)

    def _set_floor(self, floor: int) -> None:
        self._meta.set_uint64(_FLOOR_KEY, floor)
        self._floor = floor

    def _drop_segments(self, start: int, stop: int | None = None) -> None:
        """Forget and remove segments[start:stop] (newest first), then sync the directory."""
        self._changed = True
        with self._lock:
            dropped = self._segments[start:stop]
            del self._segments[start:stop]
            del self._firsts[start:stop]
            for segment in dropped:
                os.close(segment.fd)
        if stop is None and self._wfd >= 0:
            os.close(self._wfd)
            self._wfd = -1
        for segment in reversed(dropped):
            os.unlink(segment.path)
        fsync_dir(self.directory)

    def _delete(self, request: _Delete) -> bool:
        """Carry out a deletion; True (with the error on the request) if it failed.

        A failure before anything changed (say the floor could not be written on a full disk)
        leaves the store as it was. A failure after files started to change leaves the memory
        view unreliable, so the store then refuses writes until it is reopened from disk,
        which is always consistent because of the order the steps run in."""
        self._changed = False
        try:
            if request.prefix:
                self._delete_prefix(request.upto)
            else:
                self._delete_suffix(request.upto)
        except (OSError, StorageError) as err:
            error = err if isinstance(err, StorageError) else storage_error(
                err, f"deleting from the log in {self.directory}")
            request.error = error
            if self._changed:
                self._broken = error
                log.error("log store unusable until reopened: %s", error)
            return True
        return False

    def _delete_prefix(self, keep_from: int) -> None:
        if not keep_from:
            # everything: the floor hides it all at once, then the files go
            self._set_floor(self._last + 1)
            self._drop_segments(0)
            with self._lock:
                self._first = self._last = 0
                self._cache.clear()
            return
        self._set_floor(keep_from)
        whole = bisect.bisect_right(self._firsts, keep_from) - 1
        with self._lock:
            self._first = keep_from
            for index in [i for i in self._cache if i < keep_from]:
                del self._cache[index]
        if whole > 0:
            self._drop_segments(0, whole)

    def _delete_suffix(self, keep_to: int) -> None:
        keep = bisect.bisect_right(self._firsts, keep_to)
        if keep < len(self._segments):
            self._drop_segments(keep)
        segment = self._segments[-1]
        count = keep_to - segment.first + 1
        cut = segment.offsets[count] if count < len(segment.offsets) else segment.end
        if self._wfd < 0:
            self._wfd = os.open(segment.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        if cut < segment.end:
            self._changed = True
            os.ftruncate(self._wfd, cut)
            os.fsync(self._wfd)
        with self._lock:
            del segment.offsets[count:]
            segment.end = cut
            self._last = keep_to
            for index in [i for i in self._cache if i > keep_to]:
                del self._cache[index]

    def _release(self) -> None:
        if self._wfd >= 0:
            os.close(self._wfd)
            self._wfd = -1
        with self._lock:
            for segment in self._segments:
                os.close(segment.fd)
            self._segments.clear()
            self._firsts.clear()
            self._cache.clear()


def _last_error(chunk: list[_Append]) -> StorageError:
    error = chunk[0].error
    assert error is not None
    return error


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _finish_one(request: _Request) -> None:
    future = request.future
    if future.done():
        return
    if request.error is None:
        future.set_result(None)
    else:
        # a fresh exception per caller, so tracebacks do not pile up on one object
        future.set_exception(type(request.error)(str(request.error)))


def _finish(batch: list[_Request]) -> None:
    for request in batch:
        _finish_one(request)

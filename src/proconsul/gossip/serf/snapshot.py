"""Serf's member-list snapshot file, as hashicorp/serf `serf/snapshot.go`.

A restarted agent should find its cluster again and must not replay old events, so Serf
appends membership changes and its Lamport clocks to a small text file (`-snapshot`, Consul's
`serf/local.snapshot`). The format is serf's, line for line, so the file can be moved between
a Go agent and this one:

    alive: <name> <ip:port>     not-alive: <name>     clock: <n>
    event-clock: <n>            query-clock: <n>      leave        # comment

Replaying it yields the nodes last known alive (to re-join) and the last clocks (events and
queries at or below them are old). A `leave` line, written on a graceful leave, forgets
everything before it so a node that left does not rejoin on restart, unless
`rejoin_after_leave`. The file is compacted (rewritten as just the alive nodes and clocks, to
`<path>.compact`, then renamed over) once it outgrows max(128 KiB, 2 x 128 B x alive nodes).

On the event loop, a line is appended to an in-memory buffer and written with one small
`os.write` (an O_APPEND descriptor) by a flush timer, by `flush()`, or on leave and close.
Compaction and fsync run in the default executor; lines recorded meanwhile wait in the buffer
and go to the new file, which already holds everything recorded before the rewrite started.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from proconsul.gossip.serf.events import EventType, MemberEvent
from proconsul.gossip.serf.lamport import LamportClock

__all__ = [
    "CLOCK_UPDATE_INTERVAL", "FLUSH_INTERVAL", "SNAPSHOT_SIZE_LIMIT", "TMP_EXT",
    "AddressedMember", "PreviousNode", "SnapshotState", "Snapshotter", "format_address",
    "parse_snapshot", "read_snapshot",
]

log = logging.getLogger("proconsul.serf.snapshot")

#: serf's `snapshotSizeLimit`: compaction never happens below this size.
SNAPSHOT_SIZE_LIMIT = 128 * 1024
#: How long a recorded line may wait in memory before it is written.
FLUSH_INTERVAL = 0.5
#: How often the member clock is checked and written when it moved.
CLOCK_UPDATE_INTERVAL = 0.5
#: Suffix of the file a compaction writes before renaming it over the snapshot.
TMP_EXT = ".compact"
#: After a write error, compaction (which rewrites the file) is retried at most this often.
ERROR_RECOVERY_INTERVAL = 30.0
#: serf's estimate of snapshot bytes per alive node, and the multiple of it that triggers
#: compaction.
BYTES_PER_NODE = 128
COMPACTION_THRESHOLD = 2

_UINT64 = re.compile(rb"[0-9]+")
_U64_MAX = (1 << 64) - 1


class AddressedMember(Protocol):
    """What the snapshot reads from a member (`messages.Member` qualifies)."""

    @property
    def name(self) -> str: ...

    @property
    def addr(self) -> bytes: ...

    @property
    def port(self) -> int: ...


A = TypeVar("A", bound=AddressedMember)


@dataclass(frozen=True, slots=True)
class PreviousNode:
    """A node alive when the snapshot was last written; `addr` is `ip:port`."""

    name: str
    addr: str

    def join_address(self) -> str:
        """The `name/ip:port` form memberlist's Join takes for rejoining."""
        return f"{self.name}/{self.addr}"

    def __str__(self) -> str:
        return f"{self.name}: {self.addr}"


@dataclass(slots=True)
class SnapshotState:
    """What replaying a snapshot recovers."""

    alive_nodes: dict[str, str] = field(default_factory=dict)
    last_clock: int = 0
    last_event_clock: int = 0
    last_query_clock: int = 0

    def previous_nodes(self) -> list[PreviousNode]:
        """The nodes to try rejoining, in file order (serf shuffles them before trying)."""
        return [PreviousNode(name, addr) for name, addr in self.alive_nodes.items()]


def format_address(ip: bytes, port: int) -> str:
    """Go's `net.TCPAddr{IP, Port}.String()`: `1.2.3.4:80`, `[::1]:80`, `:80` for no IP;
    an IPv4-mapped IPv6 address prints as IPv4."""
    if not ip:
        host = ""
    elif len(ip) == 4:
        host = str(ipaddress.IPv4Address(ip))
    elif len(ip) == 16:
        addr = ipaddress.IPv6Address(ip)
        host = str(addr.ipv4_mapped) if addr.ipv4_mapped is not None else addr.compressed
    else:
        host = "?" + ip.hex()
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


def _parse_clock(value: bytes) -> int | None:
    """Go's `strconv.ParseUint(value, 10, 64)`: plain decimal digits only, within uint64."""
    if not _UINT64.fullmatch(value):
        return None
    number = int(value)
    return number if number <= _U64_MAX else None


def parse_snapshot(data: bytes, rejoin_after_leave: bool = False) -> SnapshotState:
    """Replay snapshot contents. As serf: a last line without its newline is ignored,
    unparsable lines are logged and skipped, and `leave` resets everything seen before it
    unless `rejoin_after_leave`."""
    state = SnapshotState()
    lines = data.split(b"\n")
    for raw in lines[:-1]:
        if raw.startswith(b"alive: "):
            info = raw[len(b"alive: "):]
            cut = info.rfind(b" ")
            if cut == -1:
                log.warning("serf: Failed to parse address: %r", raw)
                continue
            name = info[:cut].decode("utf-8", "surrogateescape")
            state.alive_nodes[name] = info[cut + 1:].decode("utf-8", "surrogateescape")
        elif raw.startswith(b"not-alive: "):
            name = raw[len(b"not-alive: "):].decode("utf-8", "surrogateescape")
            state.alive_nodes.pop(name, None)
        elif raw.startswith((b"clock: ", b"event-clock: ", b"query-clock: ")):
            key, _, value = raw.partition(b": ")
            number = _parse_clock(value)
            if number is None:
                log.warning("serf: Failed to convert %s time: %r", key.decode(), raw)
                continue
            if key == b"clock":
                state.last_clock = number
            elif key == b"event-clock":
                state.last_event_clock = number
            else:
                state.last_query_clock = number
        elif raw.startswith(b"coordinate: "):
            continue
        elif raw == b"leave":
            if rejoin_after_leave:
                log.info("serf: Ignoring previous leave in snapshot")
                continue
            state = SnapshotState()
        elif raw.startswith(b"#"):
            continue
        else:
            log.warning("serf: Unrecognized snapshot line: %r", raw)
    return state


def read_snapshot(path: str | os.PathLike[str],
                  rejoin_after_leave: bool = False) -> SnapshotState:
    """Replay the snapshot at `path` (an empty state when there is none)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return SnapshotState()
    return parse_snapshot(data, rejoin_after_leave)


def _write_file(path: str, content: bytes) -> None:
    """Create or truncate `path`, write `content` fully and fsync it (executor side)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_quietly(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        log.error("serf: failed to sync snapshot: %s", exc)


class Snapshotter:
    """The writer (and, at open, the reader) of one snapshot file.

    Feed it member events, user-event and query Lamport times as Serf delivers them; it keeps
    the alive set and last clocks, appends the matching lines and compacts as serf does.
    `start()` arms the periodic member-clock check (serf writes `clock:` lines from a 500 ms
    ticker); without a running loop, lines are written only by `flush()` and compaction runs
    inline.
    """

    def __init__(self, path: str | os.PathLike[str], clock: LamportClock, *,
                 min_compact_size: int = SNAPSHOT_SIZE_LIMIT,
                 rejoin_after_leave: bool = False,
                 loop: asyncio.AbstractEventLoop | None = None,
                 flush_interval: float = FLUSH_INTERVAL,
                 clock_interval: float = CLOCK_UPDATE_INTERVAL) -> None:
        self.path = os.fspath(path)
        self.clock = clock
        self.min_compact_size = min_compact_size
        self.rejoin_after_leave = rejoin_after_leave
        self.flush_interval = flush_interval
        self.clock_interval = clock_interval
        self._loop = loop
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            with os.fdopen(os.dup(self._fd), "rb") as fh:
                data = fh.read()
        except OSError:
            os.close(self._fd)
            raise
        #: What the file held when opened: nodes to rejoin, clocks to restore.
        self.previous = parse_snapshot(data, rejoin_after_leave)
        self._alive = dict(self.previous.alive_nodes)
        self.last_clock = self.previous.last_clock
        self.last_event_clock = self.previous.last_event_clock
        self.last_query_clock = self.previous.last_query_clock
        self._offset = len(data)
        self._pending = bytearray()
        self._leaving = False
        self._closed = False
        self._compacting = False
        self._compaction: asyncio.Future[None] | None = None
        self._syncs: set[asyncio.Future[None]] = set()
        self._last_recovery = 0.0
        self._flush_timer: asyncio.TimerHandle | None = None
        self._clock_timer: asyncio.TimerHandle | None = None

    # -- state ---------------------------------------------------------------------------

    @property
    def alive_nodes(self) -> dict[str, str]:
        """A copy of the alive set as it will be written by the next compaction."""
        return dict(self._alive)

    def previous_nodes(self) -> list[PreviousNode]:
        """The nodes alive at the last run, to rejoin (see `SnapshotState.previous_nodes`)."""
        return self.previous.previous_nodes()

    def max_size(self) -> int:
        """The size past which the file is compacted."""
        return max(len(self._alive) * BYTES_PER_NODE * COMPACTION_THRESHOLD,
                   self.min_compact_size)

    def _running_loop(self) -> asyncio.AbstractEventLoop | None:
        if self._loop is not None:
            return self._loop
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None

    # -- recording -----------------------------------------------------------------------

    def record_member_event(self, event: MemberEvent[A]) -> None:
        """A join adds its members as alive, a leave or failure removes them; every member
        event then checks the member clock."""
        if self._leaving:
            return
        if event.type == EventType.MEMBER_JOIN:
            for member in event.members:
                self.alive(member.name, format_address(member.addr, member.port))
        elif event.type in (EventType.MEMBER_LEAVE, EventType.MEMBER_FAILED):
            for member in event.members:
                self.not_alive(member.name)
        self.update_clock()

    def alive(self, name: str, addr: str) -> None:
        """Record `name` alive at `addr` (`ip:port`)."""
        if self._leaving:
            return
        self._alive[name] = addr
        self._append(f"alive: {name} {addr}\n")

    def not_alive(self, name: str) -> None:
        """Record that `name` left or failed."""
        if self._leaving:
            return
        self._alive.pop(name, None)
        self._append(f"not-alive: {name}\n")

    def user_event(self, ltime: int) -> None:
        """A user event was delivered at `ltime`; older times are not written."""
        if self._leaving or ltime <= self.last_event_clock:
            return
        self.last_event_clock = ltime
        self._append(f"event-clock: {ltime}\n")

    def query(self, ltime: int) -> None:
        """A query was delivered at `ltime`; older times are not written."""
        if self._leaving or ltime <= self.last_query_clock:
            return
        self.last_query_clock = ltime
        self._append(f"query-clock: {ltime}\n")

    def update_clock(self) -> None:
        """Write the member clock's last used value (`time() - 1`) when it moved. serf does
        this after member events and from its clock ticker, leave or not."""
        now = self.clock.time()
        if now == 0:
            return
        last_seen = now - 1
        if last_seen > self.last_clock:
            self.last_clock = last_seen
            self._append(f"clock: {last_seen}\n")

    def leave(self) -> None:
        """A graceful leave: stop recording, forget the alive nodes (unless
        `rejoin_after_leave`), write `leave` now and sync it to disk."""
        self._leaving = True
        if not self.rejoin_after_leave:
            self._alive.clear()
        self._append("leave\n")
        self.flush()
        self._sync_soon()

    # -- timers --------------------------------------------------------------------------

    def start(self) -> None:
        """Arm the periodic member-clock check on the running (or given) loop."""
        loop = self._running_loop()
        if loop is None:
            raise RuntimeError("Snapshotter.start needs an event loop")
        if self._clock_timer is None and not self._closed:
            self._clock_timer = loop.call_later(self.clock_interval, self._tick)

    def _tick(self) -> None:
        self._clock_timer = None
        if self._closed:
            return
        self.update_clock()
        loop = self._running_loop()
        if loop is not None:
            self._clock_timer = loop.call_later(self.clock_interval, self._tick)

    def _arm_flush(self) -> None:
        if self._flush_timer is not None:
            return
        loop = self._running_loop()
        if loop is not None:
            self._flush_timer = loop.call_later(self.flush_interval, self.flush)

    # -- writing -------------------------------------------------------------------------

    def _append(self, line: str) -> None:
        if self._closed:
            return
        data = line.encode("utf-8", "surrogateescape")
        self._pending += data
        self._offset += len(data)
        if self._offset > self.max_size():
            self._start_compaction()
        else:
            self._arm_flush()

    @property
    def pending(self) -> int:
        """Bytes recorded but not yet written."""
        return len(self._pending)

    def flush(self) -> None:
        """Write every buffered line now (held back while a compaction runs)."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._compacting or not self._pending or self._closed:
            return
        if self._fd is None:
            self._recover()
            return
        try:
            while self._pending:
                written = os.write(self._fd, self._pending)
                del self._pending[:written]
        except OSError as exc:
            log.error("serf: Failed to update snapshot: %s", exc)
            self._recover()

    def _recover(self) -> None:
        """After a write error: rewrite the file from memory, at most every 30 s. Until
        then the unwritten lines wait, but never more than a compaction's worth."""
        now = time.monotonic()
        if now - self._last_recovery > ERROR_RECOVERY_INTERVAL:
            self._last_recovery = now
            log.info("serf: Attempting compaction to recover from error...")
            self._start_compaction()
        elif len(self._pending) > self.max_size():
            self._pending.clear()

    def _sync_soon(self) -> None:
        if self._fd is None:
            return
        loop = self._running_loop()
        if loop is None:
            _fsync_quietly(self._fd)
            return
        fut = loop.run_in_executor(None, _fsync_quietly, self._fd)
        self._syncs.add(fut)
        fut.add_done_callback(self._syncs.discard)

    # -- compaction ----------------------------------------------------------------------

    def _compacted(self) -> bytes:
        lines: Iterable[str] = (
            *(f"alive: {name} {addr}\n" for name, addr in self._alive.items()),
            f"clock: {self.last_clock}\n",
            f"event-clock: {self.last_event_clock}\n",
            f"query-clock: {self.last_query_clock}\n",
        )
        return "".join(lines).encode("utf-8", "surrogateescape")

    def _start_compaction(self) -> None:
        if self._compacting or self._closed:
            return
        content = self._compacted()
        held = bytes(self._pending)
        self._pending.clear()
        self._compacting = True
        loop = self._running_loop()
        if loop is None:
            try:
                _write_file(self.path + TMP_EXT, content)
                os.replace(self.path + TMP_EXT, self.path)
            except OSError as exc:
                self._compaction_failed(exc, held)
            else:
                self._compaction_done(len(content))
            return
        fut = loop.run_in_executor(None, self._rewrite, content)
        self._compaction = fut
        fut.add_done_callback(lambda done: self._compaction_finished(done, len(content), held))

    def _rewrite(self, content: bytes) -> None:
        _write_file(self.path + TMP_EXT, content)
        os.replace(self.path + TMP_EXT, self.path)

    def _compaction_finished(self, fut: asyncio.Future[None], size: int, held: bytes) -> None:
        self._compaction = None
        exc = fut.exception() if not fut.cancelled() else OSError("compaction cancelled")
        if exc is not None:
            self._compaction_failed(exc, held)
        else:
            self._compaction_done(size)

    def _compaction_done(self, size: int) -> None:
        """The new file is in place: write to it from now on, then the held lines."""
        old, self._fd = self._fd, None
        if old is not None:
            os.close(old)
        self._compacting = False
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            log.error("serf: failed to open snapshot: %s", exc)
            return
        self._offset = size + len(self._pending)
        if self._offset > self.max_size():
            self._start_compaction()
        elif self._pending:
            self._arm_flush()

    def _compaction_failed(self, exc: BaseException, held: bytes) -> None:
        log.error("serf: Compaction failed, will reattempt after %.0fs: %s",
                  ERROR_RECOVERY_INTERVAL, exc)
        self._last_recovery = time.monotonic()
        self._pending[:0] = held
        self._compacting = False
        self._arm_flush()

    async def compact(self) -> None:
        """Rewrite the file from memory now (and wait for it)."""
        if self._compaction is None:
            self._start_compaction()
        await self._compacted_all()

    async def _compacted_all(self) -> None:
        """Wait until no compaction runs (one may chain into the next)."""
        while self._compaction is not None:
            await asyncio.wait([self._compaction])

    # -- shutdown ------------------------------------------------------------------------

    async def close(self) -> None:
        """Record the clock one last time, write what is buffered, sync and close."""
        if self._closed:
            return
        if self._clock_timer is not None:
            self._clock_timer.cancel()
            self._clock_timer = None
        self.update_clock()
        await self._compacted_all()
        self.flush()
        if self._syncs:
            await asyncio.wait(list(self._syncs))
        self._closed = True
        fd, self._fd = self._fd, None
        if fd is not None:
            await asyncio.get_running_loop().run_in_executor(None, _fsync_quietly, fd)
            os.close(fd)

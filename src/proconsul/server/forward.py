"""A follower server's link to the leader (the forwarding half of Consul's agent/consul/rpc.go).

Every write reaches the state as one Raft command, so a follower forwards the command itself:
the leader applies it and answers with the FSM's result. Reads stay local but are made as
fresh as a leader read with Raft's read-index rule: the follower asks the leader for its commit
index (the leader first confirms its leadership with a quorum for `consistent` reads) and waits
until it has applied that far, then answers from its own store, blocking queries included.
While no leader is known, calls are held and retried up to `rpc_hold_timeout`, then fail with
"No cluster leader".

Concurrent writes are forwarded together (`_WriteLane`): commands queue while
`WRITE_PIPELINE` batches are under way and go in the next one; the leader applies a batch's
commands concurrently (its log appends them in one sync) and answers each with its own result
or error. A batch broken mid-call fails every command in it, none is sent again. A leader that
does not know the batch method gets single calls from then on.

Concurrent reads share read-index calls (`_ReadLane`): a read joins the batch waiting to be sent
and the batch goes out once the call before it has returned, so a busy follower sends one call
per round trip instead of one per read. Linearizability needs the leader's answer to be taken
after the read arrived; a read therefore never joins a call already under way, only the next
one. Consistent and default reads batch separately (a default answer proves no leadership). A
call stuck on a leader that has since been replaced does not hold the next batch back: that one
goes to the new leader at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any, Protocol

from proconsul.errors import NoLeader, ProconsulError, RPCError
from proconsul.rpc.errors import CallFailed, ConnectFailed, RemoteError, is_no_leader
from proconsul.structs.kvs import KVEntry

#: internal methods on the server port
FORWARD_APPLY = "Raft.ForwardApply"
FORWARD_APPLY_BATCH = "Raft.ForwardApplyBatch"
READ_INDEX = "Raft.ReadIndex"

#: forwarded batches under way at once, and the most commands and bytes one carries
WRITE_PIPELINE = 2
MAX_BATCH_COMMANDS = 128
MAX_BATCH_BYTES = 1024 * 1024

_KV_TAG = "__kv__"

log = logging.getLogger("proconsul.server.rpc")


class LeaderRaft(Protocol):
    def is_leader(self) -> bool: ...

    def leader_address(self) -> str: ...

    @property
    def commit_index(self) -> int: ...

    @property
    def applied(self) -> int: ...

    async def verify_leader(self) -> None: ...

    def share_commit(self) -> None: ...


class Caller(Protocol):
    async def rpc(self, addr: str, method: str, args: Any,
                  timeout: float | None = None) -> Any: ...


def encode_result(value: Any) -> Any:
    """An FSM result as msgpack can carry it (KV entries inside txn results included)."""
    if isinstance(value, KVEntry):
        return {_KV_TAG: value.to_wire()}
    if isinstance(value, tuple):
        return {"__tuple__": [encode_result(v) for v in value]}
    if isinstance(value, list):
        return [encode_result(v) for v in value]
    if isinstance(value, dict):
        return {k: encode_result(v) for k, v in value.items()}
    return value


def decode_result(value: Any) -> Any:
    if isinstance(value, dict):
        if _KV_TAG in value and len(value) == 1:
            return KVEntry.from_wire(value[_KV_TAG])
        if "__tuple__" in value and len(value) == 1:
            return tuple(decode_result(v) for v in value["__tuple__"])
        return {k: decode_result(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_result(v) for v in value]
    return value


class LeaderLink:
    def __init__(self, raft: LeaderRaft, pool: Caller, hold_timeout: float = 7.0) -> None:
        self.raft = raft
        self.pool = pool
        self.hold_timeout = hold_timeout
        self._lanes = (_ReadLane(self, False), _ReadLane(self, True))
        self._writes = _WriteLane(self)

    async def _call(self, method: str, args: dict[str, Any], started: float | None = None,
                    batch: _Batch | None = None) -> Any:
        """Call the leader, holding while there is none (and while a new one settles) until
        `hold_timeout` after `started` (now when not given). `batch` records where each
        attempt goes."""
        if started is None:
            started = time.monotonic()
        last: BaseException = NoLeader()
        while time.monotonic() - started <= self.hold_timeout:
            if self.raft.is_leader():
                raise _LocalLeader()
            leader = self.raft.leader_address()
            if batch is not None:
                batch.target = leader
            if leader:
                try:
                    return await self.pool.rpc(leader, method, args, self.hold_timeout)
                except RemoteError as err:
                    if not is_no_leader(err):
                        raise RPCError(str(err)) from None
                    last = NoLeader()
                except (CallFailed, ConnectFailed) as err:
                    last = err
                    if method != READ_INDEX and method.startswith("Raft.Forward") and \
                            isinstance(err, CallFailed):
                        # the command may have been applied: never send it twice
                        raise RPCError(f"error forwarding to the leader: {err}") from None
            await asyncio.sleep(0.05)
        if isinstance(last, NoLeader):
            raise last
        raise RPCError(str(last))

    async def call(self, method: str, args: dict[str, Any]) -> Any:
        """Any leader-only RPC (operator calls): raises `_LocalLeader` (see
        `is_local_leader`) when this server leads by now and should serve it itself."""
        return await self._call(method, args)

    async def apply(self, command: bytes, error_prefix: str = "") -> Any:
        """The leader's result of applying `command`; raises `_LocalLeader` when this server
        leads by now."""
        if not self._writes.batching:
            return decode_result(await self.forward_one(command, error_prefix))
        return decode_result(await self._writes.submit(command, error_prefix))

    async def forward_one(self, command: bytes, prefix: str,
                          started: float | None = None) -> Any:
        """The leader's encoded result of `command` forwarded on its own."""
        reply = await self._call(FORWARD_APPLY, {"Command": command, "Prefix": prefix}, started)
        return reply.get("Result") if isinstance(reply, dict) else reply

    async def catch_up(self, consistent: bool) -> None:
        """Wait until this follower has applied everything the leader had committed when
        asked (the leader verifies its leadership first when `consistent`).

        When this server is elected while the read is held, it answers as a leader does: a
        consistent read waits for verify_leader, which also waits until the new leader has
        applied everything committed before its term. Its local state may lack writes the
        previous leader acknowledged until then."""
        served_by_leader = await self._lanes[consistent].join()
        if not served_by_leader and consistent:
            await self.raft.verify_leader()

    async def _wait_applied(self, index: int) -> None:
        if self.raft.applied >= index:
            return
        deadline = time.monotonic() + self.hold_timeout
        while self.raft.applied < index:
            if time.monotonic() > deadline:
                raise RPCError("timed out waiting for the local state to reach the leader's")
            await asyncio.sleep(0.002)


class _Batch:
    """Reads answered by one read-index call: done with True once the local state has caught
    up, False when this server leads by now (each read then answers as the leader)."""

    __slots__ = ("future", "started", "target")

    def __init__(self, started: float) -> None:
        self.future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        #: when the first read joined: the hold timeout runs from there
        self.started = started
        #: the leader the call went to last ("" while none is known)
        self.target = ""


class _ReadLane:
    """Reads of one consistency sharing read-index calls: at most one batch waits to be sent,
    and it is sent when no call is under way to the current leader."""

    def __init__(self, link: LeaderLink, consistent: bool) -> None:
        self.link = link
        self.consistent = consistent
        self.queued: _Batch | None = None
        self.inflight: set[_Batch] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def join(self) -> bool:
        batch = self.queued
        if batch is None:
            batch = self.queued = _Batch(time.monotonic())
            self._launch()
        else:
            self._launch()  # the call under way may be stuck on a leader since replaced
        return await asyncio.shield(batch.future)

    def _launch(self) -> None:
        batch = self.queued
        if batch is None:
            return
        if self.inflight:
            leader = self.link.raft.leader_address()
            if not leader:
                return
            for sent in self.inflight:
                if sent.target == leader or not sent.target:
                    return
        self.queued = None
        self.inflight.add(batch)
        _spawn(self._tasks, self._send(batch))

    async def _send(self, batch: _Batch) -> None:
        fut = batch.future
        try:
            try:
                reply = await self.link._call(
                    READ_INDEX, {"Consistent": self.consistent}, batch.started, batch)
            finally:
                self.inflight.discard(batch)
                self._launch()
            await self.link._wait_applied(int(reply["Index"]))
        except _LocalLeader:
            if not fut.done():
                fut.set_result(False)
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except Exception as exc:
            _fail(fut, exc)  # a batch whose reads all gave up logs nothing
        else:
            if not fut.done():
                fut.set_result(True)


class _Write:
    __slots__ = ("command", "future", "prefix", "started")

    def __init__(self, command: bytes, prefix: str) -> None:
        self.command = command
        self.prefix = prefix
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.started = time.monotonic()


class _WriteLane:
    """Forwarded commands sharing calls: up to `WRITE_PIPELINE` batches under way, the rest
    queued for the next."""

    def __init__(self, link: LeaderLink) -> None:
        self.link = link
        self.queue: list[_Write] = []
        self.inflight = 0
        #: False once the leader answered that it has no batch method
        self.batching = True
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, command: bytes, prefix: str) -> Any:
        write = _Write(command, prefix)
        self.queue.append(write)
        self._launch()
        return await asyncio.shield(write.future)

    def _launch(self) -> None:
        while self.queue and self.inflight < WRITE_PIPELINE:
            take, size = 0, 0
            for write in self.queue:
                if take >= MAX_BATCH_COMMANDS or (take and size + len(write.command) >
                                                  MAX_BATCH_BYTES):
                    break
                take += 1
                size += len(write.command)
            batch, self.queue = self.queue[:take], self.queue[take:]
            self.inflight += 1
            _spawn(self._tasks, self._send(batch))

    async def _send(self, batch: list[_Write]) -> None:
        args = {"Commands": [{"Command": w.command, "Prefix": w.prefix} for w in batch]}
        try:
            try:
                reply = await self.link._call(FORWARD_APPLY_BATCH, args, batch[0].started)
            finally:
                self.inflight -= 1
                self._launch()
        except _LocalLeader:
            for write in batch:
                _fail(write.future, _LocalLeader())
            return
        except RPCError as exc:
            if str(exc).startswith(_NO_METHOD):
                # an older leader: nothing was applied, send each on its own from now on
                self.batching = False
                for write in batch:
                    _spawn(self._tasks, self._send_one(write))
                return
            for write in batch:
                _fail(write.future, exc)
            return
        except asyncio.CancelledError:
            for write in batch:
                write.future.cancel()
            raise
        except Exception as exc:
            for write in batch:
                _fail(write.future, exc)
            return
        results = reply.get("Results") if isinstance(reply, dict) else None
        if not isinstance(results, list) or len(results) != len(batch):
            for write in batch:
                _fail(write.future, RPCError("malformed reply to a forwarded batch"))
            return
        for write, result in zip(batch, results, strict=True):
            error = result.get("Error") if isinstance(result, dict) else None
            if not error:
                if not write.future.done():
                    write.future.set_result(result.get("Result")
                                            if isinstance(result, dict) else None)
            elif is_no_leader(RemoteError(str(error))):
                # refused before it was applied (leadership moved): hold and try again
                _spawn(self._tasks, self._send_one(write))
            else:
                _fail(write.future, RPCError(str(error)))

    async def _send_one(self, write: _Write) -> None:
        try:
            result = await self.link.forward_one(write.command, write.prefix, write.started)
        except asyncio.CancelledError:
            write.future.cancel()
            raise
        except Exception as exc:
            _fail(write.future, exc)
        else:
            if not write.future.done():
                write.future.set_result(result)


#: net/rpc's answer for a method the server does not have
_NO_METHOD = "rpc: can't find"


def _spawn(tasks: set[asyncio.Task[None]], coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` as a task kept in `tasks` until it ends."""
    task = asyncio.get_running_loop().create_task(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def _fail(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
        fut.exception()  # retrieved: a caller that gave up leaves no warning behind


class _LocalLeader(Exception):
    """This server became the leader while holding a call: serve it locally."""


def is_local_leader(exc: BaseException) -> bool:
    return isinstance(exc, _LocalLeader)


def register_forwarding(rpc: Any, server: Any, raft: LeaderRaft) -> None:
    """The leader's side: apply a forwarded command, tell the commit index for a read."""

    async def apply_item(item: Any) -> dict[str, Any]:
        if not isinstance(item, dict) or not isinstance(item.get("Command"), bytes | bytearray):
            return {"Error": "forwarded command must be bytes"}
        if not raft.is_leader():
            return {"Error": str(NoLeader())}
        try:
            result = await server.apply(bytes(item["Command"]), str(item.get("Prefix") or ""))
        except ProconsulError as exc:
            return {"Error": str(exc) or type(exc).__name__}
        except Exception as exc:
            log.error("RPC handler failed: method=%s error=%s", FORWARD_APPLY_BATCH, exc,
                      exc_info=True)
            return {"Error": str(exc) or type(exc).__name__}
        return {"Result": encode_result(result)}

    async def forward_apply_batch(args: dict[str, Any]) -> dict[str, Any]:
        """Apply each command as Raft.ForwardApply would, all at once; one answer each."""
        if not raft.is_leader():
            raise NoLeader()
        commands = args.get("Commands")
        if not isinstance(commands, list):
            raise RPCError("forwarded commands must be a list")
        return {"Results": list(await asyncio.gather(*(apply_item(c) for c in commands)))}

    async def forward_apply(args: dict[str, Any]) -> dict[str, Any]:
        if not raft.is_leader():
            raise NoLeader()
        command = args.get("Command")
        if not isinstance(command, bytes | bytearray):
            raise RPCError("forwarded command must be bytes")
        result = await server.apply(bytes(command), str(args.get("Prefix") or ""))
        return {"Result": encode_result(result)}

    async def read_index(args: dict[str, Any]) -> dict[str, Any]:
        if not raft.is_leader():
            raise NoLeader()
        if args.get("Consistent"):
            await raft.verify_leader()
        raft.share_commit()
        return {"Index": raft.commit_index}

    rpc.register(FORWARD_APPLY, forward_apply)
    rpc.register(FORWARD_APPLY_BATCH, forward_apply_batch)
    rpc.register(READ_INDEX, read_index)

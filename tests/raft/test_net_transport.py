"""The TCP transport on 127.0.0.1: every RPC round-trips with its fields, pipelined requests
are answered in order, snapshots stream, failures surface as TransportError, and a Raft
cluster runs over it behind a listener that reads Consul's first byte (0x01 = Raft)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import pytest

from proconsul.raft.cluster import Raft
from proconsul.raft.configuration import Configuration, Server
from proconsul.raft.errors import TransportError
from proconsul.raft.inmem import InmemLogStore, InmemSnapshotStore, InmemStableStore
from proconsul.raft.log import Log, LogType
from proconsul.raft.net_transport import NetworkTransport
from proconsul.raft.transport import (
    AppendEntriesRequest,
    AppendEntriesResponse,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    RequestPreVoteRequest,
    RequestPreVoteResponse,
    RequestVoteRequest,
    RequestVoteResponse,
    RPCHeader,
    TimeoutNowRequest,
    TimeoutNowResponse,
)
from tests.raft.cluster_support import ListFSM, raft_config, wait_for
from tests.raft.support import run
from tests.support import free_port

RAFT_BYTE = 0x01


class Recorder:
    """An RPCHandler that keeps what it got and answers from it."""

    def __init__(self) -> None:
        self.appends: list[AppendEntriesRequest] = []
        self.snapshot = b""
        self.header = RPCHeader(id="b", addr="127.0.0.1:2")

    async def handle_append_entries(self, req: AppendEntriesRequest) -> AppendEntriesResponse:
        self.appends.append(req)
        await asyncio.sleep(0.001 * (len(self.appends) % 3))
        last = req.entries[-1].index if req.entries else req.prev_log_entry
        return AppendEntriesResponse(self.header, req.term, last, True)

    async def handle_request_vote(self, req: RequestVoteRequest) -> RequestVoteResponse:
        return RequestVoteResponse(self.header, req.term,
                                   req.leadership_transfer and req.candidate == "c:1")

    async def handle_request_pre_vote(
        self, req: RequestPreVoteRequest
    ) -> RequestPreVoteResponse:
        return RequestPreVoteResponse(self.header, req.term + 1, req.last_log_index == 7)

    async def handle_install_snapshot(
        self, req: InstallSnapshotRequest, data: AsyncIterator[bytes]
    ) -> InstallSnapshotResponse:
        chunks = [chunk async for chunk in data]
        self.snapshot = b"".join(chunks)
        ok = req.configuration == b"cfg" and req.last_log_index == 99
        return InstallSnapshotResponse(self.header, req.term, ok)

    async def handle_timeout_now(self, req: TimeoutNowRequest) -> TimeoutNowResponse:
        return TimeoutNowResponse(RPCHeader(id=req.header.id + "!", addr=""))


def test_every_rpc_round_trips_over_tcp() -> None:
    async def body() -> None:
        server = NetworkTransport("127.0.0.1:0")
        recorder = Recorder()
        server.set_handler(recorder)
        port = await server.listen("127.0.0.1", 0)
        target = f"127.0.0.1:{port}"
        client = NetworkTransport("127.0.0.1:1", max_inflight=4)
        head = RPCHeader(id="a", addr="127.0.0.1:1")
        try:
            entries = [Log(5, 2, LogType.COMMAND, b"\x00\xffdata"), Log(6, 2, LogType.NOOP, b"")]
            resp = await client.append_entries(
                "b", target, AppendEntriesRequest(head, 2, "127.0.0.1:1", 4, 1, entries, 3))
            assert resp.success and resp.last_log == 6 and resp.header.id == "b"
            got = recorder.appends[0]
            assert got.entries == entries and got.leader_commit_index == 3
            assert (got.prev_log_entry, got.prev_log_term, got.leader) == (4, 1, "127.0.0.1:1")
            assert got.header == head
            vote = await client.request_vote(
                "b", target, RequestVoteRequest(head, 9, "c:1", 7, 3, leadership_transfer=True))
            assert vote.granted and vote.term == 9
            pre = await client.request_pre_vote("b", target,
                                                RequestPreVoteRequest(head, 4, 7, 1))
            assert pre.granted and pre.term == 5
            now = await client.timeout_now("b", target, TimeoutNowRequest(head))
            assert now.header.id == "a!"
            state = bytes(range(256)) * 12000  # several reads' worth
            snap = await client.install_snapshot(
                "b", target, InstallSnapshotRequest(head, 3, "127.0.0.1:1", 99, 3, b"cfg", 1,
                                                    len(state)), io.BytesIO(state))
            assert snap.success and recorder.snapshot == state
            # pipelined: sent back to back, answered in order
            recorder.appends.clear()
            pipeline = await client.append_entries_pipeline("b", target)
            futures = []
            for i in range(1, 41):
                req = AppendEntriesRequest(head, 2, "127.0.0.1:1", i - 1, 2,
                                           [Log(i, 2, LogType.COMMAND, b"p")], i)
                futures.append(await pipeline.append_entries(req))
            answers = await asyncio.gather(*futures)
            assert [a.last_log for a in answers] == list(range(1, 41))
            assert [r.entries[0].index for r in recorder.appends] == list(range(1, 41))
            await pipeline.close()
            # no handler: the peer answers with an error
            server.set_handler(None)
            with pytest.raises(TransportError, match="transport shutdown"):
                await client.append_entries("b", target, AppendEntriesRequest(head, 1, "x"))
        finally:
            await client.close()
            await server.close()
        # nobody listening
        closed = NetworkTransport("127.0.0.1:1", timeout=2.0)
        with pytest.raises(TransportError, match="failed to dial"):
            await closed.request_vote("b", target, RequestVoteRequest(head, 1, "a", 0, 0))
        await closed.close()

    run(body())


async def _shared_listener(transport: NetworkTransport, port: int) -> asyncio.Server:
    """A server port that reads a first byte and hands Raft connections on, as Consul's
    does; anything else is closed."""

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.read(1)
        if first == bytes((RAFT_BYTE,)):
            await transport.handle_connection(reader, writer)
        else:
            writer.close()

    return await asyncio.start_server(accept, "127.0.0.1", port)


def test_cluster_over_tcp_behind_a_shared_server_port() -> None:
    async def body() -> None:
        ports = [free_port() for _ in range(3)]
        addresses = [f"127.0.0.1:{p}" for p in ports]
        configuration = Configuration.of(
            [Server(f"n{i}", addresses[i]) for i in range(3)])
        transports = []
        listeners = []
        rafts = []
        try:
            for i in range(3):
                transport = NetworkTransport(addresses[i], connect_prefix=bytes((RAFT_BYTE,)))
                transports.append(transport)
                listeners.append(await _shared_listener(transport, ports[i]))
                raft = Raft(raft_config(f"n{i}", addresses[i], trailing_logs=5), ListFSM(),
                            InmemLogStore(), InmemStableStore(), InmemSnapshotStore(),
                            transport)
                await raft.bootstrap_cluster(configuration)
                rafts.append(raft)
            for raft in rafts:
                await raft.start()
            await wait_for(lambda: sum(r.is_leader() for r in rafts) == 1, "a leader")
            leader = next(r for r in rafts if r.is_leader())
            assert await leader.wait_ready(30.0)
            results = await asyncio.gather(*(leader.apply(f"t{i}".encode()) for i in range(300)))
            assert sorted(results) == list(range(1, 301))
            index = await leader.barrier()
            await wait_for(lambda: all(r.applied >= index for r in rafts), "every server")
            expected = [f"t{i}".encode() for i in range(300)]
            for raft in rafts:
                assert raft.fsm.commands == expected
            await leader.verify_leader()
            # a snapshot and compaction, then a follower that must be sent the snapshot
            follower = next(r for r in rafts if r is not leader)
            await follower.shutdown()
            n = rafts.index(follower)
            await transports[n].close()
            for i in range(20):
                await leader.apply(f"u{i}".encode())
            await leader.snapshot()
            transports[n] = NetworkTransport(addresses[n], connect_prefix=bytes((RAFT_BYTE,)))
            listeners[n].close()
            await listeners[n].wait_closed()
            listeners[n] = await _shared_listener(transports[n], ports[n])
            fresh = Raft(raft_config(f"n{n}", addresses[n]), ListFSM(), InmemLogStore(),
                         InmemStableStore(), InmemSnapshotStore(), transports[n])
            rafts[n] = fresh
            await fresh.start()
            index = await leader.barrier()
            await wait_for(lambda: fresh.applied >= index, "the new server to catch up")
            assert fresh.fsm.commands == expected + [f"u{i}".encode() for i in range(20)]
            assert fresh.snapshot_index > 0
            await leader.leadership_transfer(f"n{n}")
            await wait_for(lambda: fresh.is_leader(), "the new server to lead")
        finally:
            for raft in rafts:
                await raft.shutdown()
            for transport in transports:
                await transport.close()
            for listener in listeners:
                listener.close()
                await listener.wait_closed()

    run(body(), timeout=120)

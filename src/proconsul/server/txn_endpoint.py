"""Transactions on the server (Consul's agent/consul/txn_endpoint.go): write transactions go
through the FSM as one command; read-only ones run against the store without Raft."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proconsul.server.commands import MessageType, encode
from proconsul.state.txn_ops import run_kv_txn
from proconsul.structs import kvs as K

if TYPE_CHECKING:
    from proconsul.server.server import Server
    from proconsul.state.store import Store
    from proconsul.state.watch import WatchSet
    from proconsul.structs.kvs import KVEntry
    from proconsul.structs.query import QueryMeta, QueryOptions

TxnAnswer = tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None]


def is_read_only(ops: list[tuple[str, KVEntry]]) -> bool:
    return all(verb not in K.KV_WRITE_VERBS for verb, _ in ops)


class TxnEndpoint:
    def __init__(self, server: Server) -> None:
        self._srv = server

    def pre_check(self, ops: list[tuple[str, KVEntry]]) -> list[dict[str, Any]]:
        """The leader's checks before anything reaches the log (Consul's kvsPreApply)."""
        errors: list[dict[str, Any]] = []
        store = self._srv.store
        for i, (verb, entry) in enumerate(ops):
            if not entry.key and verb != K.KV_DELETE_TREE:
                errors.append({"OpIndex": i, "What": "Must provide key"})
            elif verb == K.KV_LOCK and store.kvs_lock_delay(entry.key):
                errors.append(
                    {"OpIndex": i, "What": f'failed to lock key "{entry.key}" due to lock delay'}
                )
        return errors

    async def apply(self, ops: list[tuple[str, KVEntry]]) -> TxnAnswer:
        """Commit every op or none; returns (results, None) or (None, errors)."""
        errors = self.pre_check(ops)
        if errors:
            return None, errors
        body = {"Ops": [{"KV": {"Verb": verb, "DirEnt": e.to_wire()}} for verb, e in ops]}
        results, errors = await self._srv.apply(
            encode(MessageType.TXN, body), "raft apply failed: "
        )
        if any(verb in (K.KV_DELETE, K.KV_DELETE_CAS, K.KV_DELETE_TREE) for verb, _ in ops):
            self._srv.tombstone_gc.hint(self._srv.applier.last_index())
        return results, errors

    async def read(
        self, ops: list[tuple[str, KVEntry]], opts: QueryOptions
    ) -> tuple[QueryMeta, TxnAnswer]:
        answer: list[TxnAnswer] = [(None, None)]

        def query(ws: WatchSet | None, store: Store) -> tuple[int, bool]:
            errors = self.pre_check(ops)
            if not errors:
                results, errors = run_kv_txn(store, None, ops)
            answer[0] = (None, errors) if errors else (results, None)
            return store.latest_index(), False

        opts.min_query_index = 0  # read transactions never block
        meta = await self._srv.read(opts, query)
        return meta, answer[0]

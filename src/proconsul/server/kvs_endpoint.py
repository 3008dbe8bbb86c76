"""KV reads and writes on the server (Consul's agent/consul/kvs_endpoint.go)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from proconsul.errors import RPCError
from proconsul.server.commands import MessageType, encode
from proconsul.structs import kvs as K
from proconsul.structs.kvs import KVEntry

if TYPE_CHECKING:
    from proconsul.server.server import Server
    from proconsul.state.store import Store
    from proconsul.state.watch import WatchSet
    from proconsul.structs.query import QueryMeta, QueryOptions

log = logging.getLogger("proconsul.server.kvs")

_DELETES = frozenset({K.KV_DELETE, K.KV_DELETE_CAS, K.KV_DELETE_TREE})


class KVSEndpoint:
    def __init__(self, server: Server) -> None:
        self._srv = server

    async def apply(self, op: str, entry: KVEntry) -> bool:
        """Write one KV op; False when a CAS, lock or lock-delay check refused it."""
        if op not in K.KV_WRITE_VERBS:
            raise RPCError(f"Invalid KVS operation '{op}'")
        if not entry.key and op != K.KV_DELETE_TREE:
            raise RPCError("Must provide key")
        srv = self._srv
        if op == K.KV_LOCK:
            expires = srv.store.kvs_lock_delay(entry.key)
            if expires:
                log.warning("Rejecting lock of %s due to lock-delay until %s", entry.key, expires)
                return False
        result = await srv.apply(
            encode(MessageType.KVS, {"Op": op, "DirEnt": entry.to_wire()}), "raft apply failed: "
        )
        if op in _DELETES and result:
            srv.tombstone_gc.hint(srv.applier.last_index())
        return bool(result)

    async def get(self, key: str, opts: QueryOptions) -> tuple[QueryMeta, KVEntry | None]:
        found: list[KVEntry | None] = [None]

        def query(ws: WatchSet | None, store: Store) -> tuple[int, bool]:
            index, entry = store.kvs_get(ws, key)
            found[0] = entry
            if entry is None:
                return index, True
            return entry.modify_index, False

        meta = await self._srv.read(opts, query)
        return meta, found[0]

    async def list_prefix(self, prefix: str, opts: QueryOptions) -> tuple[QueryMeta, list[KVEntry]]:
        found: list[list[KVEntry]] = [[]]

        def query(ws: WatchSet | None, store: Store) -> tuple[int, bool]:
            index, found[0] = store.kvs_list(ws, prefix)
            return index, False

        meta = await self._srv.read(opts, query)
        return meta, found[0]

    async def list_keys(
        self, prefix: str, separator: str, opts: QueryOptions
    ) -> tuple[QueryMeta, list[str]]:
        found: list[list[str]] = [[]]

        def query(ws: WatchSet | None, store: Store) -> tuple[int, bool]:
            index, found[0] = store.kvs_list_keys(ws, prefix, separator)
            return index, False

        meta = await self._srv.read(opts, query)
        return meta, found[0]

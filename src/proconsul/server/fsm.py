"""The FSM: applies committed commands to the Store (Consul's agent/consul/fsm).

`apply(index, command)` is the only way state changes, whether the command came from the -dev
applier or, later, from the Raft log, so both produce identical stores. Results are returned
as values (bool, entries, or an exception object), as Consul's FSM returns errors through
the apply future rather than failing the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgpack

from proconsul.errors import CommandError, SnapshotError, StateError
from proconsul.server.commands import IGNORE_UNKNOWN_FLAG, MessageType, decode
from proconsul.state.autopilot import AutopilotConfig
from proconsul.state.coordinate import CoordinateEntry
from proconsul.state.store import Store
from proconsul.state.txn_ops import run_kv_txn
from proconsul.structs import kvs as K
from proconsul.structs.catalog import HealthCheck, Node, NodeService
from proconsul.structs.kvs import KVEntry
from proconsul.structs.session import Session

log = logging.getLogger("proconsul.fsm")

Result = Any


class FSM:
    def __init__(self, store: Store | None = None) -> None:
        self.store = store if store is not None else Store()
        self._handlers: dict[int, Callable[[Any, dict[str, Any]], Result]] = {
            MessageType.REGISTER: self._register,
            MessageType.DEREGISTER: self._deregister,
            MessageType.KVS: self._kvs,
            MessageType.SESSION: self._session,
            MessageType.TOMBSTONE: self._tombstone,
            MessageType.TXN: self._txn,
            MessageType.COORDINATE_BATCH_UPDATE: self._coordinate_batch_update,
            MessageType.AUTOPILOT: self._autopilot,
        }

    def apply(self, index: int, command: bytes) -> Result:
        msg_type, body = decode(command)
        ignore_unknown = bool(msg_type & IGNORE_UNKNOWN_FLAG)
        msg_type &= ~IGNORE_UNKNOWN_FLAG
        handler = self._handlers.get(msg_type)
        if handler is None:
            if ignore_unknown:
                log.warning("ignoring unknown message type %d at index %d", msg_type, index)
                return None
            raise CommandError(f"failed to apply request: unknown message type {msg_type}")
        txn = self.store.write(index)
        try:
            result = handler(txn, body)
        except StateError as err:
            result = _Rollback(err)
        except BaseException:
            txn.abort()
            raise
        if isinstance(result, _Rollback):
            txn.abort()
            return result.value
        txn.commit()
        return result

    # -- handlers (txn, body) -> result -----------------------------------------------------

    def _register(self, txn: Any, body: dict[str, Any]) -> Result:
        """A RegisterRequest: the node (unless SkipNodeUpdate finds it already there), then
        its service, then its checks, all at one index."""
        store = self.store
        name = body["Node"]
        if not body.get("SkipNodeUpdate") or name not in store.nodes:
            meta = body.get("NodeMeta")
            if meta is None:
                meta = body.get("Meta")
            store.ensure_node(txn, Node.from_wire({**body, "Meta": meta}))
        if body.get("Service"):
            store.ensure_service(txn, NodeService.from_wire({**body["Service"], "Node": name}))
        checks = list(body.get("Checks") or ())
        if body.get("Check"):
            checks.append(body["Check"])
        for c in checks:
            store.ensure_check(txn, HealthCheck.from_wire({**c, "Node": c.get("Node") or name}))
        return None

    def _deregister(self, txn: Any, body: dict[str, Any]) -> Result:
        """Only a node: it goes with everything on it; else the named service (with its
        checks) and/or the named check."""
        store = self.store
        node = body["Node"]
        service_id = body.get("ServiceID") or ""
        check_id = body.get("CheckID") or ""
        if not service_id and not check_id:
            store.delete_node(txn, node)
            return None
        if service_id:
            store.delete_service(txn, node, service_id)
        if check_id:
            store.delete_check(txn, node, check_id)
        return None

    def _kvs(self, txn: Any, body: dict[str, Any]) -> Result:
        store = self.store
        op = body["Op"]
        entry = KVEntry.from_wire(body["DirEnt"])
        if op == K.KV_SET:
            store.kvs_set(txn, entry)
            return True
        if op == K.KV_CAS:
            return store.kvs_set_cas(txn, entry, entry.modify_index) is not None
        if op == K.KV_DELETE:
            store.kvs_delete(txn, entry.key)
            return True
        if op == K.KV_DELETE_CAS:
            return store.kvs_delete_cas(txn, entry.key, entry.modify_index)
        if op == K.KV_DELETE_TREE:
            store.kvs_delete_tree(txn, entry.key)
            return True
        if op == K.KV_LOCK:
            return store.kvs_lock(txn, entry) is not None
        if op == K.KV_UNLOCK:
            return store.kvs_unlock(txn, entry) is not None
        return _Rollback(StateError(f"Invalid KVS operation '{op}'"))

    def _session(self, txn: Any, body: dict[str, Any]) -> Result:
        op = body["Op"]
        sess = Session.from_wire(body["Session"])
        if op == "create":
            self.store.session_create(txn, sess)
            return sess.id
        if op == "destroy":
            self.store.session_destroy(txn, sess.id)
            return None
        return _Rollback(StateError(f"Invalid Session operation '{op}'"))

    def _tombstone(self, txn: Any, body: dict[str, Any]) -> Result:
        if body.get("Op") != "reap":
            return _Rollback(StateError(f"Invalid Tombstone operation '{body.get('Op')}'"))
        return self.store.reap_tombstones(txn, int(body["ReapIndex"]))

    def _txn(self, txn: Any, body: dict[str, Any]) -> Result:
        """Returns (results, errors); a transaction with errors leaves the store untouched."""
        ops = [(op["KV"]["Verb"], KVEntry.from_wire(op["KV"]["DirEnt"])) for op in body["Ops"]]
        results, errors = run_kv_txn(self.store, txn, ops)
        if errors:
            return _Rollback((None, errors))
        return results, None

    def _coordinate_batch_update(self, txn: Any, body: dict[str, Any]) -> Result:
        """A batch of coordinate updates (Consul sends a bare structs.Coordinates; here the
        list sits under `Coordinates`, the field name of structs.IndexedCoordinates)."""
        entries = [CoordinateEntry.from_wire(m) for m in body.get("Coordinates") or ()]
        self.store.coordinate_batch_update(txn, entries)
        return None

    def _autopilot(self, txn: Any, body: dict[str, Any]) -> Result:
        """An AutopilotSetConfigRequest: the CAS form answers whether it wrote."""
        config = AutopilotConfig.from_wire(body.get("Config") or {})
        if body.get("CAS"):
            return self.store.autopilot_cas_config(txn, config.modify_index, config)
        self.store.autopilot_set_config(txn, config)
        return None

    # -- snapshot / restore -----------------------------------------------------------------

    def snapshot(self) -> bytes:
        packed: bytes = msgpack.packb(self.store.dump(), use_bin_type=True)
        return packed

    @staticmethod
    def _load(data: bytes) -> Store:
        try:
            dump = msgpack.unpackb(data, raw=False, strict_map_key=False)
            if not isinstance(dump, dict):
                raise TypeError("state is not a map")
            return Store.load(dump)
        except (ValueError, KeyError, TypeError, AttributeError, msgpack.UnpackException) as err:
            raise SnapshotError(f"failed to restore snapshot: {err}") from None

    def check_snapshot(self, data: bytes) -> None:
        """Raise SnapshotError unless `data` loads (checked before anything is replaced)."""
        self._load(data)

    def restore(self, data: bytes) -> None:
        """Swap in a store built from `data`, then wake every watcher of the old one."""
        new = self._load(data)
        old, self.store = self.store, new
        old.abandon()


class _Rollback:
    """A handler's answer that also means: undo this command's changes."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

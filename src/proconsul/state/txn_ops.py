"""KV operations of a transaction (Consul's state/txn.go): each verb, its result and its
per-operation error text, run inside one `WriteTxn` (or read-only against the store)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from proconsul.errors import StateError
from proconsul.structs import kvs as K
from proconsul.structs.kvs import KVEntry

if TYPE_CHECKING:
    from proconsul.state.store import Store
    from proconsul.state.txn import WriteTxn


class TxnOpError(Exception):
    """One operation failed; the transaction is rolled back and this becomes an `Errors` item."""


def run_kv_op(
    store: Store, txn: WriteTxn | None, verb: str, entry: KVEntry
) -> list[KVEntry]:
    """Run one KV verb and return the entries it answers with (values blanked except reads).

    `txn` is None for read-only transactions; write verbs are refused there by the caller.
    """
    key = entry.key
    result: KVEntry | None = None
    if verb in K.KV_WRITE_VERBS:
        if txn is None:
            raise TxnOpError(f"unknown KV verb {verb!r}")
        result = _write(store, txn, verb, entry)
    elif verb == K.KV_GET:
        result = store.kv.get(key)
        if result is None:
            raise TxnOpError(f'key "{key}" doesn\'t exist')
        return [result]
    elif verb == K.KV_GET_OR_EMPTY:
        return [store.kv.get(key) or KVEntry(key=key)]
    elif verb == K.KV_GET_TREE:
        return store.kvs_list(None, key)[1]
    elif verb == K.KV_CHECK_SESSION:
        result = store.kv.get(key)
        if result is None:
            raise TxnOpError(f'failed to check session, key "{key}" doesn\'t exist')
        if result.session != entry.session:
            raise TxnOpError(
                f'failed session check for key "{key}", current session '
                f'"{result.session}" != "{entry.session}"'
            )
    elif verb == K.KV_CHECK_INDEX:
        result = store.kv.get(key)
        if result is None:
            raise TxnOpError(f'failed to check index, key "{key}" doesn\'t exist')
        if result.modify_index != entry.modify_index:
            raise TxnOpError(
                f'failed index check for key "{key}", current modify index '
                f"{result.modify_index} != {entry.modify_index}"
            )
    elif verb == K.KV_CHECK_NOT_EXISTS:
        if key in store.kv:
            raise TxnOpError(f'key "{key}" exists')
    else:
        raise TxnOpError(f'unknown KV verb "{verb}"')
    return [replace(result, value=None)] if result is not None else []


def _write(store: Store, txn: WriteTxn, verb: str, entry: KVEntry) -> KVEntry | None:
    key = entry.key
    try:
        if verb == K.KV_SET:
            return store.kvs_set(txn, entry)
        if verb == K.KV_DELETE:
            store.kvs_delete(txn, key)
            return None
        if verb == K.KV_DELETE_CAS:
            if not store.kvs_delete_cas(txn, key, entry.modify_index):
                raise TxnOpError(f'failed to delete key "{key}", index is stale')
            return None
        if verb == K.KV_DELETE_TREE:
            store.kvs_delete_tree(txn, key)
            return None
        if verb == K.KV_CAS:
            got = store.kvs_set_cas(txn, replace(entry, modify_index=0), entry.modify_index)
            if got is None:
                raise TxnOpError(f'failed to set key "{key}", index is stale')
            return got
        if verb == K.KV_LOCK:
            got = store.kvs_lock(txn, entry)
            if got is None:
                raise TxnOpError(f'failed to lock key "{key}", lock is already held')
            return got
        got = store.kvs_unlock(txn, entry)
        if got is None:
            raise TxnOpError(
                f'failed to unlock key "{key}", lock isn\'t held, or is held by another session'
            )
        return got
    except StateError as err:
        raise TxnOpError(str(err)) from None


def run_kv_txn(
    store: Store, txn: WriteTxn | None, ops: list[tuple[str, KVEntry]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run every op; returns (results, errors). With errors, the caller aborts `txn`."""
    results: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for i, (verb, entry) in enumerate(ops):
        try:
            for e in run_kv_op(store, txn, verb, entry):
                results.append({"KV": e})
        except TxnOpError as err:
            errors.append({"OpIndex": i, "What": str(err)})
    return results, errors

"""The KV table, its tombstones (graveyard) and lock-delays (Consul's state/kvs.go,
graveyard.go and delay.go).

Index rules follow Consul: a found key answers with its own ModifyIndex (the endpoint decides),
a missing key or a listing with the highest index among what it matched and the tombstones
under the prefix, falling back to the table index. Tombstones keep that index from going
backwards after a delete until they are reaped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from proconsul.errors import StateError
from proconsul.structs.kvs import KVEntry

if TYPE_CHECKING:
    from sortedcontainers import SortedDict, SortedList

    from proconsul.state.txn import WriteTxn
    from proconsul.state.watch import Watches, WatchSet
    from proconsul.structs.session import Session

KV_TABLES = ("kvs", "tombstones")


class KVSTable:
    watches: Watches
    indexes: dict[str, int]
    kv: dict[str, KVEntry]
    kv_keys: SortedList
    tombstones: SortedDict
    lock_delays: dict[str, float]
    sessions: dict[str, Session]
    kv_by_session: dict[str, set[str]]

    if TYPE_CHECKING:

        def max_index(self, *tables: str) -> int: ...

        def now(self) -> float: ...

    # -- reads --------------------------------------------------------------------------------

    def _iter_prefix(self, prefix: str) -> Iterator[str]:
        if not prefix:
            yield from self.kv_keys
            return
        for key in self.kv_keys.irange(minimum=prefix):
            if not key.startswith(prefix):
                break
            yield key

    def _graveyard_max(self, prefix: str) -> int:
        best = 0
        for key in self.tombstones.irange(minimum=prefix):
            if not key.startswith(prefix):
                break
            idx = self.tombstones[key]
            if idx > best:
                best = idx
        return best

    def kvs_get(self, ws: WatchSet | None, key: str) -> tuple[int, KVEntry | None]:
        if ws is not None:
            ws.add(self.watches.channel(("kv", key)))
        entry = self.kv.get(key)
        if entry is not None:
            # the endpoint answers with the entry's own index; the table's is for misses
            return entry.modify_index, entry
        return self.max_index(*KV_TABLES), None

    def kvs_list(self, ws: WatchSet | None, prefix: str) -> tuple[int, list[KVEntry]]:
        if ws is not None:
            ws.add(self.watches.channel(("kvp", prefix)))
        kv = self.kv
        entries = [kv[k] for k in self._iter_prefix(prefix)]
        return self._list_index(prefix, max((e.modify_index for e in entries), default=0)), entries

    def kvs_list_keys(
        self, ws: WatchSet | None, prefix: str, separator: str
    ) -> tuple[int, list[str]]:
        if ws is not None:
            ws.add(self.watches.channel(("kvp", prefix)))
        keys: list[str] = []
        last = 0
        previous = ""
        plen = len(prefix)
        kv = self.kv
        for key in self._iter_prefix(prefix):
            e = kv[key]
            if e.modify_index > last:
                last = e.modify_index
            if separator:
                cut = key.find(separator, plen)
                if cut >= 0:
                    key = key[: cut + len(separator)]
                    if key == previous:
                        continue
                    previous = key
            keys.append(key)
        return self._list_index(prefix, last), keys

    def _list_index(self, prefix: str, entries_max: int) -> int:
        idx = self.max_index(*KV_TABLES)
        lindex = max(entries_max, self._graveyard_max(prefix)) if prefix else idx
        return lindex if lindex else idx

    def kvs_lock_delay(self, key: str) -> float:
        """Wall-clock time until which `key` may not be locked (0 when free)."""
        expires = self.lock_delays.get(key, 0.0)
        if expires and expires <= self.now():
            del self.lock_delays[key]
            return 0.0
        return expires

    # -- writes -------------------------------------------------------------------------------

    def notify_kv(self, key: str) -> None:
        """Fire the watches of `key` and of every watched prefix of it."""
        watches = self.watches
        watches.notify(("kv", key))
        n = len(key)
        if n + 1 <= len(watches):
            for i in range(n + 1):
                watches.notify(("kvp", key[:i]))
        else:
            for wk in watches.watched():
                if isinstance(wk, tuple) and wk[0] == "kvp" and key.startswith(wk[1]):
                    watches.notify(wk)

    def _held(self, key: str, old: str, new: str) -> None:
        """Keep the session -> held keys index in step with a change of a key's holder."""
        if old == new:
            return
        if old:
            keys = self.kv_by_session.get(old)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.kv_by_session[old]
        if new:
            self.kv_by_session.setdefault(new, set()).add(key)

    def held_keys(self, session: str) -> list[str]:
        return sorted(self.kv_by_session.get(session, ()))

    def _put(self, txn: WriteTxn, entry: KVEntry) -> None:
        key = entry.key
        old = self.kv.get(key)
        self.kv[key] = entry
        self._held(key, old.session if old is not None else "", entry.session)
        if old is None:
            self.kv_keys.add(key)

        def undo() -> None:
            self._held(key, entry.session, old.session if old is not None else "")
            if old is None:
                del self.kv[key]
                self.kv_keys.remove(key)
            else:
                self.kv[key] = old

        txn.on_abort(undo)
        txn.touch("kvs")
        txn.touch_kv(key)

    def _remove(self, txn: WriteTxn, key: str) -> None:
        old = self.kv.pop(key)
        self.kv_keys.remove(key)
        self._held(key, old.session, "")
        old_tomb = self.tombstones.get(key)
        self.tombstones[key] = txn.idx

        def undo() -> None:
            self.kv[key] = old
            self._held(key, "", old.session)
            self.kv_keys.add(key)
            if old_tomb is None:
                del self.tombstones[key]
            else:
                self.tombstones[key] = old_tomb

        txn.on_abort(undo)
        txn.touch("kvs")
        txn.touch("tombstones")
        txn.touch_kv(key)

    def kvs_set(
        self, txn: WriteTxn, entry: KVEntry, update_session: bool = False
    ) -> KVEntry:
        """Upsert; keeps CreateIndex, and keeps the lock holder unless `update_session`.

        Writing what is already there is a no-op that leaves ModifyIndex alone (Consul skips
        it too), so blocked readers are not woken by a repeated PUT.
        """
        existing = self.kv.get(entry.key)
        create = existing.create_index if existing is not None else txn.idx
        session = entry.session
        if not update_session:
            session = existing.session if existing is not None else ""
        entry = replace(entry, create_index=create, session=session)
        if existing is not None and existing.same_content(entry):
            return existing
        entry = replace(entry, modify_index=txn.idx)
        self._put(txn, entry)
        return entry

    def kvs_set_cas(self, txn: WriteTxn, entry: KVEntry, cas: int) -> KVEntry | None:
        existing = self.kv.get(entry.key)
        if cas == 0 and existing is not None:
            return None
        if cas > 0 and (existing is None or existing.modify_index != cas):
            return None
        return self.kvs_set(txn, entry)

    def kvs_delete(self, txn: WriteTxn, key: str) -> None:
        if key in self.kv:
            self._remove(txn, key)

    def kvs_delete_cas(self, txn: WriteTxn, key: str, cas: int) -> bool:
        existing = self.kv.get(key)
        if existing is None or existing.modify_index != cas:
            return existing is None
        self._remove(txn, key)
        return True

    def kvs_delete_tree(self, txn: WriteTxn, prefix: str) -> None:
        for key in list(self._iter_prefix(prefix)):
            self._remove(txn, key)

    def kvs_lock(self, txn: WriteTxn, entry: KVEntry) -> KVEntry | None:
        if not entry.session:
            raise StateError("missing session")
        if entry.session.lower() not in self.sessions:
            raise StateError(f'invalid session "{entry.session}"')
        entry = replace(entry, session=entry.session.lower())
        existing = self.kv.get(entry.key)
        if existing is None:
            lock_index, create = 1, txn.idx
        elif existing.session == entry.session:
            lock_index, create = existing.lock_index, existing.create_index
        elif existing.session:
            return None
        else:
            lock_index, create = existing.lock_index + 1, existing.create_index
        entry = replace(entry, lock_index=lock_index, create_index=create, modify_index=txn.idx)
        self._put(txn, entry)
        return entry

    def kvs_unlock(self, txn: WriteTxn, entry: KVEntry) -> KVEntry | None:
        if not entry.session:
            raise StateError("missing session")
        entry = replace(entry, session=entry.session.lower())
        existing = self.kv.get(entry.key)
        if existing is None or existing.session != entry.session:
            return None
        entry = replace(entry, session="", lock_index=existing.lock_index,
                        create_index=existing.create_index, modify_index=txn.idx)
        self._put(txn, entry)
        return entry

    def kvs_set_lock_delay(self, key: str, delay_s: float) -> None:
        if delay_s > 0:
            self.lock_delays[key] = self.now() + delay_s

    def reap_tombstones(self, txn: WriteTxn, up_to_index: int) -> int:
        """Forget tombstones at or below `up_to_index` (the leader's periodic reap)."""
        dead = [k for k, v in self.tombstones.items() if v <= up_to_index]
        restore: list[tuple[str, int]] = [(key, self.tombstones.pop(key)) for key in dead]

        def undo() -> None:
            for key, index in restore:
                self.tombstones[key] = index

        txn.on_abort(undo)
        if dead:
            txn.touch("tombstones")
        return len(dead)

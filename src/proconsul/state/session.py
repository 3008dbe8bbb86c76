"""The sessions table (Consul's state/session.go): create with node and check validation,
destroy with release/delete of held locks and lock-delay, and invalidation when a check the
session depends on turns critical."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from proconsul.errors import StateError
from proconsul.structs.catalog import HEALTH_CRITICAL
from proconsul.structs.session import BEHAVIOR_DELETE, SESSION_BEHAVIORS, Session

#: Lock-delays longer than this are cut to it when a session is invalidated (MaxLockDelay).
MAX_LOCK_DELAY_NS = 60_000_000_000

if TYPE_CHECKING:
    from proconsul.state.txn import WriteTxn
    from proconsul.state.watch import Watches, WatchSet
    from proconsul.structs.catalog import HealthCheck, Node
    from proconsul.structs.kvs import KVEntry


class SessionTable:
    watches: Watches
    sessions: dict[str, Session]
    sessions_by_node: dict[str, set[str]]
    sessions_by_check: dict[tuple[str, str], set[str]]
    nodes: dict[str, Node]
    checks: dict[tuple[str, str], HealthCheck]
    kv: dict[str, KVEntry]

    if TYPE_CHECKING:

        def max_index(self, *tables: str) -> int: ...

        def watch_table(self, ws: WatchSet | None, table: str) -> None: ...

        def kvs_delete(self, txn: WriteTxn, key: str) -> None: ...

        def kvs_set(
            self, txn: WriteTxn, entry: KVEntry, update_session: bool = False
        ) -> KVEntry: ...

        def kvs_set_lock_delay(self, key: str, delay_s: float) -> None: ...

        def held_keys(self, session: str) -> list[str]: ...

    # -- reads --------------------------------------------------------------------------------

    def session_get(self, ws: WatchSet | None, sid: str) -> tuple[int, Session | None]:
        if ws is not None:
            ws.add(self.watches.channel(("session", sid)))
        return self.max_index("sessions"), self.sessions.get(sid)

    def session_list(self, ws: WatchSet | None) -> tuple[int, list[Session]]:
        self.watch_table(ws, "sessions")
        return self.max_index("sessions"), sorted(self.sessions.values(), key=lambda s: s.id)

    def node_sessions(self, ws: WatchSet | None, node: str) -> tuple[int, list[Session]]:
        if ws is not None:
            ws.add(self.watches.channel(("session_node", node)))
        ids = self.sessions_by_node.get(node, ())
        return self.max_index("sessions"), sorted(
            (self.sessions[i] for i in ids), key=lambda s: s.id
        )

    # -- writes -------------------------------------------------------------------------------

    def index_session(self, sess: Session) -> None:
        self.sessions[sess.id] = sess
        self.sessions_by_node.setdefault(sess.node, set()).add(sess.id)
        for cid in sess.check_ids():
            self.sessions_by_check.setdefault((sess.node, cid), set()).add(sess.id)

    def _unindex_session(self, sess: Session) -> None:
        del self.sessions[sess.id]
        ids = self.sessions_by_node.get(sess.node)
        if ids is not None:
            ids.discard(sess.id)
            if not ids:
                del self.sessions_by_node[sess.node]
        for cid in sess.check_ids():
            ids = self.sessions_by_check.get((sess.node, cid))
            if ids is not None:
                ids.discard(sess.id)
                if not ids:
                    del self.sessions_by_check[(sess.node, cid)]

    def session_create(self, txn: WriteTxn, sess: Session) -> None:
        if not sess.id:
            raise StateError("Missing Session ID")
        if sess.behavior not in SESSION_BEHAVIORS:
            raise StateError(f"Invalid session behavior: {sess.behavior}")
        if sess.id in self.sessions:
            raise StateError(f"Session ID '{sess.id}' already in use")
        if sess.node not in self.nodes:
            raise StateError("Missing node registration")
        for cid in sess.check_ids():
            check = self.checks.get((sess.node, cid))
            if check is None:
                raise StateError(f"Missing check '{cid}' registration")
            if check.status == HEALTH_CRITICAL:
                raise StateError(f"Check '{cid}' is in {check.status} state")
        sess = replace(sess, create_index=txn.idx, modify_index=txn.idx)
        self.index_session(sess)
        txn.on_abort(lambda: self._unindex_session(sess))
        txn.touch("sessions", ("session", sess.id), ("session_node", sess.node))

    def session_destroy(self, txn: WriteTxn, sid: str) -> None:
        """Invalidate a session: drop it, then release or delete the keys it held."""
        sess = self.sessions.get(sid)
        if sess is None:
            return
        self._unindex_session(sess)
        txn.on_abort(lambda: self.index_session(sess))
        txn.touch("sessions", ("session", sid), ("session_node", sess.node))
        delay_s = min(sess.lock_delay_ns, MAX_LOCK_DELAY_NS) / 1e9
        for key in self.held_keys(sid):
            entry = self.kv[key]
            if sess.behavior == BEHAVIOR_DELETE:
                self.kvs_delete(txn, entry.key)
            else:
                self.kvs_set(txn, replace(entry, session=""), update_session=True)
            self.kvs_set_lock_delay(entry.key, delay_s)

    def sessions_for_check(self, node: str, check_id: str) -> list[str]:
        return sorted(self.sessions_by_check.get((node, check_id), ()))

    def sessions_for_node(self, node: str) -> list[str]:
        return sorted(self.sessions_by_node.get(node, ()))

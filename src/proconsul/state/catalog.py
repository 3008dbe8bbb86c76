"""Catalog tables: nodes and health checks (Consul's state/catalog.go), as far as sessions
need them. A check turning critical, or its node going away, invalidates the sessions that
depend on it, exactly as Consul's store does inside the same transaction."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from proconsul.structs.catalog import HEALTH_CRITICAL, HealthCheck, Node

if TYPE_CHECKING:
    from proconsul.state.txn import WriteTxn
    from proconsul.state.watch import Watches, WatchSet


class CatalogTables:
    watches: Watches
    nodes: dict[str, Node]
    checks: dict[tuple[str, str], HealthCheck]

    if TYPE_CHECKING:

        def max_index(self, *tables: str) -> int: ...

        def watch_table(self, ws: WatchSet | None, table: str) -> None: ...

        def session_destroy(self, txn: WriteTxn, sid: str) -> None: ...

        def sessions_for_check(self, node: str, check_id: str) -> list[str]: ...

        def sessions_for_node(self, node: str) -> list[str]: ...

    def catalog_nodes(self, ws: WatchSet | None) -> tuple[int, list[Node]]:
        self.watch_table(ws, "nodes")
        return self.max_index("nodes"), sorted(self.nodes.values(), key=lambda n: n.node)

    def node_checks(self, ws: WatchSet | None, node: str) -> tuple[int, list[HealthCheck]]:
        self.watch_table(ws, "checks")
        found = [c for (n, _), c in self.checks.items() if n == node]
        return self.max_index("checks"), sorted(found, key=lambda c: c.check_id)

    def ensure_node(self, txn: WriteTxn, node: Node) -> None:
        existing = self.nodes.get(node.node)
        if existing is not None:
            node = replace(node, create_index=existing.create_index,
                           modify_index=existing.modify_index)
            if node == existing:
                return
            node = replace(node, modify_index=txn.idx)
        else:
            node = replace(node, create_index=txn.idx, modify_index=txn.idx)
        self.nodes[node.node] = node

        def undo() -> None:
            if existing is None:
                del self.nodes[node.node]
            else:
                self.nodes[node.node] = existing

        txn.on_abort(undo)
        txn.touch("nodes", ("node", node.node))

    def ensure_check(self, txn: WriteTxn, check: HealthCheck) -> None:
        if check.node not in self.nodes:
            from proconsul.errors import StateError

            raise StateError("Missing node registration")
        key = (check.node, check.check_id)
        existing = self.checks.get(key)
        if existing is not None:
            check = replace(check, create_index=existing.create_index,
                            modify_index=existing.modify_index)
            if check == existing:
                return
            check = replace(check, modify_index=txn.idx)
        else:
            check = replace(check, create_index=txn.idx, modify_index=txn.idx)
        self.checks[key] = check

        def undo() -> None:
            if existing is None:
                del self.checks[key]
            else:
                self.checks[key] = existing

        txn.on_abort(undo)
        txn.touch("checks", ("node", check.node))
        if check.status == HEALTH_CRITICAL:
            for sid in self.sessions_for_check(check.node, check.check_id):
                self.session_destroy(txn, sid)

    def delete_node(self, txn: WriteTxn, name: str) -> None:
        existing = self.nodes.get(name)
        if existing is None:
            return
        for sid in self.sessions_for_node(name):
            self.session_destroy(txn, sid)
        removed = [(k, self.checks.pop(k)) for k in [k for k in self.checks if k[0] == name]]
        if removed:

            def undo_checks() -> None:
                for key, check in removed:
                    self.checks[key] = check

            txn.on_abort(undo_checks)
            txn.touch("checks")
        del self.nodes[name]
        txn.on_abort(lambda: self.nodes.__setitem__(name, existing))
        txn.touch("nodes", ("node", name))

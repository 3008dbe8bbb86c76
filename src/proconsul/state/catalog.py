"""Catalog tables: nodes, service instances and health checks (Consul's state/catalog.go).

Blocking queries on the catalog are the busiest ones a cluster serves, so watches are narrow:
a read of one service watches only `("service", name)`, and a write fires that key only for
the service names it touched. A node or node-level check change touches every service on the
node (Consul's updateAllServiceIndexesOfNode), because health entries embed both.

Each service name also has an index of its own, kept in the store's index map as
`service.<name>`; it is never removed, so a query for a service whose last instance went away
still answers with the index of that delete instead of going backwards (the role KV
tombstones play for prefixes).

A check turning critical, a check going away, or its node going away invalidates the sessions
that depend on it inside the same transaction, as Consul's store does; a node going away also
takes its network coordinates with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from proconsul.errors import StateError
from proconsul.structs.catalog import HEALTH_CRITICAL, HealthCheck, Node, NodeService

if TYPE_CHECKING:
    from proconsul.state.txn import WriteTxn
    from proconsul.state.watch import Watches, WatchSet

ServiceKey = tuple[str, str]
MetaFilter = dict[str, str] | None
HealthEntry = tuple[Node, NodeService, list[HealthCheck]]
_K = TypeVar("_K")
_V = TypeVar("_V")


def service_index_name(name: str) -> str:
    """The index-map entry holding the last index that changed service `name`."""
    return "service." + name


def meta_matches(node: Node, wanted: MetaFilter) -> bool:
    """Consul's SatisfiesMetaFilters: every requested pair present with the exact value."""
    if not wanted:
        return True
    meta = node.meta
    return all(meta.get(k) == v for k, v in wanted.items())


def tags_match(svc: NodeService, tags: list[str]) -> bool:
    """Every requested tag is on the instance, compared case-insensitively as Consul does."""
    if not tags:
        return True
    have = {t.lower() for t in svc.tags}
    return all(t.lower() in have for t in tags)


class CatalogTables:
    watches: Watches
    indexes: dict[str, int]
    nodes: dict[str, Node]
    checks: dict[tuple[str, str], HealthCheck]
    services: dict[ServiceKey, NodeService]
    services_by_name: dict[str, set[ServiceKey]]
    services_by_node: dict[str, set[str]]
    checks_by_node: dict[str, set[str]]
    checks_by_service: dict[ServiceKey, set[str]]

    if TYPE_CHECKING:

        def max_index(self, *tables: str) -> int: ...

        def watch_table(self, ws: WatchSet | None, table: str) -> None: ...

        def session_destroy(self, txn: WriteTxn, sid: str) -> None: ...

        def sessions_for_check(self, node: str, check_id: str) -> list[str]: ...

        def sessions_for_node(self, node: str) -> list[str]: ...

        def delete_node_coordinates(self, txn: WriteTxn, node: str) -> None: ...

    # -- secondary indexes (also used by snapshot restore) -----------------------------------

    def index_service(self, svc: NodeService) -> None:
        key = (svc.node, svc.id)
        self.services[key] = svc
        self.services_by_name.setdefault(svc.service, set()).add(key)
        self.services_by_node.setdefault(svc.node, set()).add(svc.id)

    def unindex_service(self, key: ServiceKey) -> NodeService:
        svc = self.services.pop(key)
        _discard(self.services_by_name, svc.service, key)
        _discard(self.services_by_node, svc.node, svc.id)
        return svc

    def index_check(self, check: HealthCheck) -> None:
        self.checks[(check.node, check.check_id)] = check
        self.checks_by_node.setdefault(check.node, set()).add(check.check_id)
        if check.service_id:
            self.checks_by_service.setdefault((check.node, check.service_id), set()).add(
                check.check_id
            )

    def unindex_check(self, key: tuple[str, str]) -> HealthCheck:
        check = self.checks.pop(key)
        _discard(self.checks_by_node, check.node, check.check_id)
        if check.service_id:
            _discard(self.checks_by_service, (check.node, check.service_id), check.check_id)
        return check

    # -- touch helpers ------------------------------------------------------------------------

    def _touch_service(self, txn: WriteTxn, name: str) -> None:
        txn.touch(service_index_name(name), ("service", name))

    def _touch_node_services(self, txn: WriteTxn, node: str) -> None:
        for sid in self.services_by_node.get(node, ()):
            self._touch_service(txn, self.services[(node, sid)].service)

    # -- writes -------------------------------------------------------------------------------

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
        self._touch_node_services(txn, node.node)

    def ensure_service(self, txn: WriteTxn, svc: NodeService) -> None:
        if svc.node not in self.nodes:
            raise StateError("Missing node registration")
        key = (svc.node, svc.id)
        existing = self.services.get(key)
        if existing is not None:
            svc = replace(svc, create_index=existing.create_index,
                          modify_index=existing.modify_index)
            if svc == existing:
                return
            svc = replace(svc, modify_index=txn.idx)
            self.unindex_service(key)
            self._touch_service(txn, existing.service)
        else:
            svc = replace(svc, create_index=txn.idx, modify_index=txn.idx)
        self.index_service(svc)

        def undo() -> None:
            self.unindex_service(key)
            if existing is not None:
                self.index_service(existing)

        txn.on_abort(undo)
        txn.touch("services", ("node", svc.node))
        self._touch_service(txn, svc.service)

    def ensure_check(self, txn: WriteTxn, check: HealthCheck) -> None:
        if check.node not in self.nodes:
            raise StateError("Missing node registration")
        if check.service_id:
            svc = self.services.get((check.node, check.service_id))
            if svc is None:
                raise StateError("Missing service registration")
            check = replace(check, service_name=svc.service, service_tags=svc.tags)
        else:
            check = replace(check, service_name="", service_tags=())
        key = (check.node, check.check_id)
        existing = self.checks.get(key)
        if existing is not None:
            check = replace(check, create_index=existing.create_index,
                            modify_index=existing.modify_index)
            if check == existing:
                return
            check = replace(check, modify_index=txn.idx)
            self.unindex_check(key)
        else:
            check = replace(check, create_index=txn.idx, modify_index=txn.idx)
        self.index_check(check)

        def undo() -> None:
            self.unindex_check(key)
            if existing is not None:
                self.index_check(existing)

        txn.on_abort(undo)
        self._touch_check(txn, check)
        if existing is not None and existing.service_id != check.service_id:
            self._touch_check(txn, existing)
        if check.status == HEALTH_CRITICAL:
            for sid in self.sessions_for_check(check.node, check.check_id):
                self.session_destroy(txn, sid)

    def _touch_check(self, txn: WriteTxn, check: HealthCheck) -> None:
        txn.touch("checks", ("node", check.node))
        if check.service_name:
            self._touch_service(txn, check.service_name)
        elif not check.service_id:
            self._touch_node_services(txn, check.node)

    def delete_check(self, txn: WriteTxn, node: str, check_id: str) -> None:
        key = (node, check_id)
        if key not in self.checks:
            return
        old = self.unindex_check(key)
        txn.on_abort(lambda: self.index_check(old))
        self._touch_check(txn, old)
        for sid in self.sessions_for_check(node, check_id):
            self.session_destroy(txn, sid)

    def delete_service(self, txn: WriteTxn, node: str, service_id: str) -> None:
        key = (node, service_id)
        if key not in self.services:
            return
        for cid in sorted(self.checks_by_service.get(key, ())):
            self.delete_check(txn, node, cid)
        old = self.unindex_service(key)
        txn.on_abort(lambda: self.index_service(old))
        txn.touch("services", ("node", node))
        self._touch_service(txn, old.service)

    def delete_node(self, txn: WriteTxn, name: str) -> None:
        existing = self.nodes.get(name)
        if existing is None:
            return
        for sid in self.sessions_for_node(name):
            self.session_destroy(txn, sid)
        for service_id in sorted(self.services_by_node.get(name, ())):
            self.delete_service(txn, name, service_id)
        for cid in sorted(self.checks_by_node.get(name, ())):
            self.delete_check(txn, name, cid)
        self.delete_node_coordinates(txn, name)
        del self.nodes[name]
        txn.on_abort(lambda: self.nodes.__setitem__(name, existing))
        txn.touch("nodes", ("node", name))

    # -- reads --------------------------------------------------------------------------------

    def service_index(self, name: str, with_checks: bool = False) -> int:
        """The index a read of service `name` answers with: the service's own index once it
        was ever written, else the tables' (Consul's maxIndexForService)."""
        idx = self.indexes.get(service_index_name(name), 0)
        if idx:
            return idx
        if with_checks:
            return self.max_index("nodes", "services", "checks")
        return self.max_index("nodes", "services")

    def catalog_nodes(
        self, ws: WatchSet | None, node_meta: MetaFilter = None
    ) -> tuple[int, list[Node]]:
        self.watch_table(ws, "nodes")
        found = [n for n in self.nodes.values() if meta_matches(n, node_meta)]
        return self.max_index("nodes"), sorted(found, key=lambda n: n.node)

    def catalog_services(
        self, ws: WatchSet | None, node_meta: MetaFilter = None,
        keep: Callable[[Node, NodeService], bool] | None = None,
    ) -> tuple[int, dict[str, list[str]]]:
        """Service name -> the union of the tags of its instances (on matching nodes, and
        passing `keep`: Consul filters instances before the roll-up)."""
        self.watch_table(ws, "services")
        tables: tuple[str, ...] = ("services",)
        if node_meta:
            self.watch_table(ws, "nodes")
            tables = ("nodes", "services")
        tags: dict[str, set[str]] = {}
        for svc in self.services.values():
            if node_meta and not meta_matches(self.nodes[svc.node], node_meta):
                continue
            if keep is not None and not keep(self.nodes[svc.node], svc):
                continue
            tags.setdefault(svc.service, set()).update(svc.tags)
        return self.max_index(*tables), {n: sorted(tags[n]) for n in sorted(tags)}

    def service_nodes(
        self, ws: WatchSet | None, name: str, tags: list[str] | None = None,
        node_meta: MetaFilter = None,
    ) -> tuple[int, list[tuple[Node, NodeService]]]:
        if ws is not None:
            ws.add(self.watches.channel(("service", name)))
        found: list[tuple[Node, NodeService]] = []
        for key in self.services_by_name.get(name, ()):
            svc = self.services[key]
            node = self.nodes[svc.node]
            if tags_match(svc, tags or []) and meta_matches(node, node_meta):
                found.append((node, svc))
        found.sort(key=lambda p: (p[0].node, p[1].id))
        return self.service_index(name), found

    def node_services(
        self, ws: WatchSet | None, name: str
    ) -> tuple[int, Node | None, list[NodeService]]:
        if ws is not None:
            ws.add(self.watches.channel(("node", name)))
        idx = self.max_index("nodes", "services")
        node = self.nodes.get(name)
        if node is None:
            return idx, None, []
        ids = sorted(self.services_by_node.get(name, ()))
        return idx, node, [self.services[(name, sid)] for sid in ids]

    def node_checks(self, ws: WatchSet | None, node: str) -> tuple[int, list[HealthCheck]]:
        if ws is not None:
            ws.add(self.watches.channel(("node", node)))
        ids = sorted(self.checks_by_node.get(node, ()))
        return self.max_index("checks"), [self.checks[(node, cid)] for cid in ids]

    def service_checks(
        self, ws: WatchSet | None, name: str, node_meta: MetaFilter = None
    ) -> tuple[int, list[HealthCheck]]:
        if ws is not None:
            ws.add(self.watches.channel(("service", name)))
        found: list[HealthCheck] = []
        for key in self.services_by_name.get(name, ()):
            if not meta_matches(self.nodes[key[0]], node_meta):
                continue
            found.extend(self.checks[(key[0], c)] for c in self.checks_by_service.get(key, ()))
        found.sort(key=lambda c: (c.node, c.check_id))
        return self.service_index(name, with_checks=True), found

    def checks_in_state(
        self, ws: WatchSet | None, state: str, node_meta: MetaFilter = None
    ) -> tuple[int, list[HealthCheck]]:
        """Checks with status `state`, or every check for `any`."""
        self.watch_table(ws, "checks")
        tables: tuple[str, ...] = ("checks",)
        if node_meta:
            self.watch_table(ws, "nodes")
            tables = ("nodes", "checks")
        found = [
            c for c in self.checks.values()
            if (state == "any" or c.status == state)
            and meta_matches(self.nodes[c.node], node_meta)
        ]
        found.sort(key=lambda c: (c.node, c.check_id))
        return self.max_index(*tables), found

    def health_service_nodes(
        self, ws: WatchSet | None, name: str, tags: list[str] | None = None,
        node_meta: MetaFilter = None,
    ) -> tuple[int, list[HealthEntry]]:
        """Each instance with its node and the checks that decide its health: the node-level
        ones and its own, never those of other services on the node."""
        _, pairs = self.service_nodes(ws, name, tags, node_meta)
        entries: list[HealthEntry] = []
        for node, svc in pairs:
            ids = [
                cid for cid in self.checks_by_node.get(node.node, ())
                if self.checks[(node.node, cid)].service_id in ("", svc.id)
            ]
            ids.sort()
            entries.append((node, svc, [self.checks[(node.node, cid)] for cid in ids]))
        return self.service_index(name, with_checks=True), entries

    def connect_service_nodes(
        self, ws: WatchSet | None, name: str, tags: list[str] | None = None,
        node_meta: MetaFilter = None,
    ) -> tuple[int, list[HealthEntry]]:
        """Mesh-capable instances for service `name` (Consul's Connect lookup): the sidecar
        proxies whose destination it is, and its own instances that are Connect-native.

        Found by a scan of the services (there is no connect index yet), watched through the
        services table so a new or removed proxy wakes the query, and through each proxy's
        service so its checks do.
        """
        self.watch_table(ws, "services")
        names = sorted({
            svc.service for svc in self.services.values()
            if (svc.kind == "connect-proxy"
                and svc.proxy.get("DestinationServiceName") == name)
            or (svc.service == name and svc.connect.get("Native"))
        })
        entries: list[HealthEntry] = []
        index = self.max_index("services")
        for proxy in names:
            idx, found = self.health_service_nodes(ws, proxy, tags, node_meta)
            index = max(index, idx)
            entries.extend(e for e in found if proxy != name or e[1].connect.get("Native"))
        return index, entries


def _discard(index: dict[_K, set[_V]], key: _K, value: _V) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(value)
        if not members:
            del index[key]

"""The Store: in-memory tables, per-table max indexes, and the watch registry.

Mirrors Consul's state store: reads return `(index, result)` and register watches on exactly
what they read; writes happen in a `WriteTxn` stamped with the Raft index of the command that
made them. The tables live in mixins, one module per table family (kvs.py, session.py,
catalog.py, coordinate.py), the way Consul splits its state package.
"""

from __future__ import annotations

import time
from typing import Any

from sortedcontainers import SortedDict, SortedList

from proconsul.state.autopilot import AutopilotConfig, AutopilotTable
from proconsul.state.catalog import CatalogTables
from proconsul.state.coordinate import CoordinateEntry, CoordinateSet, CoordinateTable
from proconsul.state.kvs import KVSTable
from proconsul.state.session import SessionTable
from proconsul.state.txn import WriteTxn
from proconsul.state.watch import Watches, WatchSet
from proconsul.structs.catalog import HealthCheck, Node, NodeService
from proconsul.structs.kvs import KVEntry
from proconsul.structs.session import Session

#: Snapshot format version of `Store.dump`; bump on incompatible change.
DUMP_VERSION = 1


class Store(KVSTable, SessionTable, CatalogTables, CoordinateTable, AutopilotTable):
    """All replicated state of one server (or of a -dev agent)."""

    def __init__(self) -> None:
        self.watches = Watches()
        self.indexes: dict[str, int] = {}
        self.abandoned = False
        # kvs
        self.kv: dict[str, KVEntry] = {}
        self.kv_keys: SortedList = SortedList()
        self.tombstones: SortedDict = SortedDict()
        self.lock_delays: dict[str, float] = {}
        self.kv_by_session: dict[str, set[str]] = {}
        # sessions
        self.sessions: dict[str, Session] = {}
        self.sessions_by_node: dict[str, set[str]] = {}
        self.sessions_by_check: dict[tuple[str, str], set[str]] = {}
        # catalog
        self.nodes: dict[str, Node] = {}
        self.checks: dict[tuple[str, str], HealthCheck] = {}
        self.services: dict[tuple[str, str], NodeService] = {}
        self.services_by_name: dict[str, set[tuple[str, str]]] = {}
        self.services_by_node: dict[str, set[str]] = {}
        self.checks_by_node: dict[str, set[str]] = {}
        self.checks_by_service: dict[tuple[str, str], set[str]] = {}
        # coordinates: node -> segment -> its latest Vivaldi coordinate
        self.coordinate_sets: dict[str, CoordinateSet] = {}
        # the autopilot record (None until the first leader writes it)
        self.autopilot_config: AutopilotConfig | None = None

    # -- indexes and watches ------------------------------------------------------------------

    def max_index(self, *tables: str) -> int:
        """Highest index written to any of `tables` (0 when none was ever written)."""
        get = self.indexes.get
        return max((get(t, 0) for t in tables), default=0)

    def latest_index(self) -> int:
        return max(self.indexes.values(), default=0)

    def watch_table(self, ws: WatchSet | None, table: str) -> None:
        if ws is not None:
            ws.add(self.watches.channel(("table", table)))

    def watch_abandon(self, ws: WatchSet) -> None:
        """Every blocking query also waits on this, so a restore wakes it."""
        ws.add(self.watches.channel(("abandon",)))

    def abandon(self) -> None:
        """Called when a restore replaces this store: wake every watcher so it re-reads."""
        self.abandoned = True
        self.watches.notify_all()

    def write(self, idx: int) -> WriteTxn:
        return WriteTxn(self, idx)

    def now(self) -> float:
        """Wall-clock seconds; lock-delay deadlines are kept in wall time like Consul's."""
        return time.time()

    # -- snapshot -----------------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """Everything needed to rebuild this store, as plain msgpack-able values."""
        return {
            "Version": DUMP_VERSION,
            "Index": dict(self.indexes),
            "KVs": [e.to_wire() for e in self.kv.values()],
            "Tombstones": [[k, v] for k, v in self.tombstones.items()],
            "Sessions": [s.to_wire() for s in self.sessions.values()],
            "Nodes": [
                {**n.to_wire(), "CreateIndex": n.create_index, "ModifyIndex": n.modify_index}
                for n in self.nodes.values()
            ],
            "Services": [
                {**v.to_wire(), "CreateIndex": v.create_index, "ModifyIndex": v.modify_index}
                for v in self.services.values()
            ],
            "Checks": [
                {**c.to_wire(), "CreateIndex": c.create_index, "ModifyIndex": c.modify_index}
                for c in self.checks.values()
            ],
            "Coordinates": [e.to_wire() for e in self.coordinates(None)[1]],
            "Autopilot": (self.autopilot_config.to_wire()
                          if self.autopilot_config is not None else None),
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> Store:
        """Build a fresh store from `dump` output (the restore path)."""
        from dataclasses import replace

        s = cls()
        s.indexes = {str(k): int(v) for k, v in data.get("Index", {}).items()}
        for m in data.get("KVs", ()):
            e = KVEntry.from_wire(m)
            s.kv[e.key] = e
            if e.session:
                s.kv_by_session.setdefault(e.session, set()).add(e.key)
        s.kv_keys.update(s.kv)
        for k, v in data.get("Tombstones", ()):
            s.tombstones[k] = int(v)
        for m in data.get("Sessions", ()):
            s.index_session(Session.from_wire(m))
        for m in data.get("Nodes", ()):
            n = replace(Node.from_wire(m), create_index=int(m.get("CreateIndex", 0)),
                        modify_index=int(m.get("ModifyIndex", 0)))
            s.nodes[n.node] = n
        for m in data.get("Services", ()):
            s.index_service(replace(
                NodeService.from_wire(m), create_index=int(m.get("CreateIndex", 0)),
                modify_index=int(m.get("ModifyIndex", 0))))
        for m in data.get("Checks", ()):
            s.index_check(replace(
                HealthCheck.from_wire(m), create_index=int(m.get("CreateIndex", 0)),
                modify_index=int(m.get("ModifyIndex", 0))))
        for m in data.get("Coordinates", ()):
            s.restore_coordinate(CoordinateEntry.from_wire(m))
        if data.get("Autopilot"):
            s.autopilot_config = AutopilotConfig.from_wire(data["Autopilot"])
        return s

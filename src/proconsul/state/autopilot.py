"""The autopilot configuration table (Consul's state/autopilot.go): one replicated record, so
every server applies the same cleanup and stabilization rules and a change made through any
agent (`consul operator autopilot set-config`) survives leader changes and restarts.

The leader writes the agent's `autopilot {}` block here when it first leads and finds no
record; from then on the record, not the config file, is what counts. Updates may be
check-and-set on the record's ModifyIndex, and a CAS against a missing record fails, as
Consul's does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from proconsul.config.duration import format_duration_ns

if TYPE_CHECKING:
    from proconsul.state.txn import WriteTxn
    from proconsul.state.watch import Watches, WatchSet

TABLE = "autopilot-config"

_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class AutopilotConfig:
    """structs.AutopilotConfig; durations in seconds here, nanoseconds on the wire."""

    cleanup_dead_servers: bool = True
    last_contact_threshold: float = 0.2
    max_trailing_logs: int = 250
    min_quorum: int = 0
    server_stabilization_time: float = 10.0
    redundancy_zone_tag: str = ""
    disable_upgrade_migration: bool = False
    upgrade_version_tag: str = ""
    create_index: int = 0
    modify_index: int = 0

    def to_wire(self) -> dict[str, Any]:
        """The Raft command and RPC form (Go's msgpack: durations as int64 nanoseconds)."""
        return {
            "CleanupDeadServers": self.cleanup_dead_servers,
            "LastContactThreshold": round(self.last_contact_threshold * _NS),
            "MaxTrailingLogs": self.max_trailing_logs,
            "MinQuorum": self.min_quorum,
            "ServerStabilizationTime": round(self.server_stabilization_time * _NS),
            "RedundancyZoneTag": self.redundancy_zone_tag,
            "DisableUpgradeMigration": self.disable_upgrade_migration,
            "UpgradeVersionTag": self.upgrade_version_tag,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }

    @classmethod
    def from_wire(cls, m: Mapping[str, Any]) -> AutopilotConfig:
        return cls(
            cleanup_dead_servers=bool(m.get("CleanupDeadServers", False)),
            last_contact_threshold=int(m.get("LastContactThreshold") or 0) / _NS,
            max_trailing_logs=int(m.get("MaxTrailingLogs") or 0),
            min_quorum=int(m.get("MinQuorum") or 0),
            server_stabilization_time=int(m.get("ServerStabilizationTime") or 0) / _NS,
            redundancy_zone_tag=str(m.get("RedundancyZoneTag") or ""),
            disable_upgrade_migration=bool(m.get("DisableUpgradeMigration", False)),
            upgrade_version_tag=str(m.get("UpgradeVersionTag") or ""),
            create_index=int(m.get("CreateIndex") or 0),
            modify_index=int(m.get("ModifyIndex") or 0),
        )

    def to_api(self) -> dict[str, Any]:
        """api.AutopilotConfiguration: durations as Go duration strings."""
        out = self.to_wire()
        out["LastContactThreshold"] = format_duration_ns(out["LastContactThreshold"])
        out["ServerStabilizationTime"] = format_duration_ns(out["ServerStabilizationTime"])
        return out


class AutopilotTable:
    """Mixin of Store: the single autopilot record."""

    autopilot_config: AutopilotConfig | None
    indexes: dict[str, int]
    watches: Watches

    if TYPE_CHECKING:

        def watch_table(self, ws: WatchSet | None, table: str) -> None: ...

    def autopilot_get_config(self, ws: WatchSet | None = None
                             ) -> tuple[int, AutopilotConfig | None]:
        self.watch_table(ws, TABLE)
        return self.indexes.get(TABLE, 0), self.autopilot_config

    def autopilot_set_config(self, txn: WriteTxn, config: AutopilotConfig) -> None:
        existing = self.autopilot_config
        create = existing.create_index if existing is not None else txn.idx
        self.autopilot_config = replace(config, create_index=create, modify_index=txn.idx)

        def undo() -> None:
            self.autopilot_config = existing

        txn.on_abort(undo)
        txn.touch(TABLE)

    def autopilot_cas_config(self, txn: WriteTxn, cas_index: int,
                             config: AutopilotConfig) -> bool:
        """Write only if the record exists and was last modified at `cas_index`."""
        existing = self.autopilot_config
        if existing is None or existing.modify_index != cas_index:
            return False
        self.autopilot_set_config(txn, config)
        return True

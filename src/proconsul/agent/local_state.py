"""The agent's own services and checks, the truth that anti-entropy copies into the catalog
(Consul's agent/local/state.go).

Every entry carries `in_sync` and `deleted` flags instead of being written to the catalog at
once: a write that fails (no leader, a restart) is simply retried by the next sync, and a
deletion is remembered until the catalog has really dropped it. Output-only changes of a check
are held back for `check_update_interval` so a chatty check does not turn into a Raft write per
run; status changes are synced at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from proconsul.agent.checks.base import CheckDefinition
from proconsul.structs.catalog import HealthCheck, NodeService

#: Check IDs of maintenance mode (Consul's structs.NodeMaint and ServiceMaintPrefix).
NODE_MAINT_ID = "_node_maintenance"
SERVICE_MAINT_PREFIX = "_service_maintenance:"


@dataclass(slots=True)
class ServiceState:
    service: NodeService
    token: str = ""
    in_sync: bool = False
    deleted: bool = False


@dataclass(slots=True)
class CheckState:
    check: HealthCheck
    definition: CheckDefinition | None = None
    token: str = ""
    in_sync: bool = False
    deleted: bool = False
    #: pending timer that releases a held-back output change to the next sync
    deferred: asyncio.TimerHandle | None = None
    #: monotonic time the check last turned critical (None while it is not critical)
    critical_since: float | None = None


def truncate_output(output: str, limit: int) -> str:
    """Notes past the check's output limit, cut as Consul cuts TTL output."""
    raw = output.encode()
    if limit <= 0 or len(raw) <= limit:
        return output
    cut = raw[:limit].decode(errors="ignore")
    return f"{cut} ... (captured {limit} of {len(raw)} bytes)"


class LocalState:
    """Implements `CheckStatusSink`: runners report here."""

    def __init__(self, node_name: str, check_update_interval: float = 300.0,
                 discard_check_output: bool = False) -> None:
        self.node_name = node_name
        self.check_update_interval = check_update_interval
        self.discard_check_output = discard_check_output
        self.services: dict[str, ServiceState] = {}
        self.checks: dict[str, CheckState] = {}
        #: called after every change that anti-entropy should push
        self.on_change: Callable[[], None] | None = None
        self._changed = asyncio.Event()

    # -- notification -------------------------------------------------------------------------

    def _notify(self, sync: bool = True) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        if sync and self.on_change is not None:
            self.on_change()

    async def wait_change(self, timeout: float) -> None:
        """Return on the next change of any entry or after `timeout` seconds."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass

    # -- services -----------------------------------------------------------------------------

    def add_service(self, svc: NodeService, token: str = "") -> None:
        self.services[svc.id] = ServiceState(svc, token)
        for cs in self.checks.values():
            c = cs.check
            if c.service_id == svc.id and not cs.deleted and (
                    c.service_name != svc.service or c.service_tags != svc.tags):
                cs.check = dataclasses.replace(c, service_name=svc.service,
                                               service_tags=svc.tags)
                cs.in_sync = False
        self._notify()

    def remove_service(self, service_id: str) -> bool:
        """Mark a service (and its checks) for removal from the catalog; False if unknown."""
        st = self.services.get(service_id)
        if st is None or st.deleted:
            return False
        st.deleted, st.in_sync = True, False
        for cs in self.checks.values():
            if cs.check.service_id == service_id and not cs.deleted:
                self._mark_check_deleted(cs)
        self._notify()
        return True

    def service(self, service_id: str) -> NodeService | None:
        st = self.services.get(service_id)
        return None if st is None or st.deleted else st.service

    def list_services(self) -> dict[str, NodeService]:
        return {sid: st.service for sid, st in self.services.items() if not st.deleted}

    # -- checks -------------------------------------------------------------------------------

    def add_check(self, check: HealthCheck, definition: CheckDefinition | None = None,
                  token: str = "") -> None:
        old = self.checks.get(check.check_id)
        if old is not None and old.deferred is not None:
            old.deferred.cancel()
        if check.service_id:
            svc = self.service(check.service_id)
            if svc is not None:
                check = dataclasses.replace(check, service_name=svc.service,
                                            service_tags=svc.tags)
        if self.discard_check_output:
            check = dataclasses.replace(check, output="")
        since = time.monotonic() if check.status == "critical" else None
        self.checks[check.check_id] = CheckState(check, definition, token,
                                                 critical_since=since)
        self._notify()

    def remove_check(self, check_id: str) -> bool:
        cs = self.checks.get(check_id)
        if cs is None or cs.deleted:
            return False
        self._mark_check_deleted(cs)
        self._notify()
        return True

    def _mark_check_deleted(self, cs: CheckState) -> None:
        if cs.deferred is not None:
            cs.deferred.cancel()
            cs.deferred = None
        cs.deleted, cs.in_sync = True, False

    def check(self, check_id: str) -> HealthCheck | None:
        cs = self.checks.get(check_id)
        return None if cs is None or cs.deleted else cs.check

    def check_state(self, check_id: str) -> CheckState | None:
        cs = self.checks.get(check_id)
        return None if cs is None or cs.deleted else cs

    def list_checks(self) -> dict[str, HealthCheck]:
        return {cid: cs.check for cid, cs in self.checks.items() if not cs.deleted}

    def service_checks(self, service_id: str) -> list[HealthCheck]:
        return [cs.check for cs in self.checks.values()
                if not cs.deleted and cs.check.service_id == service_id]

    def node_checks(self) -> list[HealthCheck]:
        return [cs.check for cs in self.checks.values()
                if not cs.deleted and not cs.check.service_id]

    def update_check(self, check_id: str, status: str, output: str) -> None:
        """Record a result; a status change syncs now, an output-only change later."""
        cs = self.checks.get(check_id)
        if cs is None or cs.deleted:
            return
        if self.discard_check_output:
            output = ""
        old = cs.check
        if old.status == status and old.output == output:
            return
        cs.check = dataclasses.replace(old, status=status, output=output)
        if status != "critical":
            cs.critical_since = None
        elif cs.critical_since is None:
            cs.critical_since = time.monotonic()
        if old.status == status and self.check_update_interval > 0:
            # output only: the catalog copy may lag; readers of the agent see it now
            if cs.in_sync and cs.deferred is None:
                cs.deferred = asyncio.get_running_loop().call_later(
                    self.check_update_interval, self._release_deferred, check_id)
            self._notify(sync=False)
            return
        if cs.deferred is not None:
            cs.deferred.cancel()
            cs.deferred = None
        cs.in_sync = False
        self._notify()

    def _release_deferred(self, check_id: str) -> None:
        cs = self.checks.get(check_id)
        if cs is None or cs.deleted:
            return
        cs.deferred = None
        cs.in_sync = False
        self._notify()

    # -- anti-entropy view --------------------------------------------------------------------

    def pending(self) -> bool:
        """Whether anything differs from what was last pushed."""
        return (any(not s.in_sync for s in self.services.values())
                or any(not c.in_sync for c in self.checks.values()))

    def forget_deleted_service(self, service_id: str) -> None:
        st = self.services.get(service_id)
        if st is not None and st.deleted:
            del self.services[service_id]

    def forget_deleted_check(self, check_id: str) -> None:
        cs = self.checks.get(check_id)
        if cs is not None and cs.deleted:
            del self.checks[check_id]

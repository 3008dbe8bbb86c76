"""What the agent does when a service or check is registered, removed or updated: local state,
the check's runner, maintenance mode and config-file reloads (the registration half of
Consul's agent/agent.go).

Local state only records; this module decides. Keeping the runners here means a check's
runner starts and stops exactly when its entry is added or removed, whether the request came
from the HTTP API, a config file or a reload, and a reload can leave an unchanged check (and
its current status) completely untouched.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from proconsul.agent.checks.alias import RemoteHealth
from proconsul.agent.checks.base import CheckDefinition, CheckRunner
from proconsul.agent.definitions import (
    ServiceRegistration,
    decode_check,
    decode_service,
    health_check,
)
from proconsul.agent.local_state import (
    NODE_MAINT_ID,
    SERVICE_MAINT_PREFIX,
    LocalState,
    truncate_output,
)
from proconsul.errors import BadRequest, HTTPError, NotFound, ProconsulError, RPCError
from proconsul.structs.catalog import HEALTH_CRITICAL, HealthCheck, NodeService

log = logging.getLogger("proconsul.agent")

NODE_MAINT_NAME = "Node Maintenance Mode"
SERVICE_MAINT_NAME = "Service Maintenance Mode"
NODE_MAINT_DEFAULT = ("Maintenance mode is enabled for this node, but no reason was provided. "
                      "This is a default message.")
SERVICE_MAINT_DEFAULT = ("Maintenance mode is enabled for this service, but no reason was "
                         "provided. This is a default message.")
SCRIPTS_DISABLED_LOCAL = ("Scripts are disabled on this agent; to enable, configure "
                          "'enable_script_checks' or 'enable_local_script_checks' to true")
SCRIPTS_DISABLED_REMOTE = ("Scripts are disabled on this agent from remote calls; to enable, "
                           "configure 'enable_script_checks' to true")

RunnerFactory = Callable[..., CheckRunner]


def unknown_service(service_id: str) -> NotFound:
    return NotFound(f'Unknown service ID "{service_id}". Ensure that the service ID is passed, '
                    "not the service name.")


def unknown_check(check_id: str) -> NotFound:
    return NotFound(f'Unknown check ID "{check_id}". Ensure that the check ID is passed, '
                    "not the check name.")


def load_runner_factory() -> RunnerFactory | None:
    """The check runners' factory, resolved at run time so the agent still serves TTL and
    passive checks in a build without the active runners."""
    try:
        module = importlib.import_module("proconsul.agent.checks.factory")
    except ImportError:
        return None
    factory: RunnerFactory | None = getattr(module, "make_runner", None)
    return factory


class Registry:
    def __init__(
        self,
        state: LocalState,
        *,
        enable_script_checks: bool = False,
        enable_local_script_checks: bool = False,
        output_max_size: int = 4096,
        make_runner: RunnerFactory | None = None,
        remote_health: RemoteHealth | None = None,
    ) -> None:
        self.state = state
        self.enable_script_checks = enable_script_checks
        self.enable_local_script_checks = enable_local_script_checks or enable_script_checks
        self.output_max_size = output_max_size
        self.make_runner = make_runner
        #: catalog reads for alias checks on other nodes (a `RemoteHealth`); without one
        #: such aliases are refused at registration
        self.remote_health = remote_health
        self.runners: dict[str, CheckRunner] = {}
        #: IDs that came from config files, so a reload removes only those
        self.config_services: set[str] = set()
        self.config_checks: set[str] = set()

    # -- services -----------------------------------------------------------------------------

    def decode_service(self, body: Mapping[str, Any]) -> ServiceRegistration:
        return decode_service(body, self.state.node_name, self.output_max_size)

    def decode_check(self, body: Mapping[str, Any]) -> CheckDefinition:
        return decode_check(body, self.output_max_size)

    def add_service(self, reg: ServiceRegistration, *, local: bool = False,
                    replace_existing_checks: bool = False, keep_state: bool = False) -> None:
        for defn in reg.checks:
            self._gate_scripts(defn, local)
        runners = [self._build(defn) for defn in reg.checks]
        svc = reg.service
        old = self.state.service(svc.id)
        if old != svc or not keep_state:
            self.state.add_service(svc, reg.token)
        wanted = {d.check_id for d in reg.checks}
        if replace_existing_checks:
            for check in self.state.service_checks(svc.id):
                if check.check_id not in wanted and not _is_maintenance(check.check_id):
                    self.remove_check(check.check_id)
        for defn, runner in zip(reg.checks, runners, strict=True):
            self._install(defn, reg.token, keep_state, runner, carry_status=True)

    def remove_service(self, service_id: str) -> None:
        if self.state.service(service_id) is None:
            raise unknown_service(service_id)
        for check in self.state.service_checks(service_id):
            self._stop_runner(check.check_id)
        self.state.remove_service(service_id)
        self.config_services.discard(service_id)

    # -- checks -------------------------------------------------------------------------------

    def add_check(self, defn: CheckDefinition, *, local: bool = False,
                  keep_state: bool = False) -> None:
        self._gate_scripts(defn, local)
        if defn.service_id:
            svc = self.state.service(defn.service_id)
            if svc is None:
                raise NotFound(f'ServiceID "{defn.service_id}" does not exist')
            defn.service_name = svc.service
        runner = self._build(defn)
        self._install(defn, str(defn.extra.get("token") or ""), keep_state, runner)

    def remove_check(self, check_id: str) -> None:
        if self.state.check(check_id) is None:
            raise unknown_check(check_id)
        self._stop_runner(check_id)
        self.state.remove_check(check_id)
        self.config_checks.discard(check_id)

    def update_ttl(self, check_id: str, status: str, output: str) -> None:
        """A pushed TTL result (`pass`/`warn`/`fail`/`update`)."""
        cs = self.state.check_state(check_id)
        if cs is None:
            raise unknown_check(check_id)
        if cs.definition is None or cs.definition.type != "ttl":
            raise RPCError(f'CheckID "{check_id}" does not have associated TTL')
        runner = self.runners.get(check_id)
        set_status = getattr(runner, "set_status", None)
        if set_status is not None:
            set_status(status, output)
        else:
            self.state.update_check(
                check_id, status, truncate_output(output, cs.definition.output_max_size))

    def _gate_scripts(self, defn: CheckDefinition, local: bool) -> None:
        if defn.type not in ("script", "docker"):
            return
        if local and not self.enable_local_script_checks:
            raise HTTPError(SCRIPTS_DISABLED_LOCAL, 500)
        if not local and not self.enable_script_checks:
            raise HTTPError(SCRIPTS_DISABLED_REMOTE, 500)

    def _build(self, defn: CheckDefinition) -> CheckRunner | None:
        """The runner for `defn`, built (not started) before anything changes, so a check no
        runner can serve fails its registration instead of half-registering."""
        if self.make_runner is None or not defn.type:
            return None
        try:
            # the source gate (_gate_scripts) has already decided on scripts
            if defn.type == "alias":
                # local state is both the alias's sink and what it reads; it already wakes
                # waiters on every change, so the alias reacts at once
                return self.make_runner(defn, self.state, enable_script_checks=True,
                                        local_checks=self.state,
                                        remote_health=self.remote_health)
            return self.make_runner(defn, self.state, enable_script_checks=True)
        except ValueError as err:
            raise BadRequest(f"Invalid check: {err}") from None

    def _install(self, defn: CheckDefinition, token: str, keep_state: bool,
                 runner: CheckRunner | None, carry_status: bool = False) -> None:
        """Add or replace one check; `carry_status` keeps the status and output of the check
        it replaces, as a service re-registration does in Consul (its check state snapshot),
        so re-registering a service does not flap its TTL checks to critical."""
        cs = self.state.check_state(defn.check_id)
        if keep_state and cs is not None and cs.definition == defn:
            return
        self._stop_runner(defn.check_id)
        svc = self.state.service(defn.service_id) if defn.service_id else None
        check = health_check(defn, self.state.node_name, svc)
        if carry_status and cs is not None:
            check = dataclasses.replace(check, status=cs.check.status, output=cs.check.output)
        self.state.add_check(check, defn, token)
        if runner is not None:
            self.runners[defn.check_id] = runner
            runner.start()

    def _stop_runner(self, check_id: str) -> None:
        runner = self.runners.pop(check_id, None)
        if runner is not None:
            runner.stop()

    def reap(self, now: float, min_timeout: float = 60.0) -> list[str]:
        """Deregister services whose check has been critical longer than its
        DeregisterCriticalServiceAfter (never less than `min_timeout`); returns their IDs."""
        doomed: set[str] = set()
        for cs in self.state.checks.values():
            defn = cs.definition
            if (cs.deleted or defn is None or not defn.deregister_critical_service_after
                    or not cs.check.service_id or cs.critical_since is None):
                continue
            timeout = max(defn.deregister_critical_service_after, min_timeout)
            if now - cs.critical_since > timeout:
                doomed.add(cs.check.service_id)
        for service_id in sorted(doomed):
            if self.state.service(service_id) is not None:
                log.info("[agent] Check for service has been critical for too long; "
                         "deregistered service: service=%s", service_id)
                self.remove_service(service_id)
        return sorted(doomed)

    def stop_all(self) -> None:
        for check_id in list(self.runners):
            self._stop_runner(check_id)

    # -- maintenance --------------------------------------------------------------------------

    def enable_node_maintenance(self, reason: str) -> None:
        self.state.add_check(HealthCheck(
            node=self.state.node_name, check_id=NODE_MAINT_ID, name=NODE_MAINT_NAME,
            status=HEALTH_CRITICAL, notes=reason or NODE_MAINT_DEFAULT, type="maintenance"))

    def disable_node_maintenance(self) -> None:
        self.state.remove_check(NODE_MAINT_ID)

    def enable_service_maintenance(self, service_id: str, reason: str) -> None:
        svc = self.state.service(service_id)
        if svc is None:
            raise NotFound(f'No service registered with ID "{service_id}"')
        self.state.add_check(HealthCheck(
            node=self.state.node_name, check_id=SERVICE_MAINT_PREFIX + service_id,
            name=SERVICE_MAINT_NAME, status=HEALTH_CRITICAL,
            notes=reason or SERVICE_MAINT_DEFAULT, service_id=svc.id,
            service_name=svc.service, service_tags=svc.tags, type="maintenance"))

    def disable_service_maintenance(self, service_id: str) -> None:
        if self.state.service(service_id) is None:
            raise NotFound(f'No service registered with ID "{service_id}"')
        self.state.remove_check(SERVICE_MAINT_PREFIX + service_id)

    # -- config files -------------------------------------------------------------------------

    def load_config(self, services: Sequence[Mapping[str, Any]],
                    checks: Sequence[Mapping[str, Any]]) -> None:
        """Apply the config files' definitions: add new, replace changed, remove dropped; an
        unchanged check keeps its runner and current status. Everything is decoded first, so
        a bad definition leaves the running state as it was."""
        regs: list[ServiceRegistration] = []
        for i, body in enumerate(services):
            try:
                reg = self.decode_service(body)
                for defn in reg.checks:
                    self._gate_scripts(defn, True)
            except HTTPError as err:
                raise ProconsulError(f"Failed to register service: services[{i}]: {err}") from None
            regs.append(reg)
        defns: list[CheckDefinition] = []
        known = {r.service.id for r in regs} | (
            set(self.state.list_services()) - self.config_services)
        for i, body in enumerate(checks):
            try:
                defn = self.decode_check(body)
                self._gate_scripts(defn, True)
            except HTTPError as err:
                raise ProconsulError(f"Failed to register check: checks[{i}]: {err}") from None
            if defn.service_id and defn.service_id not in known:
                raise ProconsulError(f"Failed to register check: checks[{i}]: "
                                     f'ServiceID "{defn.service_id}" does not exist')
            defns.append(defn)
        new_services = {r.service.id for r in regs}
        new_checks = {d.check_id for d in defns}
        for cid in sorted(self.config_checks - new_checks):
            if self.state.check(cid) is not None:
                self.remove_check(cid)
        for sid in sorted(self.config_services - new_services):
            if self.state.service(sid) is not None:
                self.remove_service(sid)
        for reg in regs:
            self.add_service(reg, local=True, replace_existing_checks=True, keep_state=True)
        for defn in defns:
            self.add_check(defn, local=True, keep_state=True)
        self.config_services, self.config_checks = new_services, new_checks


def _is_maintenance(check_id: str) -> bool:
    return check_id == NODE_MAINT_ID or check_id.startswith(SERVICE_MAINT_PREFIX)


class LocalAgent:
    """The HTTP layer's view of the agent's own services and checks: every write is applied
    locally and then pushed once at once, as Consul answers after one sync attempt (a failed
    push is only logged; anti-entropy retries it)."""

    def __init__(self, registry: Registry, datacenter: str,
                 sync: Callable[[], Any] | None = None) -> None:
        self.registry = registry
        self.state = registry.state
        self.node_name = registry.state.node_name
        self.datacenter = datacenter
        self._sync = sync

    async def _synced(self) -> None:
        if self._sync is not None:
            await self._sync()

    async def register_service(self, body: Mapping[str, Any],
                               replace_existing_checks: bool) -> None:
        reg = self.registry.decode_service(body)
        self.registry.add_service(reg, replace_existing_checks=replace_existing_checks)
        await self._synced()

    async def deregister_service(self, service_id: str) -> None:
        self.registry.remove_service(service_id)
        await self._synced()

    async def register_check(self, body: Mapping[str, Any]) -> None:
        self.registry.add_check(self.registry.decode_check(body))
        await self._synced()

    async def deregister_check(self, check_id: str) -> None:
        self.registry.remove_check(check_id)
        await self._synced()

    async def update_ttl(self, check_id: str, status: str, output: str) -> None:
        self.registry.update_ttl(check_id, status, output)
        await self._synced()

    async def node_maintenance(self, enable: bool, reason: str) -> None:
        if enable:
            self.registry.enable_node_maintenance(reason)
        else:
            self.registry.disable_node_maintenance()
        await self._synced()

    async def service_maintenance(self, service_id: str, enable: bool, reason: str) -> None:
        if enable:
            self.registry.enable_service_maintenance(service_id, reason)
        else:
            self.registry.disable_service_maintenance(service_id)
        await self._synced()

    # -- reads --------------------------------------------------------------------------------

    def services(self) -> dict[str, NodeService]:
        return self.state.list_services()

    def service(self, service_id: str) -> NodeService | None:
        return self.state.service(service_id)

    def checks(self) -> dict[str, HealthCheck]:
        return self.state.list_checks()

    def service_checks(self, service_id: str) -> list[HealthCheck]:
        return self.state.service_checks(service_id)

    def node_checks(self) -> list[HealthCheck]:
        return self.state.node_checks()

    async def wait_change(self, timeout: float) -> None:
        await self.state.wait_change(timeout)

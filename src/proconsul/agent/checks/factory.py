"""One entry point that turns a check definition into a running-ready runner.

Agent local state (API registrations, config files, reloads) should not know which class
runs which check type, nor remember to apply thresholds and Consul's interval floor; keeping
that here means every registration path gets the same behaviour and the same error text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from .alias import AliasCheck, LocalChecks, RemoteHealth
from .base import CheckDefinition, CheckRunner, CheckStatusSink
from .docker import DockerCheck
from .grpc import GRPCCheck, H2PingCheck
from .http import HTTPCheck
from .monitor import MIN_INTERVAL, IntervalCheck
from .script import ScriptCheck, ScriptChecksDisabledError
from .tcp import TCPCheck
from .threshold import ThresholdSink
from .ttl import TTLCheck
from .udp import UDPCheck

log = logging.getLogger(__name__)

#: check types whose probes run on an interval, with the class that runs each
INTERVAL_TYPES: dict[str, type[IntervalCheck]] = {
    "http": HTTPCheck,
    "tcp": TCPCheck,
    "udp": UDPCheck,
    "script": ScriptCheck,
    "docker": DockerCheck,
    "grpc": GRPCCheck,
    "h2ping": H2PingCheck,
}

#: types Consul knows that this agent does not run; registering one fails loudly (alias
#: only while the caller gives it nothing to read)
UNSUPPORTED_TYPES = frozenset(("alias", "os_service"))


class CheckTypeError(ValueError):
    """A definition no runner can serve; `str()` is the text the HTTP API answers with."""


class UnsupportedCheckTypeError(CheckTypeError):
    """A Consul check type this agent does not implement."""


def make_runner(defn: CheckDefinition, sink: CheckStatusSink, *,
                enable_script_checks: bool,
                loop: asyncio.AbstractEventLoop | None = None,
                local_checks: LocalChecks | None = None,
                remote_health: RemoteHealth | None = None) -> CheckRunner:
    """Build (but do not start) the runner for `defn`.

    TTL checks come back as `TTLCheck` (feed it with `set_status`) and report straight to
    `sink`, as Consul's do; every other type reports through a `ThresholdSink`. Intervals
    below one second are raised to one second. Raises `ScriptChecksDisabledError` for
    script/docker checks when scripts are off, `UnsupportedCheckTypeError` for known but
    unimplemented types and `CheckTypeError("Check type is not valid")` otherwise.

    Alias checks are served only when the caller supplies what they read: `local_checks`
    for an alias on this agent, `remote_health` for one with `AliasNode`; without it they
    count as unsupported, so a caller that cannot feed them refuses them up front.
    """
    kind = defn.type
    if kind == "ttl":
        return TTLCheck(defn, sink, loop)
    if kind == "alias":
        source = remote_health if defn.alias_node else local_checks
        if source is not None:
            return AliasCheck(defn, sink, local=local_checks, remote=remote_health, loop=loop)
    cls = INTERVAL_TYPES.get(kind)
    if cls is None:
        if kind in UNSUPPORTED_TYPES:
            raise UnsupportedCheckTypeError(f"Check type {kind!r} is not supported by this agent")
        raise CheckTypeError("Check type is not valid")
    if kind in ("script", "docker") and not enable_script_checks:
        raise ScriptChecksDisabledError()
    if defn.interval < MIN_INTERVAL:
        log.warning("check %s has interval below minimum of %ss", defn.check_id, MIN_INTERVAL)
        defn = dataclasses.replace(defn, interval=MIN_INTERVAL)
    gated = ThresholdSink(sink, defn.success_before_passing, defn.failures_before_warning,
                          defn.failures_before_critical)
    return cls(defn, gated, loop)

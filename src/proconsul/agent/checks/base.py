"""What every check runner shares: the parsed definition, where results go, and the runner
seam (Consul's agent/structs/check_type.go and agent/checks/check.go).

Runners never touch agent state directly: they report through a `CheckStatusSink`, so local
state, anti-entropy and tests can each receive the same results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

#: Consul's default cap on stored check output (check_output_max_size).
DEFAULT_OUTPUT_MAX_SIZE = 4096


@dataclass(slots=True)
class CheckDefinition:
    """One check as the agent runs it, with Consul's field meanings; durations in seconds."""

    check_id: str
    name: str
    service_id: str = ""
    service_name: str = ""
    notes: str = ""
    #: the initial status; Consul starts checks critical unless told otherwise
    status: str = "critical"
    interval: float = 0.0
    timeout: float = 0.0
    ttl: float = 0.0
    http: str = ""
    method: str = ""
    header: dict[str, list[str]] = field(default_factory=dict)
    body: str = ""
    tls_server_name: str = ""
    tls_skip_verify: bool = False
    disable_redirects: bool = False
    tcp: str = ""
    tcp_use_tls: bool = False
    udp: str = ""
    grpc: str = ""
    grpc_use_tls: bool = False
    h2ping: str = ""
    #: Consul defaults H2PING checks to TLS
    h2ping_use_tls: bool = True
    args: list[str] = field(default_factory=list)
    shell: str = ""
    docker_container_id: str = ""
    os_service: str = ""
    alias_node: str = ""
    alias_service: str = ""
    success_before_passing: int = 0
    failures_before_warning: int = 0
    failures_before_critical: int = 0
    output_max_size: int = DEFAULT_OUTPUT_MAX_SIZE
    deregister_critical_service_after: float = 0.0
    #: extra fields kept verbatim for the catalog's Definition
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str:
        """Consul's check Type string, from which fields are set."""
        if self.ttl:
            return "ttl"
        if self.http:
            return "http"
        if self.tcp:
            return "tcp"
        if self.udp:
            return "udp"
        if self.grpc:
            return "grpc"
        if self.h2ping:
            return "h2ping"
        if self.docker_container_id:
            return "docker"
        if self.args:
            return "script"
        if self.alias_service or self.alias_node:
            return "alias"
        if self.os_service:
            return "os_service"
        return ""


class CheckStatusSink(Protocol):
    def update_check(self, check_id: str, status: str, output: str) -> None:
        """Record a (threshold-filtered) result; called on the event loop."""
        ...


class CheckRunner(Protocol):
    def start(self) -> None:
        """Begin checking (the first run is spread at random inside the interval)."""
        ...

    def stop(self) -> None:
        """Stop checking; an in-flight probe is abandoned and reports nothing."""
        ...

"""What the HTTP layer needs from below, as Protocols.

The agent wires these to the local server's endpoints (server and -dev mode) or to an RPC
forwarder (client mode); handlers never import server/ or state/ themselves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

from proconsul.gossip.serf.coordinate import Coordinate
from proconsul.http.event import EventBackend
from proconsul.http.operator import OperatorBackend
from proconsul.http.operator_keyring import KeyringBackend
from proconsul.state.catalog import HealthEntry, MetaFilter
from proconsul.state.coordinate import CoordinateEntry, DatacenterMap
from proconsul.structs.catalog import HealthCheck, Node, NodeService
from proconsul.structs.kvs import KVEntry
from proconsul.structs.query import QueryMeta, QueryOptions
from proconsul.structs.session import Session

TxnAnswer = tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None]


class KVSBackend(Protocol):
    async def apply(self, op: str, entry: KVEntry) -> bool: ...

    async def get(self, key: str, opts: QueryOptions) -> tuple[QueryMeta, KVEntry | None]: ...

    async def list_prefix(
        self, prefix: str, opts: QueryOptions
    ) -> tuple[QueryMeta, list[KVEntry]]: ...

    async def list_keys(
        self, prefix: str, separator: str, opts: QueryOptions
    ) -> tuple[QueryMeta, list[str]]: ...


class CatalogBackend(Protocol):
    async def register(self, body: dict[str, Any]) -> None: ...

    async def deregister(self, body: dict[str, Any]) -> None: ...

    def datacenters(self) -> list[str]: ...

    async def nodes(
        self, node_meta: MetaFilter, opts: QueryOptions, near: str = "", source_ip: str = "",
    ) -> tuple[QueryMeta, list[Node]]: ...

    async def services(
        self, node_meta: MetaFilter, opts: QueryOptions
    ) -> tuple[QueryMeta, dict[str, list[str]]]: ...

    async def service_nodes(
        self, name: str, tags: list[str], node_meta: MetaFilter, opts: QueryOptions,
        near: str = "", source_ip: str = "",
    ) -> tuple[QueryMeta, list[tuple[Node, NodeService]]]: ...

    async def node_services(
        self, node: str, opts: QueryOptions
    ) -> tuple[QueryMeta, Node | None, list[NodeService]]: ...


class HealthBackend(Protocol):
    async def node_checks(
        self, node: str, opts: QueryOptions
    ) -> tuple[QueryMeta, list[HealthCheck]]: ...

    async def service_checks(
        self, name: str, node_meta: MetaFilter, opts: QueryOptions, near: str = "",
        source_ip: str = "",
    ) -> tuple[QueryMeta, list[HealthCheck]]: ...

    async def checks_in_state(
        self, state: str, node_meta: MetaFilter, opts: QueryOptions, near: str = "",
        source_ip: str = "",
    ) -> tuple[QueryMeta, list[HealthCheck]]: ...

    async def service_nodes(
        self, name: str, tags: list[str], node_meta: MetaFilter, passing: bool,
        opts: QueryOptions, connect: bool = False, near: str = "", source_ip: str = "",
    ) -> tuple[QueryMeta, list[HealthEntry]]: ...


class CoordinateBackend(Protocol):
    #: `disable_coordinates`: every /v1/coordinate route answers 401
    disabled: bool

    def list_datacenters(self) -> list[DatacenterMap]: ...

    async def list_nodes(
        self, opts: QueryOptions
    ) -> tuple[QueryMeta, list[CoordinateEntry]]: ...

    async def node(
        self, node: str, opts: QueryOptions
    ) -> tuple[QueryMeta, list[CoordinateEntry]]: ...

    async def update(self, node: str, segment: str, coord: Coordinate | None) -> None: ...


class SessionBackend(Protocol):
    async def create(self, sess: Session) -> str: ...

    async def destroy(self, sid: str) -> None: ...

    async def renew(self, sid: str) -> list[Session]: ...

    async def get(self, sid: str, opts: QueryOptions) -> tuple[QueryMeta, list[Session]]: ...

    async def list_all(self, opts: QueryOptions) -> tuple[QueryMeta, list[Session]]: ...

    async def node_sessions(
        self, node: str, opts: QueryOptions
    ) -> tuple[QueryMeta, list[Session]]: ...


class TxnBackend(Protocol):
    async def apply(self, ops: list[tuple[str, KVEntry]]) -> TxnAnswer: ...

    async def read(
        self, ops: list[tuple[str, KVEntry]], opts: QueryOptions
    ) -> tuple[QueryMeta, TxnAnswer]: ...


class SnapshotBackend(Protocol):
    async def save(self) -> tuple[int, bytes]: ...

    async def restore(self, archive: bytes) -> int: ...


class StatusBackend(Protocol):
    """Answered at once by a server, awaited from a server by a client agent."""

    def leader(self) -> str | Awaitable[str]: ...

    def peers(self) -> list[str] | Awaitable[list[str]]: ...


class AgentBackend(Protocol):
    node_name: str
    datacenter: str

    def self_info(self) -> dict[str, Any]: ...

    def members(self, wan: bool, segment: str) -> list[dict[str, Any]]: ...

    async def leave(self) -> None: ...

    async def join(self, address: str, wan: bool) -> int: ...

    async def force_leave(self, node: str, prune: bool, wan: bool) -> None: ...

    async def reload(self) -> None: ...

    def metrics(self) -> dict[str, Any]: ...

    def prometheus_metrics(self) -> str | None:
        """Metrics in Prometheus text format, or None when retention is not configured."""
        ...


class LocalAgentBackend(Protocol):
    """The agent's own services and checks (agent memory, not the catalog)."""

    node_name: str
    datacenter: str

    def services(self) -> dict[str, NodeService]: ...

    def service(self, service_id: str) -> NodeService | None: ...

    def checks(self) -> dict[str, HealthCheck]: ...

    def service_checks(self, service_id: str) -> list[HealthCheck]: ...

    def node_checks(self) -> list[HealthCheck]: ...

    async def wait_change(self, timeout: float) -> None: ...

    async def register_service(self, body: Mapping[str, Any],
                               replace_existing_checks: bool) -> None: ...

    async def deregister_service(self, service_id: str) -> None: ...

    async def register_check(self, body: Mapping[str, Any]) -> None: ...

    async def deregister_check(self, check_id: str) -> None: ...

    async def update_ttl(self, check_id: str, status: str, output: str) -> None: ...

    async def node_maintenance(self, enable: bool, reason: str) -> None: ...

    async def service_maintenance(self, service_id: str, enable: bool, reason: str) -> None: ...


class Backend(Protocol):
    @property
    def kvs(self) -> KVSBackend: ...

    @property
    def catalog(self) -> CatalogBackend: ...

    @property
    def health(self) -> HealthBackend: ...

    @property
    def session(self) -> SessionBackend: ...

    @property
    def txn(self) -> TxnBackend: ...

    @property
    def status(self) -> StatusBackend: ...

    @property
    def snapshot(self) -> SnapshotBackend: ...

    @property
    def coordinate(self) -> CoordinateBackend: ...

    @property
    def agent(self) -> AgentBackend: ...

    @property
    def local(self) -> LocalAgentBackend: ...

    @property
    def events(self) -> EventBackend: ...

    @property
    def keyring(self) -> KeyringBackend: ...

    @property
    def operator(self) -> OperatorBackend: ...

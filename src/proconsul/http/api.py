"""Builds the /v1 API application from a backend: one place that lists every route family."""

from __future__ import annotations

from proconsul.http.agent import AgentHandlers
from proconsul.http.agent_services import AgentServiceHandlers
from proconsul.http.app import APIApp
from proconsul.http.backend import Backend
from proconsul.http.catalog import CatalogHandlers
from proconsul.http.coordinate import CoordinateHandlers
from proconsul.http.event import EventHandlers
from proconsul.http.health import HealthHandlers
from proconsul.http.kv import KVHandlers
from proconsul.http.operator import OperatorHandlers
from proconsul.http.operator_keyring import OperatorKeyringHandlers
from proconsul.http.session import SessionHandlers
from proconsul.http.snapshot import SnapshotHandlers
from proconsul.http.status import StatusHandlers
from proconsul.http.txn import TxnHandlers


def build_app(backend: Backend, app: APIApp) -> APIApp:
    KVHandlers(app, backend.kvs)
    CatalogHandlers(app, backend.catalog, backend.agent.node_name)
    HealthHandlers(app, backend.health, backend.agent.node_name)
    CoordinateHandlers(app, backend.coordinate)
    SessionHandlers(app, backend.session, backend.agent.node_name)
    TxnHandlers(app, backend.txn)
    StatusHandlers(app, backend.status)
    AgentHandlers(app, backend.agent)
    AgentServiceHandlers(app, backend.local)
    SnapshotHandlers(app, backend.snapshot)
    EventHandlers(app, backend.events)
    OperatorKeyringHandlers(app, backend.keyring)
    OperatorHandlers(app, backend.operator)
    return app

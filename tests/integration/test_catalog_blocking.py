"""Blocking queries on every catalog and health read return when what they read changes, with a
higher X-Consul-Index, and keep blocking otherwise."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import consul
import pytest

from tests.integration.test_http_errors import request
from tests.support import AgentProcess

NODE = "blk-node"
_flips = itertools.count(1)


def register(c: consul.Consul, status: str = "passing", port: int = 80) -> None:
    assert c.catalog.register(NODE, "10.9.9.9", service={"Service": "blk", "ID": "blk",
                                                          "Port": port},
                              check={"CheckID": "blk-up", "Name": "blk up",
                                     "ServiceID": "blk", "Status": status})


@pytest.fixture(scope="module")
def c(agent: AgentProcess) -> consul.Consul:
    client = consul.Consul(port=agent.http_port)
    register(client)
    return client


PATHS = [
    "/v1/catalog/nodes",
    "/v1/catalog/services",
    "/v1/catalog/service/blk",
    f"/v1/catalog/node/{NODE}",
    f"/v1/catalog/node-services/{NODE}",
    f"/v1/health/node/{NODE}",
    "/v1/health/checks/blk",
    "/v1/health/service/blk",
    "/v1/health/state/any",
]

CHANGES: dict[str, Callable[[consul.Consul, int], None]] = {
    # each change touches what the path reads
    "/v1/catalog/nodes": lambda c, n: c.catalog.register(NODE, f"10.9.9.{n % 200 + 1}"),
    "/v1/catalog/services": lambda c, n: c.catalog.register(
        NODE, "10.9.9.9", service={"Service": "blk", "ID": "blk", "Tags": [f"t{n}"]}),
}


@pytest.mark.parametrize("path", PATHS)
def test_blocking_read_wakes_on_change(c: consul.Consul, agent: AgentProcess, path: str) -> None:
    status, headers, _ = request(agent, "GET", path)
    assert status == 200
    index = int(headers["x-consul-index"])
    result: dict[str, object] = {}

    def block() -> None:
        started = time.monotonic()
        result["status"], result["headers"], _ = request(
            agent, "GET", f"{path}?index={index}&wait=8s")
        result["took"] = time.monotonic() - started

    t = threading.Thread(target=block)
    t.start()
    time.sleep(0.4)
    assert t.is_alive(), f"{path} did not block"
    n = int(time.monotonic() * 1000)
    change = CHANGES.get(path)
    if change is not None:
        change(c, n)
    else:
        # alternate the check status so every change really changes the check
        register(c, "critical" if next(_flips) % 2 else "warning", port=1000 + n % 1000)
    t.join(10)
    assert not t.is_alive(), f"{path} was not woken"
    assert result["status"] == 200
    new_headers: dict[str, str] = result["headers"]  # type: ignore[assignment]
    assert int(new_headers["x-consul-index"]) > index
    assert new_headers["x-consul-effective-consistency"] == "leader"

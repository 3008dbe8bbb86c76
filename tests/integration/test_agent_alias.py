"""Alias checks through the py-consul client against a real -dev agent: `web` carries the
health of `db` through every TTL transition, and turns critical with Consul's text once
`db` is gone."""

from __future__ import annotations

import time

import consul
import pytest

from tests.support import AgentProcess


@pytest.fixture(scope="module")
def c(agent: AgentProcess) -> consul.Consul:
    return consul.Consul(host="127.0.0.1", port=agent.http_port)


def wait_alias(c: consul.Consul, status: str, timeout: float = 10.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    check: dict[str, str] = {}
    while time.monotonic() < deadline:
        check = c.agent.checks().get("web-alias", {})
        if check.get("Status") == status:
            return check
        time.sleep(0.05)
    raise AssertionError(f"alias never became {status}: {check}")


def test_alias_follows_db(c: consul.Consul) -> None:
    assert c.agent.service.register("db", service_id="db", check=consul.Check.ttl("30s"))
    assert c.agent.service.register("web", service_id="web")
    assert c.agent.check.register("web-alias", check={"AliasService": "db"},
                                  check_id="web-alias", service_id="web")
    check = wait_alias(c, "critical")
    assert check["Type"] == "alias" and check["ServiceID"] == "web"
    assert check["Output"] == "Aliased check \"Service 'db' check\" failing: "

    c.agent.check.ttl_pass("service:db", "ready")
    assert wait_alias(c, "passing")["Output"] == "All checks passing."

    c.agent.check.ttl_warn("service:db", "slow")
    assert wait_alias(c, "warning")["Output"] == (
        "Aliased check \"Service 'db' check\" failing: slow")

    c.agent.check.ttl_fail("service:db", "down")
    assert wait_alias(c, "critical")["Output"] == (
        "Aliased check \"Service 'db' check\" failing: down")

    c.agent.check.ttl_pass("service:db")
    wait_alias(c, "passing")

    assert c.agent.service.deregister("db")
    assert wait_alias(c, "critical")["Output"] == "Service db could not be found on node "

    # the catalog sees what the agent sees
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _, checks = c.health.checks("web")
        if any(x["CheckID"] == "web-alias" and x["Status"] == "critical" for x in checks):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("alias status never reached the catalog")



def test_alias_of_a_service_on_another_node(c: consul.Consul) -> None:
    """AliasNode set: the alias follows the catalog health of a service registered elsewhere."""
    check = {"CheckID": "ext-up", "Name": "ext up", "ServiceID": "ext", "Status": "critical"}
    assert c.catalog.register("ext-node", "10.1.2.3", service={"Service": "ext", "ID": "ext"},
                              check=check)
    assert c.agent.service.register("front", service_id="front")
    assert c.agent.check.register("front-alias", check={"AliasNode": "ext-node",
                                                        "AliasService": "ext"},
                                  check_id="front-alias", service_id="front")

    def alias_status() -> str:
        return str(c.agent.checks().get("front-alias", {}).get("Status"))

    deadline = time.monotonic() + 10
    while alias_status() != "critical":
        assert time.monotonic() < deadline, alias_status()
        time.sleep(0.05)
    assert c.catalog.register("ext-node", "10.1.2.3", check={**check, "Status": "passing"})
    deadline = time.monotonic() + 10
    while alias_status() != "passing":
        assert time.monotonic() < deadline, alias_status()
        time.sleep(0.05)

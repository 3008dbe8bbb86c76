"""Agent services and checks through the py-consul client against a real -dev agent: local
registration, every TTL transition, maintenance, local health codes, error texts, and
anti-entropy copying all of it into the catalog (and removing what the agent does not own)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import consul
import pytest

from tests.support import AgentProcess


@pytest.fixture(scope="module")
def c(agent: AgentProcess) -> consul.Consul:
    return consul.Consul(host="127.0.0.1", port=agent.http_port)


def call(agent: AgentProcess, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(agent.url + path, data=data, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def health_checks(c: consul.Consul, name: str) -> dict[str, str]:
    _, entries = c.health.service(name)
    return {chk["CheckID"]: chk["Status"] for e in entries for chk in e["Checks"]}


def test_register_ttl_transitions_and_catalog_sync(c: consul.Consul, agent: AgentProcess
                                                   ) -> None:
    assert c.agent.service.register("web", service_id="web1", port=8080, tags=["v1"],
                                    meta={"Env": "prod"}, check=consul.Check.ttl("30s"))
    services = c.agent.services()
    assert services["web1"] == {
        "ID": "web1", "Service": "web", "Tags": ["v1"], "Meta": {"Env": "prod"},
        "Port": 8080, "Address": "", "Weights": {"Passing": 1, "Warning": 1},
        "EnableTagOverride": False, "Datacenter": "dc1",
    }
    check = c.agent.checks()["service:web1"]
    assert (check["Name"], check["Status"], check["Type"]) == (
        "Service 'web' check", "critical", "ttl")
    assert (check["ServiceID"], check["ServiceName"], check["ServiceTags"]) == (
        "web1", "web", ["v1"])
    # the registration answer comes after one sync: the catalog already has it
    assert health_checks(c, "web")["service:web1"] == "critical"

    for fn, status in ((c.agent.check.ttl_pass, "passing"), (c.agent.check.ttl_warn, "warning"),
                       (c.agent.check.ttl_fail, "critical")):
        assert fn("service:web1", f"note {status}")
        check = c.agent.checks()["service:web1"]
        assert (check["Status"], check["Output"]) == (status, f"note {status}")
        assert health_checks(c, "web")["service:web1"] == status

    status, _, _ = call(agent, "PUT", "/v1/agent/check/update/service:web1",
                        {"Status": "passing", "Output": "all good"})
    assert status == 200
    check = c.agent.checks()["service:web1"]
    assert (check["Status"], check["Output"]) == ("passing", "all good")
    _, entries = c.health.service("web", passing=True)
    assert [e["Service"]["ID"] for e in entries] == ["web1"]

    assert c.agent.service.deregister("web1")
    assert "web1" not in c.agent.services()
    assert "service:web1" not in c.agent.checks()
    assert c.health.service("web")[1] == []


def test_filters_and_service_hash_blocking(c: consul.Consul, agent: AgentProcess) -> None:
    c.agent.service.register("api", service_id="api1", tags=["blue"], port=1)
    c.agent.service.register("api", service_id="api2", tags=["green"], port=2)
    status, _, body = call(agent, "GET", "/v1/agent/services?filter=" +
                           urllib.request.quote('"green" in Tags'))
    assert status == 200 and list(json.loads(body)) == ["api2"]
    c.agent.check.register("api2 ttl", check_id="api2-ttl", service_id="api2",
                           check=consul.Check.ttl("30s"))
    status, _, body = call(agent, "GET", "/v1/agent/checks?filter=" +
                           urllib.request.quote('ServiceID == "api2"'))
    assert list(json.loads(body)) == ["api2-ttl"]

    status, headers, body = call(agent, "GET", "/v1/agent/service/api1")
    view = json.loads(body)
    assert status == 200 and view["ContentHash"] == headers["X-Consul-Contenthash"]
    started = time.monotonic()
    status, _, body = call(agent, "GET", f"/v1/agent/service/api1?hash={view['ContentHash']}"
                                         "&wait=300ms")
    assert time.monotonic() - started >= 0.25
    assert json.loads(body)["ContentHash"] == view["ContentHash"]

    def change() -> None:
        time.sleep(0.3)
        c.agent.service.register("api", service_id="api1", tags=["blue", "new"], port=1)

    threading.Thread(target=change).start()
    started = time.monotonic()
    status, _, body = call(agent, "GET", f"/v1/agent/service/api1?hash={view['ContentHash']}"
                                         "&wait=5s")
    assert time.monotonic() - started < 4
    assert json.loads(body)["Tags"] == ["blue", "new"]
    status, _, body = call(agent, "GET", "/v1/agent/service/nope")
    assert (status, body) == (404, b"unknown service ID: nope")
    c.agent.service.deregister("api1")
    c.agent.service.deregister("api2")


def test_replace_existing_checks(c: consul.Consul, agent: AgentProcess) -> None:
    c.agent.service.register("db", check=consul.Check.ttl("30s"))
    c.agent.check.register("extra", check_id="db-extra", service_id="db",
                           check=consul.Check.ttl("30s"))
    c.agent.service.register("db", check=consul.Check.ttl("30s"))
    assert {"service:db", "db-extra"} <= set(c.agent.checks())
    c.agent.service.register("db", check=consul.Check.ttl("30s"), replace_existing_checks=True)
    assert "db-extra" not in c.agent.checks()
    body = {"Name": "db", "Checks": [{"TTL": "10s"}, {"TTL": "20s", "Name": "second"}]}
    assert call(agent, "PUT", "/v1/agent/service/register?replace-existing-checks", body)[0] == 200
    checks = c.agent.checks()
    assert checks["service:db:1"]["Name"] == "Service 'db' check"
    assert checks["service:db:2"]["Name"] == "second"
    assert "service:db" not in checks
    c.agent.service.deregister("db")


def test_error_texts(c: consul.Consul, agent: AgentProcess) -> None:
    cases = [
        ("PUT", "/v1/agent/service/register", {"Port": 1}, 400, "Missing service name"),
        ("PUT", "/v1/agent/service/register", {"Name": "x", "Address": "0.0.0.0"}, 400,
         "Invalid service address"),
        ("PUT", "/v1/agent/service/register", {"Name": "x", "Check": {"TTL": "1s",
                                                                      "Status": "bad"}},
         400, "Status for checks must 'passing', 'warning', 'critical'"),
        ("PUT", "/v1/agent/check/register", {"TTL": "10s"}, 400, "Missing check name"),
        ("PUT", "/v1/agent/check/register", {"Name": "x"}, 400,
         "Invalid check: TTL must be > 0 for TTL checks"),
        ("PUT", "/v1/agent/check/register", {"Name": "x", "TTL": "1s", "ServiceID": "zz"},
         404, 'ServiceID "zz" does not exist'),
        ("PUT", "/v1/agent/check/register", {"Name": "x", "Args": ["true"], "Interval": "1s"},
         500, "Scripts are disabled on this agent from remote calls; to enable, configure "
              "'enable_script_checks' to true"),
        ("PUT", "/v1/agent/service/deregister/zz", None, 404,
         'Unknown service ID "zz". Ensure that the service ID is passed, not the service name.'),
        ("PUT", "/v1/agent/check/deregister/zz", None, 404,
         'Unknown check ID "zz". Ensure that the check ID is passed, not the check name.'),
        ("PUT", "/v1/agent/check/pass/zz", None, 404,
         'Unknown check ID "zz". Ensure that the check ID is passed, not the check name.'),
        ("PUT", "/v1/agent/check/update/zz", {"Status": "nope"}, 400,
         "Invalid check status: 'nope'"),
        ("PUT", "/v1/agent/maintenance", None, 400, "Missing value for enable"),
        ("PUT", "/v1/agent/maintenance?enable=maybe", None, 400,
         'Invalid value for enable: "maybe"'),
        ("PUT", "/v1/agent/service/maintenance/zz?enable=true", None, 404,
         'No service registered with ID "zz"'),
    ]
    for method, path, body, code, text in cases:
        status, _, got = call(agent, method, path, body)
        assert (status, got.decode()) == (code, text), path
    # a node-level check that is not a TTL check
    assert c.agent.check.register("tcp", check={"TCP": "127.0.0.1:1", "Interval": "60s"},
                                  check_id="not-ttl")
    status, _, got = call(agent, "PUT", "/v1/agent/check/pass/not-ttl")
    assert (status, got.decode()) == (500, 'CheckID "not-ttl" does not have associated TTL')
    c.agent.check.deregister("not-ttl")


def test_maintenance_and_local_health(c: consul.Consul, agent: AgentProcess) -> None:
    c.agent.service.register("cache", service_id="cache1", check=consul.Check.ttl("30s"))
    c.agent.check.ttl_pass("service:cache1")
    status, headers, body = call(agent, "GET", "/v1/agent/health/service/id/cache1")
    assert (status, headers["X-Consul-Reason"], json.loads(body)["AggregatedStatus"]) == (
        200, "passing", "passing")
    c.agent.check.ttl_warn("service:cache1")
    status, _, body = call(agent, "GET", "/v1/agent/health/service/name/cache?format=text")
    assert (status, body) == (429, b"warning")

    assert c.agent.service.maintenance("cache1", True, "deploying")
    check = c.agent.checks()["_service_maintenance:cache1"]
    assert (check["Name"], check["Status"], check["Notes"], check["ServiceID"]) == (
        "Service Maintenance Mode", "critical", "deploying", "cache1")
    status, _, body = call(agent, "GET", "/v1/agent/health/service/id/cache1?format=text")
    assert (status, body) == (503, b"maintenance")
    assert "_service_maintenance:cache1" in health_checks(c, "cache")
    assert c.agent.service.maintenance("cache1", False)
    assert "_service_maintenance:cache1" not in c.agent.checks()

    assert c.agent.maintenance(True)
    check = c.agent.checks()["_node_maintenance"]
    assert (check["Name"], check["Notes"], check["ServiceID"]) == (
        "Node Maintenance Mode",
        "Maintenance mode is enabled for this node, but no reason was provided. "
        "This is a default message.", "")
    assert health_checks(c, "cache")["_node_maintenance"] == "critical"
    assert c.agent.maintenance(False)
    assert "_node_maintenance" not in health_checks(c, "cache")

    status, headers, body = call(agent, "GET", "/v1/agent/health/service/id/zz")
    assert (status, json.loads(body)) == (
        404, {"AggregatedStatus": "critical", "Service": None, "Checks": None})
    status, headers, body = call(agent, "GET", "/v1/agent/health/service/name/zz?format=text")
    assert (status, body, headers["X-Consul-Reason"]) == (
        404, b"ServiceName zz Not Found", "ServiceName zz Not Found")
    c.agent.service.deregister("cache1")


def test_foreign_catalog_entries_removed_by_full_sync(c: consul.Consul, agent: AgentProcess
                                                      ) -> None:
    node = c.agent.self()["Config"]["NodeName"]
    assert c.catalog.register(node, "127.0.0.1", service={"Service": "intruder"},
                              check={"CheckID": "intruder-check", "Name": "x"})
    assert "intruder" in c.catalog.services()[1]
    # a reload runs a full sync, which removes what the agent did not register
    assert call(agent, "PUT", "/v1/agent/reload")[0] == 200
    assert "intruder" not in c.catalog.services()[1]
    _, checks = c.health.node(node)
    ids = {chk["CheckID"] for chk in checks}
    assert "intruder-check" not in ids and "serfHealth" in ids
    assert "consul" in c.catalog.services()[1]


@pytest.fixture()
def config_agent(tmp_path: Path) -> Iterator[tuple[AgentProcess, Path]]:
    cfg = tmp_path / "services.json"
    cfg.write_text(json.dumps({"services": [
        {"name": "alpha", "port": 1, "checks": [{"id": "alpha-ttl", "ttl": "5m"}]},
        {"name": "beta", "port": 2},
    ]}))
    proc = AgentProcess(tmp_path, [f"-config-file={cfg}"]).start()
    try:
        yield proc, cfg
    finally:
        proc.stop()


def test_config_file_services_and_reload(config_agent: tuple[AgentProcess, Path]) -> None:
    agent, cfg = config_agent
    c = consul.Consul(host="127.0.0.1", port=agent.http_port)
    assert set(c.agent.services()) == {"alpha", "beta"}
    assert c.agent.checks()["alpha-ttl"]["Name"] == "Service 'alpha' check"
    c.agent.check.ttl_pass("alpha-ttl", "kept")
    assert "beta" in c.catalog.services()[1]

    cfg.write_text(json.dumps({"services": [
        {"name": "alpha", "port": 1, "checks": [{"id": "alpha-ttl", "ttl": "5m"}]},
        {"name": "gamma", "port": 3},
    ]}))
    assert agent.proc is not None
    os.kill(agent.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while set(c.agent.services()) != {"alpha", "gamma"} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(c.agent.services()) == {"alpha", "gamma"}
    check = c.agent.checks()["alpha-ttl"]
    assert (check["Status"], check["Output"]) == ("passing", "kept")
    services = c.catalog.services()[1]
    assert "gamma" in services and "beta" not in services

    cfg.write_text(json.dumps({"services": [{"port": 3}]}))
    status, _, body = call(agent, "PUT", "/v1/agent/reload")
    assert status == 500 and b"Missing service name" in body
    assert set(c.agent.services()) == {"alpha", "gamma"}


def test_http_check_runs_and_reaches_catalog(c: consul.Consul) -> None:
    """A real runner's status changes reach the catalog without any API call."""
    import http.server

    code = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(code[0])
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{target.server_address[1]}/health"
        assert c.agent.service.register("probe", check=consul.Check.http(url, "1s"))

        def wait_for(status: str) -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if health_checks(c, "probe").get("service:probe") == status:
                    return
                time.sleep(0.05)
            raise AssertionError(f"check never became {status}: {c.agent.checks()}")

        wait_for("passing")
        assert c.agent.checks()["service:probe"]["Output"].startswith(f"HTTP GET {url}: 200")
        code[0] = 500
        wait_for("critical")
        code[0] = 429
        wait_for("warning")
        c.agent.service.deregister("probe")
    finally:
        target.shutdown()
        target.server_close()

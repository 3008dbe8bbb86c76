"""Catalog and health endpoints through the py-consul client against a real -dev agent:
registration, every read, tag / passing / node-meta filters, error texts, and blocking queries
that wake only for the service they watch."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import consul
import pytest

from tests.support import AgentProcess


@pytest.fixture(scope="module")
def c(agent: AgentProcess) -> consul.Consul:
    return consul.Consul(host="127.0.0.1", port=agent.http_port)


def call(agent: AgentProcess, method: str, path: str, body: Any = None
         ) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(agent.url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def register(agent: AgentProcess, body: dict[str, Any]) -> None:
    status, _, text = call(agent, "PUT", "/v1/catalog/register", body)
    assert (status, json.loads(text)) == (200, True), text


@pytest.fixture(scope="module")
def catalog(agent: AgentProcess, c: consul.Consul) -> consul.Consul:
    """Two external nodes: web on both (one critical), db on n1, with node meta."""
    register(agent, {
        "Node": "n1", "Address": "10.0.0.1", "NodeMeta": {"rack": "r1"},
        "Service": {"Service": "web", "ID": "web1", "Tags": ["v1", "primary"], "Port": 80,
                    "Meta": {"Env": "prod"}},
        "Checks": [
            {"CheckID": "n1-alive", "Name": "node alive", "Status": "passing"},
            {"Name": "web1 http", "Status": "passing", "ServiceID": "web1",
             "Definition": {"HTTP": "http://10.0.0.1/health", "Interval": "10s"}},
        ],
    })
    register(agent, {
        "Node": "n2", "Address": "10.0.0.2", "NodeMeta": {"rack": "r2"},
        "Service": {"Service": "web", "ID": "web2", "Tags": ["v2"], "Port": 81},
        "Check": {"CheckID": "web2-tcp", "Name": "web2 tcp", "Status": "critical",
                  "ServiceID": "web2"},
    })
    assert c.catalog.register("n1", "10.0.0.1", service={"Service": "db", "Tags": ["pg"]},
                              skip_node_update=True)
    return c


def test_datacenters_and_self_registration(c: consul.Consul) -> None:
    assert c.catalog.datacenters() == ["dc1"]
    _, nodes = c.catalog.nodes()
    assert "test-node" in [n["Node"] for n in nodes]
    _, entries = c.health.service("consul", passing=True)
    assert [e["Node"]["Node"] for e in entries] == ["test-node"]
    assert [ch["CheckID"] for ch in entries[0]["Checks"]] == ["serfHealth"]


def test_catalog_reads(agent: AgentProcess, catalog: consul.Consul) -> None:
    c = catalog
    _, services = c.catalog.services()
    assert services["web"] == ["primary", "v1", "v2"] and services["db"] == ["pg"]
    _, nodes = c.catalog.nodes(node_meta={"rack": "r1"})
    assert [n["Node"] for n in nodes] == ["n1"]
    _, instances = c.catalog.service("web")
    assert [i["ServiceID"] for i in instances] == ["web1", "web2"]
    first = instances[0]
    assert list(first)[:4] == ["ID", "Node", "Address", "Datacenter"]
    assert first["NodeMeta"] == {"rack": "r1"} and first["ServiceMeta"] == {"Env": "prod"}
    assert first["ServicePort"] == 80 and first["ServiceWeights"] == {"Passing": 1, "Warning": 1}
    # py-consul sends one catalog tag only; repeated tags must all match
    _, _, body = call(agent, "GET", "/v1/catalog/service/web?tag=v1&tag=primary")
    assert [i["ServiceID"] for i in json.loads(body)] == ["web1"]
    _, _, body = call(agent, "GET", "/v1/catalog/service/web?tag=v1&tag=v2")
    assert json.loads(body) == []
    _, instances = c.catalog.service("web", tag="v3")
    assert instances == []
    _, node = c.catalog.node("n1")
    assert node["Node"]["Node"] == "n1" and sorted(node["Services"]) == ["db", "web1"]
    assert node["Services"]["db"]["Service"] == "db"
    _, missing = c.catalog.node("nope")
    assert missing is None


def test_node_services_and_null_lists(agent: AgentProcess, catalog: consul.Consul) -> None:
    status, headers, body = call(agent, "GET", "/v1/catalog/node-services/n1")
    doc = json.loads(body)
    assert status == 200 and headers["X-Consul-Effective-Consistency"] == "leader"
    assert [s["ID"] for s in doc["Services"]] == ["db", "web1"]
    assert doc["Services"][0]["Tags"] == ["pg"] and doc["Services"][0]["Connect"] == {}
    _, _, body = call(agent, "GET", "/v1/health/service/nothing-here")
    assert json.loads(body) == []


def test_health_reads(catalog: consul.Consul) -> None:
    c = catalog
    _, entries = c.health.service("web")
    assert [e["Service"]["ID"] for e in entries] == ["web1", "web2"]
    assert [ch["CheckID"] for ch in entries[0]["Checks"]] == ["n1-alive", "web1 http"]
    http_check = entries[0]["Checks"][1]
    assert http_check["Type"] == "http" and http_check["ServiceTags"] == ["v1", "primary"]
    assert http_check["Definition"]["HTTP"] == "http://10.0.0.1/health"
    _, entries = c.health.service("web", passing=True)
    assert [e["Service"]["ID"] for e in entries] == ["web1"]
    _, entries = c.health.service("web", tag=["PRIMARY", "v1"])
    assert [e["Service"]["ID"] for e in entries] == ["web1"]
    _, entries = c.health.service("web", tag="v2")
    assert [e["Service"]["ID"] for e in entries] == ["web2"]
    _, entries = c.health.service("web", node_meta={"rack": "r2"})
    assert [e["Node"]["Node"] for e in entries] == ["n2"]
    _, checks = c.health.checks("web")
    assert [ch["CheckID"] for ch in checks] == ["web1 http", "web2-tcp"]
    _, checks = c.health.node("n1")
    assert [ch["CheckID"] for ch in checks] == ["n1-alive", "web1 http"]
    _, checks = c.health.state("critical")
    assert [ch["CheckID"] for ch in checks] == ["web2-tcp"]
    _, checks = c.health.state("any", node_meta={"rack": "r1"})
    assert {ch["Node"] for ch in checks} == {"n1"}


@pytest.mark.parametrize(("method", "path", "body", "status", "text"), [
    ("GET", "/v1/catalog/service/", None, 400, "Missing service name"),
    ("GET", "/v1/catalog/node/", None, 400, "Missing node name"),
    ("GET", "/v1/health/node/", None, 400, "Missing node name"),
    ("GET", "/v1/health/checks/", None, 400, "Missing service name"),
    ("GET", "/v1/health/state/", None, 400, "Missing check state"),
    ("GET", "/v1/health/service/web?passing=maybe", None, 400, "Invalid value for ?passing"),
    ("PUT", "/v1/catalog/register", {"Address": "1.2.3.4"}, 500, "Must provide node"),
    ("PUT", "/v1/catalog/register", {"Node": "x"}, 500,
     "Must provide address if SkipNodeUpdate is not set"),
    ("PUT", "/v1/catalog/register",
     {"Node": "x", "Address": "1.2.3.4", "Service": {"Service": "s", "Address": "0.0.0.0"}},
     500, "Invalid service address"),
    ("PUT", "/v1/catalog/register",
     {"Node": "x", "Address": "1.2.3.4", "Service": {"ID": "s"}},
     500, "Must provide service name with ID"),
    ("PUT", "/v1/catalog/register",
     {"Node": "x", "Address": "1.2.3.4", "Check": {"Name": "c", "ServiceID": "ghost"}},
     500, "Missing service registration"),
    ("PUT", "/v1/catalog/deregister", {}, 500, "Must provide node"),
    ("PUT", "/v1/catalog/register",
     {"Node": "x", "Address": "1.2.3.4", "Service": {"Service": "s", "Port": "80"}}, 400,
     "Request decode failed: json: cannot unmarshal string into Go struct field "
     "RegisterRequest.Service.Port of type int"),
    ("PUT", "/v1/catalog/register", ["x"], 400,
     "Request decode failed: json: cannot unmarshal array into Go value of type "
     "structs.RegisterRequest"),
    ("GET", "/v1/catalog/register", None, 405, "method GET not allowed"),
])
def test_errors(agent: AgentProcess, method: str, path: str, body: Any, status: int,
                text: str) -> None:
    got, _, answer = call(agent, method, path, body)
    assert (got, answer.decode()) == (status, text)


def test_failed_register_leaves_nothing_behind(agent: AgentProcess, c: consul.Consul) -> None:
    call(agent, "PUT", "/v1/catalog/register",
         {"Node": "half", "Address": "1.2.3.4", "Check": {"Name": "c", "ServiceID": "ghost"}})
    _, node = c.catalog.node("half")
    assert node is None


def test_deregister_service_check_and_node(agent: AgentProcess, c: consul.Consul) -> None:
    register(agent, {"Node": "gone", "Address": "10.9.9.9",
                     "Service": {"Service": "tmp", "ID": "tmp1"},
                     "Checks": [{"CheckID": "tmp-check", "Name": "t", "ServiceID": "tmp1"},
                                {"CheckID": "node-check", "Name": "n"}]})
    index, _ = c.catalog.service("tmp")
    assert c.catalog.deregister("gone", service_id="tmp1") is True
    index2, instances = c.catalog.service("tmp")
    assert instances == [] and int(index2) > int(index)
    _, checks = c.health.node("gone")
    assert [ch["CheckID"] for ch in checks] == ["node-check"]
    assert c.catalog.deregister("gone", check_id="node-check") is True
    assert c.health.node("gone")[1] == []
    assert c.catalog.deregister("gone") is True
    assert c.catalog.node("gone")[1] is None
    # the service's index stays where its delete left it
    index3, _ = c.catalog.service("tmp")
    assert int(index3) == int(index2)


def _blocked(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        result["index"], result["data"] = fn()
        result["took"] = time.monotonic() - started

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


def test_blocking_health_service_wakes_only_for_its_service(
    agent: AgentProcess, c: consul.Consul
) -> None:
    register(agent, {"Node": "b1", "Address": "10.1.1.1",
                     "Service": {"Service": "svc-a", "ID": "a1"},
                     "Check": {"CheckID": "a1-check", "Name": "a", "Status": "passing",
                               "ServiceID": "a1"}})
    register(agent, {"Node": "b2", "Address": "10.1.1.2",
                     "Service": {"Service": "svc-b", "ID": "b1"}})
    index, _ = c.health.service("svc-a")
    t, result = _blocked(lambda: c.health.service("svc-a", index=index, wait="20s"))
    time.sleep(0.3)
    register(agent, {"Node": "b2", "Address": "10.1.1.2",
                     "Service": {"Service": "svc-b", "ID": "b1", "Tags": ["changed"]}})
    register(agent, {"Node": "b2", "Address": "10.1.1.2",
                     "Service": {"Service": "svc-b", "ID": "b2"}})
    t.join(1.0)
    assert t.is_alive(), "a change to svc-b woke a watcher of svc-a"
    register(agent, {"Node": "b1", "Address": "10.1.1.1",
                     "Check": {"CheckID": "a1-check", "Name": "a", "Status": "critical",
                               "ServiceID": "a1"}})
    t.join(10)
    assert not t.is_alive()
    assert int(result["index"]) > int(index) and result["took"] < 10
    assert result["data"][0]["Checks"][0]["Status"] == "critical"


def test_blocking_catalog_service_wakes_on_new_instance(
    agent: AgentProcess, c: consul.Consul
) -> None:
    index, _ = c.catalog.service("svc-a")
    t, result = _blocked(lambda: c.catalog.service("svc-a", index=index, wait="20s"))
    time.sleep(0.3)
    assert t.is_alive()
    register(agent, {"Node": "b2", "Address": "10.1.1.2",
                     "Service": {"Service": "svc-a", "ID": "a2"}})
    t.join(10)
    assert not t.is_alive()
    assert [i["ServiceID"] for i in result["data"]] == ["a1", "a2"]


def test_blocking_times_out_with_same_index(c: consul.Consul) -> None:
    index, _ = c.health.checks("svc-b")
    started = time.monotonic()
    index2, _ = c.health.checks("svc-b", index=index, wait="500ms")
    assert index2 == index and time.monotonic() - started >= 0.45


def test_filter_expressions(agent: AgentProcess, catalog: consul.Consul) -> None:
    c = catalog
    _, nodes = c.catalog.nodes(filter_expr='Meta.rack == "r2"')
    assert [n["Node"] for n in nodes] == ["n2"]
    _, services = c.catalog.services(filter_expr='ServiceMeta.Env == "prod"')
    assert services == {"web": ["primary", "v1"]}
    _, instances = c.catalog.service("web", filter_expr='"primary" in ServiceTags')
    assert [i["ServiceID"] for i in instances] == ["web1"]
    _, node = c.catalog.node("n1", filter_expr="Service == db")
    assert list(node["Services"]) == ["db"]
    _, entries = c.health.service("web", filter_expr="Checks.Status == critical")
    assert [e["Service"]["ID"] for e in entries] == ["web2"]
    _, checks = c.health.state("any", filter_expr="ServiceName == web and Node == n1")
    assert [ch["CheckID"] for ch in checks] == ["web1 http"]
    status, _, body = call(agent, "GET", "/v1/health/service/web?filter=Nope%20%3D%3D%201")
    assert (status, body.decode()) == (
        500, 'Failed to create boolean expression evaluator: Selector "Nope" is not valid')

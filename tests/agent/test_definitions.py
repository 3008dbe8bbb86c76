"""Service and check definitions decode alike from API bodies (PascalCase, the Go client's
`ScriptArgs`) and config files (snake_case), with Consul's default IDs, names and errors."""

from __future__ import annotations

import pytest

from proconsul.agent.definitions import decode_check, decode_service, health_check
from proconsul.errors import BadRequest


def test_service_defaults_and_embedded_check_ids() -> None:
    reg = decode_service({"Name": "web", "Check": {"TTL": "10s"}}, "n1")
    assert (reg.service.id, reg.service.service, reg.service.node) == ("web", "web", "n1")
    assert reg.service.weights == {"Passing": 1, "Warning": 1}
    [chk] = reg.checks
    assert (chk.check_id, chk.name, chk.ttl, chk.service_id) == (
        "service:web", "Service 'web' check", 10.0, "web")
    reg = decode_service({"name": "web", "id": "w1",
                          "checks": [{"ttl": "1s"}, {"ttl": "2s", "id": "mine"},
                                     {"ttl": "3s"}]}, "n1")
    assert [c.check_id for c in reg.checks] == ["service:w1:1", "mine", "service:w1:3"]


def test_spellings_fold_but_user_maps_keep_case() -> None:
    reg = decode_service({
        "name": "web", "Meta": {"Env": "prod"}, "enable_tag_override": True,
        "tagged_addresses": {"lan": {"address": "10.0.0.1", "port": 80}},
        "Weights": {"Passing": 3, "Warning": 1},
    }, "n1")
    svc = reg.service
    assert svc.meta == {"Env": "prod"} and svc.enable_tag_override
    assert svc.tagged_addresses == {"lan": {"Address": "10.0.0.1", "Port": 80}}
    assert svc.weights == {"Passing": 3, "Warning": 1}
    for key in ("Args", "args", "ScriptArgs", "script_args"):
        defn = decode_check({"Name": "s", key: ["/bin/true"], "Interval": "10s"})
        assert (defn.args, defn.type, defn.interval) == (["/bin/true"], "script", 10.0)
    defn = decode_check({"name": "h", "http": "http://x/", "interval": 5_000_000_000,
                         "header": {"X-Token": ["a"]}, "tls_skip_verify": True})
    assert (defn.interval, defn.header, defn.tls_skip_verify) == (5.0, {"X-Token": ["a"]}, True)
    assert decode_check({"Name": "t", "CheckID": "cid", "TTL": "1m"}).check_id == "cid"
    assert decode_check({"Name": "t", "TTL": "1m"}).check_id == "t"


def test_health_check_record() -> None:
    reg = decode_service({"Name": "web", "Tags": ["a"], "Check": {"HTTP": "http://x/",
                                                                  "Interval": "500ms"}}, "n1")
    [defn] = reg.checks
    assert defn.interval == 1.0  # raised to Consul's minimum
    hc = health_check(defn, "n1", reg.service)
    assert (hc.check_id, hc.type, hc.interval, hc.service_tags, hc.status) == (
        "service:web", "http", "1s", ("a",), "critical")


@pytest.mark.parametrize(("body", "text"), [
    ({"Port": 1}, "Missing service name"),
    ({"Name": "x", "Address": "::"}, "Invalid service address"),
    ({"Name": "x", "Weights": {"Passing": 0}},
     "Invalid Weights: Passing must be greater than 0, got 0"),
    ({"Name": "x", "Check": {"TTL": "1s", "Status": "up"}},
     "Status for checks must 'passing', 'warning', 'critical'"),
    ({"Name": "x", "Check": {"HTTP": "http://x/"}},
     "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or GRPC checks"),
    ({"Name": "x", "Check": {"TTL": "1s", "Interval": "1s", "TCP": "a:1"}},
     "Invalid check: Interval and TTL cannot both be specified"),
    ({"Name": "x", "Port": "80"}, "Request decode failed: json: cannot unmarshal string into "
     "Go struct field ServiceDefinition.Port of type int"),
    ({"Name": "x", "Tags": "a"}, "Request decode failed: json: cannot unmarshal string into "
     "Go struct field ServiceDefinition.Tags of type []string"),
    ({"Name": "x", "Check": {"TTL": "1x"}},
     'Request decode failed: time: unknown unit "x" in duration "1x"'),
])
def test_service_errors(body: dict[str, object], text: str) -> None:
    with pytest.raises(BadRequest) as info:
        decode_service(body, "n1")
    assert str(info.value) == text


@pytest.mark.parametrize(("body", "text"), [
    ({"TTL": "1s"}, "Missing check name"),
    ({"Name": "x", "TTL": "1s", "Status": "up"}, "Bad check status"),
    ({"Name": "x", "AliasService": "y", "TTL": "1s"},
     "Invalid check: TTL must be not be set for Alias checks"),
    ({"Name": "x"}, "Invalid check: TTL must be > 0 for TTL checks"),
])
def test_check_errors(body: dict[str, object], text: str) -> None:
    with pytest.raises(BadRequest) as info:
        decode_check(body)
    assert str(info.value) == text

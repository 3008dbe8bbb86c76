"""`catalog datacenters|nodes|services`, `services register|deregister` and `maint` end to end.

Each command runs as a real process against one `proconsul agent -dev` (node `test-node`), so
the lines, the streams they go to and the exit statuses are what a shell script would see.  The
tests share the agent and clean up what they register, so they do not depend on their order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from proconsul.cli.catalog import node_rows, tabwriter_two_columns
from proconsul.cli.services import combine, parse_service_addr
from tests.support import AgentProcess, run_cli


def cli(agent: AgentProcess, *args: str) -> tuple[int, str, str]:
    proc = run_cli(list(args), agent.http_addr)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


@pytest.fixture
def web(agent: AgentProcess) -> Iterator[None]:
    code, stdout, _ = cli(agent, "services", "register", "-name=web", "-id=web1", "-port=80",
                          "-address=10.1.2.3", "-tag=v2", "-tag=primary", "-meta=team=a")
    assert (code, stdout) == (0, "Registered service: web\n")
    yield
    cli(agent, "services", "deregister", "-id=web1")


# ----------------------------------------------------------------------------------------------
# Pure layout helpers


def test_node_rows_short_and_detailed() -> None:
    node = {"Node": "n1", "ID": "abcd1234-0000-1111", "Address": "10.0.0.1", "Datacenter": "dc1",
            "TaggedAddresses": {"wan": "1.2.3.4", "lan": "10.0.0.1"}, "Meta": {"b": "2", "a": "1"}}
    assert node_rows([node], False)[1] == "n1\x1fabcd1234\x1f10.0.0.1\x1fdc1"
    assert node_rows([node], True)[1].split("\x1f")[4:] == ["lan=10.0.0.1, wan=1.2.3.4",
                                                            "a=1, b=2"]


def test_tabwriter_pads_names_by_six() -> None:
    assert tabwriter_two_columns([("a", "x"), ("long", "")]) == "a         x\nlong      \n"


def test_combine_fills_gaps_and_appends() -> None:
    merged = combine({"name": "db", "tags": ["x"], "meta": {"a": "1"}},
                     {"ID": "db9", "Name": "other", "Port": 5, "Tags": ["y"], "Meta": {"b": "2"}})
    assert merged["name"] == "db" and merged["id"] == "db9" and merged["port"] == 5
    assert merged["tags"] == ["x", "y"] and merged["meta"] == {"a": "1", "b": "2"}


def test_parse_service_addr() -> None:
    assert parse_service_addr("1.2.3.4:80") == {"Address": "1.2.3.4", "Port": 80}
    assert parse_service_addr("[::1]:8") == {"Address": "::1", "Port": 8}
    assert parse_service_addr("host") == {"Address": "host", "Port": 0}


# ----------------------------------------------------------------------------------------------
# catalog


def test_catalog_datacenters(agent: AgentProcess) -> None:
    assert cli(agent, "catalog", "datacenters") == (0, "dc1\n", "")


def test_catalog_extra_argument_refused(agent: AgentProcess) -> None:
    code, _, stderr = cli(agent, "catalog", "datacenters", "x")
    assert code == 1 and stderr == "Too many arguments (expected 0, got 1)\n"


def test_catalog_nodes_table(agent: AgentProcess) -> None:
    code, stdout, _ = cli(agent, "catalog", "nodes")
    lines = stdout.splitlines()
    assert code == 0
    assert re.fullmatch(r"Node\s{7}ID\s{8}Address\s{4}DC", lines[0])
    assert re.fullmatch(r"test-node  [0-9a-f]{8}  127\.0\.0\.1  dc1", lines[1])


def test_catalog_nodes_detailed(agent: AgentProcess) -> None:
    code, stdout, _ = cli(agent, "catalog", "nodes", "-detailed")
    header, row = stdout.splitlines()
    assert code == 0 and header.split() == ["Node", "ID", "Address", "DC", "TaggedAddresses",
                                            "Meta"]
    assert re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", row) and "lan=127.0.0.1, " in row


def test_catalog_nodes_no_match_is_not_an_error(agent: AgentProcess) -> None:
    code, stdout, stderr = cli(agent, "catalog", "nodes", "-node-meta=nope=x")
    assert (code, stdout) == (0, "")
    assert stderr == "No nodes match the given query - try expanding your search.\n"


def test_catalog_nodes_bad_meta_flag(agent: AgentProcess) -> None:
    code, _, stderr = cli(agent, "catalog", "nodes", "-node-meta=novalue")
    assert code == 1
    assert stderr.startswith(
        'invalid value "novalue" for flag -node-meta: Missing "=" value in argument: novalue\n')


def test_catalog_nodes_by_service(agent: AgentProcess, web: None) -> None:
    code, stdout, _ = cli(agent, "catalog", "nodes", "-service=web")
    assert code == 0 and stdout.splitlines()[1].startswith("test-node  ")
    code, stdout, stderr = cli(agent, "catalog", "nodes", "-service=missing")
    assert (code, stdout) == (0, "") and stderr.startswith("No nodes match")


def test_catalog_services_plain_and_tags(agent: AgentProcess, web: None) -> None:
    assert cli(agent, "catalog", "services") == (0, "consul\nweb\n", "")
    # Go's tabwriter: longest name + 6 spaces, tags sorted; only the very end is trimmed.
    assert cli(agent, "catalog", "services", "-tags") == (
        0, "consul      \nweb         primary,v2\n", "")
    code, stdout, _ = cli(agent, "catalog", "services", "-node=test-node")
    assert (code, stdout) == (0, "consul\nweb\n")


def test_catalog_services_unknown_node(agent: AgentProcess) -> None:
    code, stdout, stderr = cli(agent, "catalog", "services", "-node=ghost")
    assert (code, stdout) == (0, "")
    assert stderr == "No services match the given query - try expanding your search.\n"


# ----------------------------------------------------------------------------------------------
# services register / deregister


def test_register_from_flags_reaches_agent(agent: AgentProcess, web: None) -> None:
    proc = run_cli(["watch", "-type=service", "-service=web"], agent.http_addr)
    entry = json.loads(proc.stdout)[0]["Service"]
    assert entry["ID"] == "web1" and entry["Port"] == 80 and entry["Address"] == "10.1.2.3"
    assert entry["Tags"] == ["v2", "primary"] and entry["Meta"] == {"team": "a"}


def test_register_and_deregister_files(agent: AgentProcess, tmp_path: Path) -> None:
    hcl = tmp_path / "db.hcl"
    hcl.write_text('service {\n  name = "db"\n  id = "db1"\n  port = 5432\n  tags = ["x"]\n}\n')
    js = tmp_path / "more.json"
    js.write_text(json.dumps({"services": [{"name": "cache", "port": 6379},
                                           {"name": "queue", "id": "q1"}]}))
    code, stdout, _ = cli(agent, "services", "register", "-tag=extra", str(hcl), str(js))
    assert code == 0
    assert stdout == ("Registered service: db\nRegistered service: cache\n"
                      "Registered service: queue\n")
    _, tags, _ = cli(agent, "catalog", "services", "-tags")
    assert "db          extra,x\n" in tags
    code, stdout, _ = cli(agent, "services", "deregister", str(hcl), str(js))
    assert code == 0
    assert stdout == ("Deregistered service: db1\nDeregistered service: cache\n"
                      "Deregistered service: q1\n")
    assert cli(agent, "catalog", "services")[1] == "consul\n"


def test_register_argument_rules(agent: AgentProcess, tmp_path: Path) -> None:
    assert cli(agent, "services", "register") == (
        1, "", "Service registration requires at least one argument or flags.\n")
    assert cli(agent, "services", "register", "-name=a", "f.hcl") == (
        1, "", "Service registration requires arguments or -id, not both.\n")
    assert cli(agent, "services", "deregister") == (
        1, "", "Service deregistration requires at least one argument or -id.\n")
    assert cli(agent, "services", "deregister", "-id=a", "f.hcl") == (
        1, "", "Service deregistration requires arguments or -id, not both.\n")
    bad = tmp_path / "bad.hcl"
    bad.write_text('service { name = "x"\n port = "notaport" }\n')
    code, stdout, stderr = cli(agent, "services", "register", str(bad))
    assert (code, stdout) == (1, "") and stderr.startswith("Error: ")
    code, _, stderr = cli(agent, "services", "register", "-name=x", "-tagged-address=lan=h:p")
    assert code == 1 and stderr.startswith("Invalid Tagged Address: ")


# ----------------------------------------------------------------------------------------------
# maint


def test_maint_cycle(agent: AgentProcess, web: None) -> None:
    assert cli(agent, "maint") == (0, "", "")
    assert cli(agent, "maint", "-enable", "-reason=kernel upgrade") == (
        0, "Node maintenance is now enabled\n", "")
    assert cli(agent, "maint", "-enable", "-service=web1") == (
        0, 'Service maintenance is now enabled for "web1"\n', "")
    code, stdout, _ = cli(agent, "maint")
    assert code == 0
    assert stdout.startswith("Node:\n  Name:   test-node\n  Reason: kernel upgrade\n\n")
    assert "Service:\n  ID:     web1\n  Reason: " in stdout and stdout.endswith("\n\n")
    assert cli(agent, "maint", "-disable") == (0, "Node maintenance is now disabled\n", "")
    assert cli(agent, "maint", "-disable", "-service=web1") == (
        0, 'Service maintenance is now disabled for "web1"\n', "")
    assert cli(agent, "maint") == (0, "", "")


def test_maint_flag_conflicts(agent: AgentProcess) -> None:
    assert cli(agent, "maint", "-enable", "-disable") == (
        1, "", "Only one of -enable or -disable may be provided\n")
    assert cli(agent, "maint", "-reason=x") == (1, "", "Reason may only be provided with -enable\n")
    assert cli(agent, "maint", "-service=x") == (
        1, "", "Service requires either -enable or -disable\n")


def test_maint_unknown_service(agent: AgentProcess) -> None:
    code, stdout, stderr = cli(agent, "maint", "-enable", "-service=nope")
    assert (code, stdout) == (1, "") and stderr.startswith("Error enabling service maintenance: ")

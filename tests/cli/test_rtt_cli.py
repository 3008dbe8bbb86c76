"""`consul rtt` against a stand-in agent on 127.0.0.1 that serves the coordinate and agent
routes the command reads: the estimate line, defaults, WAN names, and the error texts."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from proconsul.cli import rtt
from proconsul.gossip.serf.coordinate import Coordinate
from tests.support import free_port


def coord(x: float, height: float = 1.0e-5, adjustment: float = 0.0) -> dict[str, Any]:
    return {"Vec": [x] + [0.0] * 7, "Error": 0.5, "Adjustment": adjustment, "Height": height}


ROUTES: dict[str, Any] = {
    "/v1/agent/self": {"Config": {"NodeName": "agent1", "Datacenter": "dc1"}},
    "/v1/coordinate/nodes": [
        {"Node": "agent1", "Segment": "", "Coord": coord(0.0)},
        {"Node": "Web1", "Segment": "", "Coord": coord(0.0012, adjustment=0.0001)},
        {"Node": "db1", "Segment": "", "Coord": coord(0.0303)},
    ],
    "/v1/coordinate/datacenters": [
        {"Datacenter": "dc1", "AreaID": "wan", "Coordinates": [
            {"Node": "agent1", "Segment": "", "Coord": coord(0.0)}]},
        {"Datacenter": "dc2", "AreaID": "wan", "Coordinates": [
            {"Node": "s1", "Segment": "", "Coord": coord(0.0425)}]},
    ],
}


class _Agent(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in ROUTES:
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"boom")
            return
        body = json.dumps(ROUTES[path]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def addr() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Agent)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def rtt_of(a: dict[str, Any], b: dict[str, Any]) -> str:
    def make(c: dict[str, Any]) -> Coordinate:
        return Coordinate(c["Vec"], c["Error"], c["Adjustment"], c["Height"])

    return f"{make(a).distance_to(make(b)) * 1000.0:.3f} ms"


def cli(capsys: pytest.CaptureFixture[str], addr: str, *args: str) -> tuple[int, str, str]:
    code = rtt.run([f"-http-addr={addr}", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_lan_two_nodes(addr: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, addr, "web1", "db1")
    expected = rtt_of(coord(0.0012, adjustment=0.0001), coord(0.0303))
    assert (code, err) == (0, "")
    assert out == f"Estimated web1 <-> db1 rtt: {expected} (using LAN coordinates)\n"
    assert expected == "29.220 ms"


def test_lan_second_node_defaults_to_the_agent(addr: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, addr, "db1")
    assert code == 0
    assert out == "Estimated db1 <-> agent1 rtt: 30.320 ms (using LAN coordinates)\n"


def test_wan(addr: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, addr, "-wan", "s1.dc2")
    assert code == 0
    assert out == "Estimated s1.dc2 <-> agent1.dc1 rtt: 42.520 ms (using WAN coordinates)\n"
    code, _, err = cli(capsys, addr, "-wan", "s1")
    assert (code, err) == (1, "Node names must be specified as <node name>.<datacenter> "
                              "with -wan\n")
    code, _, err = cli(capsys, addr, "-wan", "s1.dc3", "agent1.dc1")
    assert (code, err) == (1, 'Could not find a coordinate for node "s1.dc3"\n')


def test_missing_coordinates_and_bad_arguments(addr: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, addr, "web1", "nope")
    assert (code, err) == (1, 'Could not find a coordinate for node "nope"\n')
    code, _, err = cli(capsys, addr, "nope", "web1")
    assert (code, err) == (1, 'Could not find a coordinate for node "nope"\n')
    code, _, err = cli(capsys, addr)
    assert code == 1
    assert err.startswith("One or two node names must be specified\n\nUsage: consul rtt ")
    code, _, err = cli(capsys, addr, "a", "b", "c")
    assert code == 1 and err.startswith("One or two node names must be specified\n")


def test_agent_errors(capsys: pytest.CaptureFixture[str]) -> None:
    # nothing listens on a free port: the request fails as a transport error
    nowhere = f"127.0.0.1:{free_port()}"
    code, _, err = cli(capsys, nowhere, "web1", "db1")
    assert code == 1 and err.startswith("Error getting coordinates: ")
    code, _, err = cli(capsys, nowhere, "web1")
    assert code == 1 and err.startswith("Unable to look up agent info: ")


def test_help_text_lists_the_wan_flag() -> None:
    text = rtt.help_text()
    assert text.startswith("Usage: consul rtt [options] node1 [node2]")
    assert "  -wan\n" in text and "-http-addr=<address>" in text

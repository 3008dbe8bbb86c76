"""`consul event` in-process against the real API application and event store, served on a free
127.0.0.1 port from a background event loop (the LAN Serf replaced by a loopback that delivers
each event back to the agent, as Serf does for the firing node)."""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from proconsul.agent.user_events import UserEvents
from proconsul.cli import event as event_cli
from proconsul.http.app import APIApp
from proconsul.http.event import EventHandlers
from proconsul.http.protocol import HttpServer
from proconsul.http.request import Request, Response

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("CONSUL_"):
            monkeypatch.delenv(name)


@dataclass
class FakeAgent:
    addr: str
    events: UserEvents
    seen: list[Request] = field(default_factory=list)
    limit: int = 1 << 20


class RecordingApp(APIApp):
    def __init__(self, agent: FakeAgent) -> None:
        super().__init__()
        self.agent = agent

    async def handle(self, req: Request) -> Response:
        self.agent.seen.append(req)
        return await super().handle(req)


@pytest.fixture
def agent() -> Iterator[FakeAgent]:
    clock = itertools.count(1)
    holder: dict[str, FakeAgent] = {}

    def send(name: str, payload: bytes) -> None:
        if len(name) + len(payload) > holder["agent"].limit:
            raise ValueError(f"user event exceeds configured limit of {holder['agent'].limit} "
                             "bytes before encoding")
        holder["agent"].events.ingest(name, payload, next(clock))

    fake = FakeAgent("", UserEvents("node-1", "dc1", send, lambda: []))
    holder["agent"] = fake
    app = RecordingApp(fake)
    EventHandlers(app, fake.events)

    async def self_(req: Request) -> Response:
        return app.json(req, {"Config": {"NodeName": "node-1", "Datacenter": "dc1"}})

    app.add("/v1/agent/self", ("GET",), self_)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = HttpServer(app)
    asyncio.run_coroutine_threadsafe(server.listen("127.0.0.1", 0), loop).result(10)
    fake.addr = f"127.0.0.1:{server.addresses[0][1]}"
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(server.shutdown(1.0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_fire_prints_the_event_id(agent: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:
    code = event_cli.run([f"-http-addr={agent.addr}", "-name=deploy", "-node=^node",
                          "-service=web", "-tag=v1", "the payload"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert re.fullmatch(f"Event ID: ({UUID})\n", captured.out)
    event_id = captured.out.split()[-1]
    fire = agent.seen[-1]
    assert [r.path for r in agent.seen] == ["/v1/agent/self", "/v1/event/fire/deploy"]
    assert fire.method == "PUT"
    assert fire.query == {"node": ["^node"], "service": ["web"], "tag": ["v1"]}
    assert fire.headers["content-type"] == "application/octet-stream"
    assert fire.body == b"the payload"
    # node-1 has no services, so the service filter keeps the event off its own list
    assert agent.events.events() == []
    assert event_cli.run([f"-http-addr={agent.addr}", "-name=deploy"]) == 0
    second = capsys.readouterr().out.split()[-1]
    [kept] = agent.events.events()
    assert kept.id == second != event_id and kept.payload == b""


def test_name_is_escaped_in_the_path(agent: FakeAgent,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert event_cli.run([f"-http-addr={agent.addr}", "-name=a b?c", "x"]) == 0
    assert agent.seen[-1].path == "/v1/event/fire/a b?c"
    assert agent.events.events()[0].name == "a b?c"


def test_missing_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert event_cli.run([]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Event name must be specified\n\nUsage: consul event [options] "
                          "[payload]\n")
    assert err == "Event name must be specified\n\n" + event_cli.help_text() + "\n"


@pytest.mark.parametrize(("args", "message"), [
    (["-node=["], "Failed to compile node filter regexp: error parsing regexp: "),
    (["-service=("], "Failed to compile service filter regexp: error parsing regexp: "),
    (["-service=a", "-tag=*"], "Failed to compile tag filter regexp: error parsing regexp: "),
    (["-tag=v1"], "Cannot provide tag filter without service filter.\n"),
])
def test_filter_errors(args: list[str], message: str,
                       capsys: pytest.CaptureFixture[str]) -> None:
    assert event_cli.run(["-name=x", *args]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(message) and captured.out == ""


def test_too_many_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert event_cli.run(["-name=x", "a", "b"]) == 1
    assert capsys.readouterr().err == ("Too many command line arguments.\n\n"
                                       + event_cli.help_text() + "\n")


def test_bad_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert event_cli.run(["-nope"]) == 1
    assert capsys.readouterr().err.startswith("flag provided but not defined: -nope\n")


def test_agent_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert event_cli.run([f"-http-addr=127.0.0.1:{port}", "-name=x"]) == 1
    assert capsys.readouterr().err == (
        f'Error querying Consul agent: Get "http://127.0.0.1:{port}/v1/agent/self": dial tcp '
        f"127.0.0.1:{port}: connect: connection refused\n")


def test_refused_event(agent: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:
    agent.limit = 64
    assert event_cli.run([f"-http-addr={agent.addr}", "-name=big", "x" * 100]) == 1
    assert capsys.readouterr().err == (
        "Error firing event: Unexpected response code: 500 (error broadcasting event: user "
        "event exceeds configured limit of 64 bytes before encoding)\n")


def test_help_lists_the_flags() -> None:
    text = event_cli.help_text()
    assert text.startswith("Usage: consul event [options] [payload]\n\n  Dispatches a custom")
    for flag in ("-name=<string>", "-node=<string>", "-service=<string>", "-tag=<string>",
                 "-http-addr=<address>", "-token=<value>"):
        assert f"  {flag}\n" in text, flag
    assert "-datacenter" not in text and "-stale" not in text

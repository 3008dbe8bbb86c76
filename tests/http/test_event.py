"""/v1/event/fire and /v1/event/list through the API application, with the agent's real event
store behind them (its Serf replaced by a loopback that delivers each event back at once, as
Serf does for the node that fires), and once over a real socket for the body rules."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from proconsul.agent.user_events import UserEvents, decode_user_event, uuid_to_uint64
from proconsul.http.app import APIApp
from proconsul.http.event import EventHandlers
from proconsul.http.protocol import HttpServer
from proconsul.http.request import Request, Response


def run(main: Callable[[], Awaitable[None]], timeout: float = 20.0) -> None:
    asyncio.run(asyncio.wait_for(main(), timeout))


class Loopback:
    """Stands in for the LAN Serf: records what was sent and delivers it locally."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.clock = itertools.count(1)
        self.events = UserEvents("node-1", "dc1", self.send, lambda: [("web", ["v1"])])

    def send(self, name: str, payload: bytes) -> None:
        self.sent.append((name, payload))
        self.events.ingest(name, payload, next(self.clock))


def setup() -> tuple[APIApp, Loopback]:
    app = APIApp()
    loop = Loopback()
    EventHandlers(app, loop.events)
    return app, loop


def request(method: str, target: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> Request:
    path, _, query = target.partition("?")
    hdrs = dict(headers or {})
    if body and "transfer-encoding" not in hdrs:
        hdrs.setdefault("content-length", str(len(body)))
    return Request(method, path, target, parse_qs(query, keep_blank_values=True), hdrs, body)


def header(resp: Response, name: str) -> str | None:
    return next((v for k, v in resp.headers if k.lower() == name.lower()), None)


def body(resp: Response) -> Any:
    return json.loads(resp.body)


def test_fire_answers_the_event_and_broadcasts_it() -> None:
    async def main() -> None:
        app, loop = setup()
        resp = await app.handle(request(
            "PUT", "/v1/event/fire/deploy?node=node&service=web&tag=v1", b"hello"))
        assert resp.status == 200, resp.body
        event = body(resp)
        assert event == {"ID": event["ID"], "Name": "deploy", "Payload": "aGVsbG8=",
                         "NodeFilter": "node", "ServiceFilter": "web", "TagFilter": "v1",
                         "Version": 1, "LTime": 0}
        [(name, payload)] = loop.sent
        assert name == "consul:event:deploy"
        assert decode_user_event(payload).payload == b"hello"
        # delivered back to this agent, it passes its own filters and is listed
        [kept] = loop.events.events()
        assert kept.id == event["ID"] and kept.ltime == 1

    run(main)


def test_fire_without_a_body_has_null_payload() -> None:
    async def main() -> None:
        app, _ = setup()
        for req in (request("PUT", "/v1/event/fire/x"),
                    request("PUT", "/v1/event/fire/x", b"chunked",
                            {"transfer-encoding": "chunked"})):
            resp = await app.handle(req)
            assert resp.status == 200 and body(resp)["Payload"] is None

    run(main)


def test_fire_name_is_the_decoded_rest_of_the_path() -> None:
    async def main() -> None:
        app, loop = setup()
        resp = await app.handle(Request("PUT", "/v1/event/fire/a b/c", "/v1/event/fire/a%20b/c",
                                        {}, {}))
        assert body(resp)["Name"] == "a b/c"
        assert loop.sent[0][0] == "consul:event:a b/c"

    run(main)


def test_fire_refusals() -> None:
    async def main() -> None:
        app, loop = setup()
        cases = [
            ("PUT", "/v1/event/fire/", 400, "Missing name"),
            ("PUT", "/v1/event/fire/x?tag=v1", 500,
             "Cannot provide tag filter without service filter"),
            ("PUT", "/v1/event/fire/x?node=%5B", 500, "Invalid node filter: error parsing regexp:"),
            ("PUT", "/v1/event/fire/x?service=(", 500,
             "Invalid service filter: error parsing regexp:"),
            ("PUT", "/v1/event/fire/x?service=a&tag=*", 500,
             "Invalid tag filter: error parsing regexp:"),
            ("PUT", "/v1/event/fire/x?dc=dc2", 500, "No path to datacenter"),
            ("GET", "/v1/event/fire/x", 405, "method GET not allowed"),
            ("PUT", "/v1/event/list", 405, "method PUT not allowed"),
        ]
        for method, target, status, text in cases:
            resp = await app.handle(request(method, target))
            assert resp.status == status, (target, resp.status, resp.body)
            assert resp.body.decode().startswith(text), (target, resp.body)
        assert loop.sent == []
        resp = await app.handle(request("GET", "/v1/event/fire/x"))
        assert header(resp, "Allow") == "OPTIONS,PUT"
        resp = await app.handle(request("PUT", "/v1/event/fire/x?dc=dc1"))
        assert resp.status == 200

    run(main)


def test_oversized_payload_is_a_500_with_serfs_reason() -> None:
    async def main() -> None:
        app = APIApp()

        def refuse(name: str, payload: bytes) -> None:
            raise ValueError("user event exceeds configured limit of 512 bytes before encoding")

        EventHandlers(app, UserEvents("n", "dc1", refuse, lambda: []))
        resp = await app.handle(request("PUT", "/v1/event/fire/big", b"x" * 1000))
        assert resp.status == 500
        assert resp.body == (b"error broadcasting event: user event exceeds configured limit "
                             b"of 512 bytes before encoding")

    run(main)


def test_list_index_header_and_name_filter() -> None:
    async def main() -> None:
        app, loop = setup()
        resp = await app.handle(request("GET", "/v1/event/list"))
        assert resp.status == 200 and resp.body == b"[]"
        assert header(resp, "X-Consul-Index") == "1"
        assert header(resp, "X-Consul-Knownleader") is None
        first = loop.events.fire("deploy", b"1")
        second = loop.events.fire("restart")
        resp = await app.handle(request("GET", "/v1/event/list"))
        assert [e["ID"] for e in body(resp)] == [first["ID"], second["ID"]]
        assert [e["LTime"] for e in body(resp)] == [1, 2]
        assert header(resp, "X-Consul-Index") == str(uuid_to_uint64(second["ID"]))
        resp = await app.handle(request("GET", "/v1/event/list?name=deploy"))
        assert [e["Name"] for e in body(resp)] == ["deploy"]
        assert header(resp, "X-Consul-Index") == str(uuid_to_uint64(first["ID"]))
        resp = await app.handle(request("GET", "/v1/event/list?name=none"))
        assert body(resp) == [] and header(resp, "X-Consul-Index") == "1"
        resp = await app.handle(request("GET", "/v1/event/list?pretty"))
        assert resp.body.endswith(b"\n") and b'\n    {\n        "ID"' in resp.body

    run(main)


def test_list_parameter_errors() -> None:
    async def main() -> None:
        app, _ = setup()
        for target, text in (("/v1/event/list?index=abc", b"Invalid index"),
                             ("/v1/event/list?index=-1", b"Invalid index"),
                             ("/v1/event/list?wait=soon", b"Invalid wait time")):
            resp = await app.handle(request("GET", target))
            assert (resp.status, resp.body) == (400, text)

    run(main)


def test_blocking_list_waits_then_wakes_on_fire() -> None:
    async def main() -> None:
        app, loop = setup()
        first = loop.events.fire("deploy")
        index = uuid_to_uint64(first["ID"])
        resp = await app.handle(request("GET", f"/v1/event/list?index={index}&wait=50ms"))
        assert header(resp, "X-Consul-Index") == str(index) and len(body(resp)) == 1
        pending = asyncio.ensure_future(
            app.handle(request("GET", f"/v1/event/list?name=deploy&index={index}&wait=30s")))
        await asyncio.sleep(0.05)
        assert not pending.done()
        second = loop.events.fire("deploy", b"again")
        resp = await asyncio.wait_for(pending, 10)
        assert header(resp, "X-Consul-Index") == str(uuid_to_uint64(second["ID"]))
        assert [e["ID"] for e in body(resp)] == [first["ID"], second["ID"]]

    run(main)


async def _raw(port: int, data: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    payload = await reader.readexactly(length)
    writer.close()
    await writer.wait_closed()
    return status, payload


def test_payload_rules_over_a_real_socket() -> None:
    async def main() -> None:
        app, _ = setup()
        server = HttpServer(app)
        await server.listen("127.0.0.1", 0)
        port = server.addresses[0][1]
        try:
            status, raw = await _raw(port, b"PUT /v1/event/fire/sock HTTP/1.1\r\nHost: x\r\n"
                                           b"Content-Length: 3\r\n\r\nabc")
            assert status == 200 and json.loads(raw)["Payload"] == "YWJj"
            status, raw = await _raw(port, b"PUT /v1/event/fire/sock HTTP/1.1\r\nHost: x\r\n"
                                           b"Transfer-Encoding: chunked\r\n\r\n"
                                           b"3\r\nabc\r\n0\r\n\r\n")
            assert status == 200 and json.loads(raw)["Payload"] is None
        finally:
            await server.shutdown(1.0)

    run(main)

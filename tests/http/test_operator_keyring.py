"""/v1/operator/keyring over a real KeyringOperator: a server in a WAN pool of two and a LAN
pool of three (our Serf nodes on in-memory networks), each pool encrypted with its own keyring.
Checks the listing's exact shape, a full rotation through POST/PUT/DELETE, `relay-factor` and
`local-only`, Consul's 400s for bad parameters and bodies, and its 500 texts when pools fail."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from proconsul.agent.keyring_ops import KeyringOperator, KeyringPool
from proconsul.gossip.config import default_local
from proconsul.gossip.keyring import Keyring
from proconsul.gossip.mock_transport import MockNetwork
from proconsul.gossip.serf.config import SerfConfig
from proconsul.gossip.serf.serf import Serf
from proconsul.http.app import APIApp
from proconsul.http.operator_keyring import (
    OperatorKeyringHandlers,
    keyring_errors,
    multierror_text,
)
from proconsul.http.request import Request, Response

KEY1 = base64.b64encode(bytes(range(32))).decode()
KEY2 = base64.b64encode(bytes(range(32, 64))).decode()
MISSING = base64.b64encode(bytes(range(64, 96))).decode()
PATH = "/v1/operator/keyring"

# The local profile retransmits each broadcast only 2 x ceil(log10(n + 1)) times, which misses
# a member of five in a good share of queries; these tests need every member to hear each one.
FAST = replace(default_local(), probe_interval=0.1, probe_timeout=0.04, gossip_interval=0.02,
               push_pull_interval=0.5, tcp_timeout=0.5, gossip_to_the_dead_time=1.0,
               retransmit_mult=6)


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def serf_pool(names: list[str], encrypted: bool, seed: int) -> list[Serf]:
    net = MockNetwork(seed=seed)
    nodes = []
    for i, name in enumerate(names):
        cfg = SerfConfig(name, {"role": "consul"}, protocol_version=5, memberlist=FAST,
                         broadcast_timeout=1.0, leave_propagate_delay=0.1,
                         query_timeout_mult=100)
        ring = Keyring.from_base64([KEY1]) if encrypted else None
        node = Serf(cfg, net.new_transport(), keyring=ring, rng=random.Random(seed + i))
        await node.start()
        nodes.append(node)
    first = "{}:{}".format(*nodes[0].memberlist.transport.advertise())
    for node in nodes[1:]:
        assert await node.join([first]) == 1
    await wait_for(lambda: all(len(n.members) == len(names) for n in nodes))
    return nodes


@dataclass
class Cluster:
    app: APIApp
    wan: list[Serf]
    lan: list[Serf]
    operator: KeyringOperator

    async def call(self, method: str, query: dict[str, list[str]] | None = None,
                   body: bytes = b"") -> Response:
        req = Request(method, PATH, PATH, query or {}, {}, body)
        return await self.app.handle(req)

    async def listing(self, **query: str) -> list[dict[str, Any]]:
        resp = await self.call("GET", {k.replace("_", "-"): [v] for k, v in query.items()})
        assert resp.status == 200, resp.body
        out: list[dict[str, Any]] = json.loads(resp.body)
        return out

    async def stop(self) -> None:
        for node in self.wan + self.lan:
            await node.shutdown()


async def cluster(encrypted: bool = True, server: bool = True) -> Cluster:
    wan = await serf_pool(["s1.dc1", "s2.dc1"], encrypted, 10)
    lan = await serf_pool(["s1", "c1", "c2"], encrypted, 20)
    operator = KeyringOperator(lambda: [KeyringPool(lan[0], False, "dc1"),
                                        KeyringPool(wan[0], True, "dc1")], server=server)
    app = APIApp(datacenter="dc1")
    OperatorKeyringHandlers(app, operator)
    return Cluster(app, wan, lan, operator)


def run(main: Callable[[Cluster], Awaitable[None]], **kwargs: bool) -> None:
    async def outer() -> None:
        c = await cluster(**kwargs)
        try:
            await main(c)
        finally:
            await c.stop()

    asyncio.run(asyncio.wait_for(outer(), 60))


def key_body(key: str) -> bytes:
    return json.dumps({"Key": key}).encode()


def text(resp: Response) -> str:
    return resp.body.decode()


def test_listing_shape_wan_first() -> None:
    async def main(c: Cluster) -> None:
        resp = await c.call("GET")
        assert resp.status == 200
        assert ("Content-Type", "application/json") in resp.headers
        k = KEY1
        assert resp.body == (
            f'[{{"WAN":true,"Datacenter":"dc1","Segment":"","Keys":{{"{k}":2}},'
            f'"PrimaryKeys":{{"{k}":2}},"NumNodes":2}},'
            f'{{"WAN":false,"Datacenter":"dc1","Segment":"","Keys":{{"{k}":3}},'
            f'"PrimaryKeys":{{"{k}":3}},"NumNodes":3}}]').encode()
        local = await c.listing(local_only="true")
        assert [entry["WAN"] for entry in local] == [False]
        assert [entry["WAN"] for entry in await c.listing(local_only="false")] == [True, False]
        relayed = await c.listing(relay_factor="1")
        assert [entry["Keys"] for entry in relayed] == [{KEY1: 2}, {KEY1: 3}]

    run(main)


def test_rotation_through_the_api() -> None:
    async def main(c: Cluster) -> None:
        resp = await c.call("POST", body=key_body(KEY2))
        assert (resp.status, resp.body) == (200, b"")
        listed = await c.listing()
        assert [e["Keys"] for e in listed] == [{KEY1: 2, KEY2: 2}, {KEY1: 3, KEY2: 3}]
        # field names match case-insensitively, as Go's decoder matches them
        resp = await c.call("PUT", {"relay-factor": ["2"]}, b'{"key": "%s"}' % KEY2.encode())
        assert (resp.status, resp.body) == (200, b"")
        assert [e["PrimaryKeys"] for e in await c.listing()] == [{KEY2: 2}, {KEY2: 3}]
        resp = await c.call("DELETE", body=key_body(KEY1))
        assert resp.status == 200
        assert [e["Keys"] for e in await c.listing()] == [{KEY2: 2}, {KEY2: 3}]
        for node in c.wan + c.lan:
            assert node.memberlist.keyring is not None
            assert node.memberlist.keyring.keys == [base64.b64decode(KEY2)]

    run(main)


def test_members_refusing_make_a_500_listing_each() -> None:
    async def main(c: Cluster) -> None:
        resp = await c.call("PUT", body=key_body(MISSING))
        assert resp.status == 500
        msg = "Requested key is not in the keyring"
        assert text(resp) == (
            "7 errors occurred:\n"
            "\t* WAN error: 2/2 nodes reported failure\n"
            f"\t* s1.dc1: {msg}\n\t* s2.dc1: {msg}\n"
            "\t* dc1 (LAN) error: 3/3 nodes reported failure\n"
            f"\t* c1: {msg}\n\t* c2: {msg}\n\t* s1: {msg}\n\n")
        resp = await c.call("DELETE", body=key_body(KEY1))
        assert resp.status == 500 and "s2.dc1: Removing the primary key is not allowed" in text(
            resp)
        resp = await c.call("POST", body=key_body("not base64!"))
        assert (resp.status, text(resp)) == (500, (
            "2 errors occurred:\n\t* WAN error: illegal base64 data at input byte 3\n"
            "\t* dc1 (LAN) error: illegal base64 data at input byte 3\n\n"))
        # nothing changed
        assert [e["Keys"] for e in await c.listing()] == [{KEY1: 2}, {KEY1: 3}]

    run(main)


def test_pools_without_encryption() -> None:
    async def main(c: Cluster) -> None:
        resp = await c.call("POST", {"local-only": ["0"]}, key_body(KEY2))
        assert resp.status == 500
        body = text(resp)
        assert body.startswith("7 errors occurred:\n\t* WAN error: 2/2 nodes reported failure\n")
        assert body.count("No keyring to modify (encryption not enabled)") == 5
        resp = await c.call("GET", {"local-only": ["1"]})
        assert resp.status == 500
        assert text(resp).startswith("4 errors occurred:\n\t* dc1 (LAN) error: 3/3 nodes "
                                     "reported failure\n")

    run(main, encrypted=False)


def test_bad_parameters_are_400s() -> None:
    async def main(c: Cluster) -> None:
        cases = [
            ("GET", {"relay-factor": ["abc"]}, b"",
             'Error parsing relay factor: strconv.Atoi: parsing "abc": invalid syntax'),
            ("GET", {"relay-factor": ["99999999999999999999"]}, b"",
             'Error parsing relay factor: strconv.Atoi: parsing "99999999999999999999": '
             "value out of range"),
            ("GET", {"relay-factor": ["6"]}, b"",
             "Invalid relay-factor: Relay factor must be in range: [0, 5]"),
            ("POST", {"relay-factor": ["-1"]}, key_body(KEY2),
             "Invalid relay-factor: Relay factor must be in range: [0, 5]"),
            ("GET", {"local-only": ["maybe"]}, b"",
             'Error parsing local-only: strconv.ParseBool: parsing "maybe": invalid syntax'),
            ("POST", {"local-only": ["true"]}, key_body(KEY2),
             "Invalid use of local-only: local-only can only be set for list requests"),
            ("PUT", {}, b"", "Request decode failed: EOF"),
            ("PUT", {}, b"  \n", "Request decode failed: EOF"),
            ("PUT", {}, b'{"Key":', "Request decode failed: unexpected EOF"),
            ("PUT", {}, b"{", "Request decode failed: unexpected EOF"),
            ("PUT", {}, b'{"Key" "x"}',
             "Request decode failed: invalid character '\"' after object key"),
            ("PUT", {}, b'{"Key": "x" "y"}',
             "Request decode failed: invalid character '\"' after object key:value pair"),
            ("PUT", {}, b"[1 2]",
             "Request decode failed: invalid character '2' after array element"),
            ("PUT", {}, b"{Key: 1}",
             "Request decode failed: invalid character 'K' looking for beginning of object "
             "key string"),
            ("PUT", {}, b"xyz",
             "Request decode failed: invalid character 'x' looking for beginning of value"),
            ("PUT", {}, b'{"LocalOnly": nope}',
             "Request decode failed: invalid character 'o' in literal null (expecting 'u')"),
            ("PUT", {}, b'{"LocalOnly": tru',
             "Request decode failed: unexpected EOF"),
            ("PUT", {}, b'{"RelayFactor": NaN}',
             "Request decode failed: invalid character 'N' looking for beginning of value"),
            ("PUT", {}, b'{"RelayFactor": -Infinity, "Key" "x"}',
             "Request decode failed: invalid character 'I' in numeric literal"),
            ("PUT", {}, b'{"Key": "a\\qb"}',
             "Request decode failed: invalid character 'q' in string escape code"),
            ("PUT", {}, b'{"Key": "a\\u12g4"}',
             "Request decode failed: invalid character 'g' in \\u hexadecimal character escape"),
            ("PUT", {}, b'{"Key": "a\nb"}',
             "Request decode failed: invalid character '\\n' in string literal"),
            ("PUT", {}, b'{"Key": 5}',
             "Request decode failed: json: cannot unmarshal number into Go struct field "
             "keyringArgs.Key of type string"),
            ("PUT", {}, b'{"Key": "%s", "Bogus": 1}' % KEY2.encode(),
             'Request decode failed: json: unknown field "Bogus"'),
            ("DELETE", {}, b'{"RelayFactor": 300}',
             "Request decode failed: json: cannot unmarshal number 300 into Go struct field "
             "keyringArgs.RelayFactor of type uint8"),
            ("DELETE", {}, b'{"RelayFactor": "2"}',
             "Request decode failed: json: cannot unmarshal string into Go struct field "
             "keyringArgs.RelayFactor of type uint8"),
            ("DELETE", {}, b'{"LocalOnly": 1}',
             "Request decode failed: json: cannot unmarshal number into Go struct field "
             "keyringArgs.LocalOnly of type bool"),
            ("POST", {}, b'["x"]',
             "Request decode failed: json: cannot unmarshal array into Go value of type "
             "agent.keyringArgs"),
        ]
        for method, query, body, expected in cases:
            resp = await c.call(method, query, body)
            assert (resp.status, text(resp)) == (400, expected), (method, query, body)

    run(main)


def test_server_only_and_list_only_rules() -> None:
    async def main(c: Cluster) -> None:
        # LocalOnly in a change's body passes the HTTP checks but not the operation's
        resp = await c.call("POST", body=b'{"Key": "%s", "LocalOnly": true}' % KEY2.encode())
        assert (resp.status, text(resp)) == (
            500, "argument error: LocalOnly can only be used for List operations")
        c.operator.server = False
        resp = await c.call("GET")
        assert (resp.status, text(resp)) == (
            500, "keyring operations must run against a server node")
        resp = await c.call("PATCH")
        assert resp.status == 405
        assert ("Allow", "OPTIONS,GET,POST,PUT,DELETE") in resp.headers

    run(main)


class Recorder:
    """A backend that only records what the handler asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int, bool]] = []

    async def operation(self, op: str, key: str = "", relay_factor: int = 0,
                        local_only: bool = False) -> list[dict[str, Any]]:
        self.calls.append((op, key, relay_factor, local_only))
        return []


def test_body_fields_and_query_overrides() -> None:
    async def main() -> None:
        app = APIApp()
        backend = Recorder()
        OperatorKeyringHandlers(app, backend)

        async def call(method: str, query: dict[str, list[str]], body: bytes) -> int:
            return (await app.handle(Request(method, PATH, PATH, query, {}, body))).status

        assert await call("POST", {}, b'{"Key": "k", "RelayFactor": 3, "Token": null}') == 200
        assert await call("PUT", {"relay-factor": ["1"]}, b'{"KEY": "k", "RelayFactor": 3}') == 200
        # only the first JSON value counts, as with Go's Decoder
        assert await call("DELETE", {}, b'{"Key": "k"} trailing') == 200
        assert await call("GET", {"relay-factor": [""], "local-only": ["T"]}, b"ignored") == 200
        assert await call("GET", {}, b"") == 200
        assert backend.calls == [("install", "k", 3, False), ("use", "k", 1, False),
                                 ("remove", "k", 0, False), ("list", "", 0, True),
                                 ("list", "", 0, False)]

    asyncio.run(main())


def test_error_text_layout() -> None:
    assert multierror_text(["a"]) == "1 error occurred:\n\t* a\n\n"
    assert multierror_text(["a", "b"]) == "2 errors occurred:\n\t* a\n\t* b\n\n"
    entries = [
        {"WAN": False, "Datacenter": "dc1", "Segment": "alpha", "Error": "boom",
         "Messages": {"n1": "m1"}},
        {"WAN": False, "Datacenter": "dc1", "Segment": "", "Partition": "team", "Error": "e"},
        {"WAN": False, "Datacenter": "dc1", "Segment": "", "Partition": "default", "Error": "d"},
        {"WAN": True, "Datacenter": "dc1", "Segment": "", "Messages": {"x": "warning only"}},
    ]
    assert keyring_errors(entries) == (
        "4 errors occurred:\n\t* dc1 (LAN) [segment: alpha] error: boom\n\t* n1: m1\n"
        "\t* dc1 (LAN) [partition: team] error: e\n\t* dc1 (LAN) error: d\n\n")
    assert keyring_errors(entries[3:]) is None

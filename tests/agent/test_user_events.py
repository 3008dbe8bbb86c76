"""User events: the payload codec against hand-built bytes, validation, the filters a receiving
agent applies, the 256-event ring, the UUID-derived index and blocking lists; then the whole
path between real Serf nodes on the in-memory network."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import msgpack
import pytest

from proconsul.agent import user_events as ue
from proconsul.agent.user_events import (
    UserEvent,
    UserEventError,
    UserEvents,
    decode_user_event,
    encode_user_event,
    uuid_to_uint64,
    validate_user_event,
)
from proconsul.gossip.config import default_local
from proconsul.gossip.mock_transport import MockNetwork
from proconsul.gossip.serf.config import SerfConfig, UserEventRecord
from proconsul.gossip.serf.serf import Serf, SerfEvent

EVENT_ID = "11111111-2222-3333-4444-555555555555"


def run(main: Callable[[], Awaitable[None]], timeout: float = 60.0) -> None:
    asyncio.run(asyncio.wait_for(main(), timeout))


def _str(text: str) -> bytes:
    raw = text.encode()
    return (bytes([0xA0 | len(raw)]) if len(raw) < 32 else bytes([0xD9, len(raw)])) + raw


# -- codec --------------------------------------------------------------------------------------


def test_encode_matches_go_msgpack_layout() -> None:
    """Keys in byte order, str8 for the 36-byte ID, bin8 for the payload, no version byte."""
    event = UserEvent(EVENT_ID, "deploy", b"v1", node_filter="web", version=1)
    expected = (
        b"\x85" + _str("ID") + _str(EVENT_ID) + _str("n") + _str("deploy")
        + _str("nf") + _str("web") + _str("p") + b"\xc4\x02v1" + _str("v") + b"\x01"
    )
    assert encode_user_event(event) == expected


def test_encode_every_field_in_key_order() -> None:
    event = UserEvent(EVENT_ID, "e", b"\x00\xff", "n.*", "db", "primary", 1, ltime=99)
    raw = encode_user_event(event)
    assert raw[0] == 0x87
    keys = list(msgpack.unpackb(raw, raw=False))
    assert keys == ["ID", "n", "nf", "p", "sf", "tf", "v"]
    # the Lamport time is never part of the payload
    assert b"99" not in raw and 99 not in msgpack.unpackb(raw).values()


def test_encode_omits_empty_optionals() -> None:
    raw = encode_user_event(UserEvent(EVENT_ID, "x", version=1))
    assert raw == b"\x83" + _str("ID") + _str(EVENT_ID) + _str("n") + _str("x") + _str("v") + \
        b"\x01"


def test_decode_round_trip() -> None:
    event = UserEvent(EVENT_ID, "deploy", b"\x00payload", "n1", "web", "v2", 1)
    back = decode_user_event(encode_user_event(event))
    assert back == event


def test_decode_is_lenient_like_go_msgpack() -> None:
    # old-style raw strings for every field (payload included), unknown keys, nil values,
    # a missing version and trailing bytes
    raw = msgpack.packb({b"ID": b"abc", b"n": b"deploy", b"p": b"data", b"zz": [1, 2],
                         b"nf": None}, use_bin_type=False) + b"\xc0garbage"
    event = decode_user_event(raw)
    assert (event.id, event.name, event.payload, event.node_filter, event.version) == (
        "abc", "deploy", b"data", "", 0)


@pytest.mark.parametrize("raw", [
    b"",
    b"\x85\xa2ID",  # truncated
    msgpack.packb(["ID", "x"]),
    msgpack.packb({"ID": 5, "n": "x"}),
    msgpack.packb({"ID": "x", "n": "x", "v": "1"}),
    msgpack.packb({"ID": "x", "n": "x", "p": 7}),
])
def test_decode_rejects_what_go_cannot_decode(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode_user_event(raw)


def test_uuid_to_uint64() -> None:
    assert uuid_to_uint64(EVENT_ID) == 0x5555444477776666
    assert uuid_to_uint64("00000000-0000-0000-0000-000000000000") == 0
    assert uuid_to_uint64("ffffffff-ffff-ffff-0000-000000000000") == (1 << 64) - 1
    # not a UUID: still a stable, non-crashing value
    assert uuid_to_uint64("not-a-uuid") == uuid_to_uint64("not-a-uuid")


def test_json_shape() -> None:
    assert UserEvent(EVENT_ID, "x", b"hi", version=1, ltime=7).to_json() == {
        "ID": EVENT_ID, "Name": "x", "Payload": "aGk=", "NodeFilter": "", "ServiceFilter": "",
        "TagFilter": "", "Version": 1, "LTime": 7}
    assert UserEvent(EVENT_ID, "x").to_json()["Payload"] is None


# -- validation and firing ----------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "message"), [
    ({"name": ""}, "User event missing name"),
    ({"tag_filter": "v1"}, "Cannot provide tag filter without service filter"),
    ({"node_filter": "["}, "Invalid node filter: error parsing regexp: "),
    ({"service_filter": "(a"}, "Invalid service filter: error parsing regexp: "),
    ({"service_filter": "a", "tag_filter": "*"}, "Invalid tag filter: error parsing regexp: "),
])
def test_validation_messages(fields: dict[str, str], message: str) -> None:
    event = replace(UserEvent(EVENT_ID, "deploy"), **fields)
    with pytest.raises(UserEventError) as info:
        validate_user_event(event)
    assert str(info.value).startswith(message)
    assert info.value.status == 500


class Sent:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    def __call__(self, name: str, payload: bytes) -> None:
        self.calls.append((name, payload))


def make(node: str = "n1", services: list[tuple[str, list[str]]] | None = None,
         send: Callable[[str, bytes], None] | None = None, **kw: Any) -> UserEvents:
    svc = services or []
    return UserEvents(node, "dc1", send or Sent(), lambda: svc, **kw)


def test_fire_sends_prefixed_encoded_event() -> None:
    sent = Sent()
    events = make(send=sent)
    out = events.fire("deploy", b"v1", "^n", "web", "prod")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                        out["ID"])
    assert out == {"ID": out["ID"], "Name": "deploy", "Payload": "djE=", "NodeFilter": "^n",
                   "ServiceFilter": "web", "TagFilter": "prod", "Version": 1, "LTime": 0}
    [(name, payload)] = sent.calls
    assert name == "consul:event:deploy"
    assert decode_user_event(payload) == UserEvent(out["ID"], "deploy", b"v1", "^n", "web",
                                                   "prod", 1)
    # the firing agent learns of its event from Serf, not from fire itself
    assert events.events() == []


def test_fire_refusals() -> None:
    sent = Sent()
    events = make(send=sent)
    with pytest.raises(UserEventError, match=r"^Cannot provide tag filter without service"):
        events.fire("x", tag_filter="a")
    with pytest.raises(UserEventError, match=r"^No path to datacenter$"):
        events.fire("x", dc="dc2")
    assert sent.calls == []
    assert events.fire("x", dc="dc1")["Payload"] is None

    def too_big(name: str, payload: bytes) -> None:
        raise ValueError("user event exceeds configured limit of 512 bytes before encoding")

    with pytest.raises(UserEventError) as info:
        make(send=too_big).fire("x", b"y" * 600)
    assert str(info.value) == ("error broadcasting event: user event exceeds configured limit "
                               "of 512 bytes before encoding")


# -- receiving ----------------------------------------------------------------------------------


def wire(name: str = "deploy", **fields: Any) -> bytes:
    return encode_user_event(UserEvent(fields.pop("id", EVENT_ID), name, version=1, **fields))


def test_ingest_takes_only_consul_user_events() -> None:
    events = make()
    assert not events.ingest("deploy", wire())
    assert not events.ingest("consul:new-leader", b"n1")
    assert events.ingest("consul:event:deploy", wire(payload=b"p"), ltime=12)
    [event] = events.events()
    assert (event.name, event.payload, event.ltime, event.id) == ("deploy", b"p", 12, EVENT_ID)
    assert events.last_event() is event


def test_ingest_logs_undecodable_payload(caplog: pytest.LogCaptureFixture) -> None:
    events = make()
    with caplog.at_level(logging.ERROR, logger="proconsul.agent"):
        assert not events.ingest("consul:event:x", b"\x01\x02")
    assert events.events() == []
    assert any(r.getMessage().startswith("Failed to decode event: error=")
               for r in caplog.records)


def test_node_filter_uses_local_node_name() -> None:
    events = make("web-1")
    assert not events.ingest("consul:event:x", wire(node_filter="^db"))
    assert events.ingest("consul:event:x", wire(node_filter="b-"))  # unanchored, as Go's
    assert events.ingest("consul:event:x", wire(node_filter="^web-1$"))
    assert len(events.events()) == 2


def test_service_and_tag_filters_use_local_services() -> None:
    events = make(services=[("web-1", ["v1", "blue"]), ("db", ["primary"])])
    accepted = [
        events.ingest("consul:event:x", wire(service_filter=sf, tag_filter=tf))
        for sf, tf in [("^web", ""), ("web-1", "blue"), ("^db$", "prim"), ("^web", "primary"),
                       ("cache", ""), ("db", "v1")]
    ]
    assert accepted == [True, True, True, False, False, False]
    assert not make().ingest("consul:event:x", wire(service_filter=".*"))


def test_bad_filters_in_received_events_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    events = make(services=[("web", ["a"])])
    with caplog.at_level(logging.ERROR, logger="proconsul.agent"):
        for fields in ({"node_filter": "["}, {"service_filter": "("},
                       {"service_filter": "web", "tag_filter": "+"}):
            assert not events.ingest("consul:event:x", wire(**fields))
    messages = [r.getMessage() for r in caplog.records]
    for kind, pattern in (("node", "["), ("service", "("), ("tag", "+")):
        assert any(m.startswith(f"Failed to parse {kind} filter for event: filter={pattern} "
                                "event=deploy error=error parsing regexp:") for m in messages)


def test_newer_version_is_kept_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    events = make()
    raw = encode_user_event(UserEvent(EVENT_ID, "x", version=2))
    with caplog.at_level(logging.WARNING, logger="proconsul.agent"):
        assert events.ingest("consul:event:x", raw)
    assert "Event version may have unsupported features: version=2 event=x" in [
        r.getMessage() for r in caplog.records]


def test_remote_exec_events_are_not_listed(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="proconsul.agent"):
        assert not make().ingest("consul:event:_rexec", wire("_rexec"))
    assert any(r.getMessage().startswith("ignoring remote exec event, disabled.")
               for r in caplog.records)
    ran: list[UserEvent] = []
    events = make(remote_exec=ran.append)
    assert not events.ingest("consul:event:_rexec", wire("_rexec"))
    assert [e.name for e in ran] == ["_rexec"] and events.events() == []


def test_ring_keeps_newest_256_in_order() -> None:
    events = make()
    ids = [f"00000000-0000-0000-0000-{i:012x}" for i in range(300)]
    for i, event_id in enumerate(ids):
        events.ingest("consul:event:e", wire(f"e{i % 3}", id=event_id), ltime=i)
    kept = events.events()
    assert len(kept) == ue.EVENT_BUFFER_SIZE == 256
    assert [e.id for e in kept] == ids[-256:]
    assert [e.ltime for e in kept] == list(range(44, 300))


# -- listing ------------------------------------------------------------------------------------


def test_list_filters_by_name_and_derives_index() -> None:
    async def main() -> None:
        events = make()
        assert await events.list() == (1, [])
        a, b = "aaaaaaaa-0000-0000-0000-000000000001", "bbbbbbbb-0000-0000-0000-000000000002"
        events.ingest("consul:event:deploy", wire("deploy", id=a))
        events.ingest("consul:event:other", wire("other", id=b))
        index, listed = await events.list()
        assert index == uuid_to_uint64(b) and [e["ID"] for e in listed] == [a, b]
        index, listed = await events.list("deploy")
        assert index == uuid_to_uint64(a) and [e["Name"] for e in listed] == ["deploy"]
        assert await events.list("nothing") == (1, [])

    run(main)


def test_blocking_list_returns_at_once_when_index_differs() -> None:
    async def main() -> None:
        events = make()
        events.ingest("consul:event:x", wire())
        index, _ = await events.list(index=12345, wait=300)
        assert index == uuid_to_uint64(EVENT_ID)

    run(main, timeout=10)


def test_blocking_list_wakes_on_a_new_event() -> None:
    async def main() -> None:
        events = make()
        events.ingest("consul:event:x", wire("x"))
        index, _ = await events.list()
        waiter = asyncio.ensure_future(events.list(index=index, wait=60))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        # an event of another name wakes the query but does not answer a name-filtered one
        named = asyncio.ensure_future(events.list("x", index=index, wait=60))
        new_id = "22222222-0000-0000-0000-000000000000"
        events.ingest("consul:event:y", wire("y", id=new_id))
        new_index, listed = await waiter
        assert new_index == uuid_to_uint64(new_id) and len(listed) == 2
        await asyncio.sleep(0.05)
        assert not named.done()
        later = "33333333-0000-0000-0000-000000000000"
        events.ingest("consul:event:x", wire("x", id=later))
        named_index, named_list = await named
        assert named_index == uuid_to_uint64(later)
        assert [e["ID"] for e in named_list] == [EVENT_ID, later]

    run(main, timeout=20)


def test_blocking_list_times_out_with_same_answer() -> None:
    async def main() -> None:
        events = make()
        assert await events.list(index=1, wait=0.05) == (1, [])

    run(main, timeout=10)


def test_blocking_list_wait_defaults_to_and_is_capped_at_max(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ue, "MAX_QUERY_TIME", 0.1)

    async def main() -> None:
        events = make()
        assert await events.list(index=1) == (1, [])
        assert await events.list(index=1, wait=10_000) == (1, [])

    run(main, timeout=10)


# -- two real Serf pools ------------------------------------------------------------------------

FAST = replace(default_local(), probe_interval=0.1, probe_timeout=0.04, gossip_interval=0.02,
               push_pull_interval=0.5, tcp_timeout=0.5, gossip_to_the_dead_time=1.0)


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class Node:
    """One agent's event machinery on a Serf node, wired as the agent wires it."""

    def __init__(self, net: MockNetwork, name: str, services: list[tuple[str, list[str]]],
                 seed: int) -> None:
        self.records: list[UserEventRecord] = []
        config = SerfConfig(name, {"role": "node"}, protocol_version=5, memberlist=FAST,
                            broadcast_timeout=1.0, leave_propagate_delay=0.1,
                            reap_interval=0.2, reconnect_timeout=1.0, tombstone_timeout=1.0)
        self.serf = Serf(config, net.new_transport(), self.on_event, rng=random.Random(seed))
        self.events = UserEvents(
            name, "dc1", lambda n, p: self.serf.user_event(n, p, coalesce=False),
            lambda: services)

    def on_event(self, event: SerfEvent) -> None:
        if isinstance(event, UserEventRecord):
            self.records.append(event)
            self.events.ingest(event.name, event.payload, event.ltime)

    def names(self) -> list[str]:
        return [e.name for e in self.events.events()]


async def cluster() -> list[Node]:
    net = MockNetwork(seed=7)
    nodes = [Node(net, "web-1", [("web", ["v1", "blue"])], 0),
             Node(net, "db-1", [("db", ["primary"])], 1),
             Node(net, "cache-1", [], 2)]
    for node in nodes:
        await node.serf.start()
    seed = "{}:{}".format(*nodes[0].serf.memberlist.transport.advertise())
    for node in nodes[1:]:
        assert await node.serf.join([seed]) == 1
    await wait_for(lambda: all(len(n.serf.members) == 3 for n in nodes))
    return nodes


def test_fire_on_one_list_on_the_others() -> None:
    async def main() -> None:
        nodes = await cluster()
        db = nodes[1]
        try:
            fired = db.events.fire("deploy", b"v42")
            # Serf hands the event to the firing node at once
            assert db.names() == ["deploy"]
            await wait_for(lambda: all(n.names() == ["deploy"] for n in nodes))
            for node in nodes:
                [record] = node.records
                assert record.name == "consul:event:deploy" and not record.coalesce
                index, [listed] = await node.events.list()
                assert index == uuid_to_uint64(fired["ID"])
                assert listed["ID"] == fired["ID"] and listed["Payload"] == "djQy"
                assert listed["LTime"] == record.ltime
            assert len({n.events.events()[0].ltime for n in nodes}) == 1
        finally:
            for node in nodes:
                await node.serf.shutdown()

    run(main)


def test_filters_apply_where_events_arrive() -> None:
    async def main() -> None:
        nodes = await cluster()
        web, db, cache = nodes
        try:
            web.events.fire("only-cache", node_filter="^cache")
            cache.events.fire("only-db", service_filter="^db$")
            db.events.fire("blue-web", service_filter="web", tag_filter="^blue$")
            db.events.fire("green-web", service_filter="web", tag_filter="^green$")
            web.events.fire("marker")
            # every node has seen every event once the marker and all the others arrived
            await wait_for(lambda: all(len(n.records) == 5 for n in nodes))
            assert sorted(web.names()) == ["blue-web", "marker"]
            assert sorted(db.names()) == ["marker", "only-db"]
            assert sorted(cache.names()) == ["marker", "only-cache"]
        finally:
            for node in nodes:
                await node.serf.shutdown()

    run(main)


def test_blocking_list_on_one_node_wakes_on_a_fire_elsewhere() -> None:
    async def main() -> None:
        nodes = await cluster()
        web, db, _ = nodes
        try:
            index, listed = await web.events.list("deploy")
            assert (index, listed) == (1, [])
            waiter = asyncio.ensure_future(web.events.list("deploy", index=index, wait=30))
            await asyncio.sleep(0.05)
            assert not waiter.done()
            db.events.fire("unrelated")
            fired = db.events.fire("deploy", b"x")
            new_index, [event] = await asyncio.wait_for(waiter, 20)
            assert event["ID"] == fired["ID"] and new_index == uuid_to_uint64(fired["ID"])
        finally:
            for node in nodes:
                await node.serf.shutdown()

    run(main)


def test_oversized_event_is_refused_by_serf() -> None:
    async def main() -> None:
        nodes = await cluster()
        try:
            with pytest.raises(UserEventError) as info:
                nodes[0].events.fire("big", b"x" * 600)
            assert str(info.value) == ("error broadcasting event: user event exceeds configured "
                                       "limit of 512 bytes before encoding")
            assert all(n.records == [] for n in nodes)
        finally:
            for node in nodes:
                await node.serf.shutdown()

    run(main)

"""The key manager: cluster-wide keyring changes tallied from every member's answer.

Our Serf nodes on the in-memory network (rotation, keyring files, relayed answers, each way a
member can fail or stay silent, the shared lock), then one pool of real `serf` agents plus ours
where our KeyManager rotates the key and `serf keys -list` on the real agents agrees.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from proconsul.gossip.config import default_local
from proconsul.gossip.keyring import Keyring
from proconsul.gossip.mock_transport import MockNetwork
from proconsul.gossip.serf import codec
from proconsul.gossip.serf.config import SerfConfig
from proconsul.gossip.serf.keymanager import (
    KeyManager,
    KeyManagerError,
    _ReadWriteLock,
    key_manager,
)
from proconsul.gossip.serf.messages import KeyResponse as NodeKeyResponse
from proconsul.gossip.serf.query import QueryEvent
from proconsul.gossip.serf.serf import Serf

KEY1 = base64.b64encode(bytes(range(16))).decode()
KEY2 = base64.b64encode(bytes(range(16, 32))).decode()
KEY3 = base64.b64encode(bytes(range(100, 132))).decode()

# The local profile retransmits each broadcast only 2 x ceil(log10(n + 1)) times, which misses
# a member of five in a good share of queries; these tests need every member to hear each one.
FAST = replace(default_local(), probe_interval=0.1, probe_timeout=0.04, gossip_interval=0.02,
               push_pull_interval=0.5, tcp_timeout=0.5, gossip_to_the_dead_time=1.0,
               retransmit_mult=6)


def config(name: str) -> SerfConfig:
    # queries get 2 s rather than Serf's 0.32 s at this gossip pace: a busy machine must not
    # make a member look silent
    return SerfConfig(name, {"role": "node"}, protocol_version=5, memberlist=FAST,
                      broadcast_timeout=1.0, leave_propagate_delay=0.1, query_timeout_mult=100)


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def cluster(n: int, encrypted: bool = True, keyring_dir: Path | None = None) -> list[Serf]:
    net = MockNetwork(seed=n)
    nodes: list[Serf] = []
    for i in range(n):
        cfg = config(f"n{i}")
        if keyring_dir is not None:
            cfg.keyring_file = str(keyring_dir / f"n{i}.keyring")
        ring = Keyring.from_base64([KEY1]) if encrypted else None
        s = Serf(cfg, net.new_transport(), keyring=ring, rng=random.Random(i))
        await s.start()
        nodes.append(s)
    seed = "{}:{}".format(*nodes[0].memberlist.transport.advertise())
    for s in nodes[1:]:
        assert await s.join([seed]) == 1
    await wait_for(lambda: all(len(s.members) == n for s in nodes))
    return nodes


async def stop(nodes: list[Serf]) -> None:
    for s in nodes:
        await s.shutdown()


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 60))


def raw(key: str) -> bytes:
    return base64.b64decode(key)


def test_rotation_install_use_remove_and_list() -> None:
    async def main() -> None:
        nodes = await cluster(3)
        km = key_manager(nodes[0])
        resp = await km.install_key(KEY2)
        assert (resp.num_nodes, resp.num_resp, resp.num_err, resp.messages) == (3, 3, 0, {})
        assert resp.keys == {} and resp.primary_keys == {"": 3}
        listed = await key_manager(nodes[2]).list_keys()
        assert listed.keys == {KEY1: 3, KEY2: 3}
        assert listed.primary_keys == {KEY1: 3}
        await km.use_key(KEY2)
        assert all(s.memberlist.keyring and s.memberlist.keyring.primary_key == raw(KEY2)
                   for s in nodes)
        await km.remove_key(KEY1)
        listed = await km.list_keys()
        assert (listed.keys, listed.primary_keys, listed.num_resp) == ({KEY2: 3}, {KEY2: 3}, 3)
        # the pool still gossips on the new key
        nodes[1].user_event("after", b"", coalesce=False)
        await nodes[2].set_tags({"rotated": "yes"})
        await wait_for(lambda: nodes[0].members["n2"].tags.get("rotated") == "yes")
        await stop(nodes)

    run(main)


def test_every_member_writes_its_keyring_file(tmp_path: Path) -> None:
    async def main() -> None:
        nodes = await cluster(3, keyring_dir=tmp_path)
        km = key_manager(nodes[1])
        await km.install_key(KEY2)
        for i in range(3):
            assert json.loads((tmp_path / f"n{i}.keyring").read_text()) == [KEY1, KEY2]
        await km.use_key(KEY2)
        await km.remove_key(KEY1)
        for i in range(3):
            assert json.loads((tmp_path / f"n{i}.keyring").read_text()) == [KEY2]
            assert Keyring.load(tmp_path / f"n{i}.keyring").keys == [raw(KEY2)]
        await stop(nodes)

    run(main)


def test_relayed_answers_are_counted_once() -> None:
    async def main() -> None:
        nodes = await cluster(5)
        resp = await key_manager(nodes[3]).install_key(KEY2, relay_factor=3)
        assert (resp.num_nodes, resp.num_resp, resp.num_err) == (5, 5, 0)
        listed = await key_manager(nodes[0]).list_keys(relay_factor=2)
        assert listed.keys == {KEY1: 5, KEY2: 5}
        await stop(nodes)

    run(main)


async def refused(call: Awaitable[object]) -> KeyManagerError:
    with pytest.raises(KeyManagerError) as info:
        await call
    return info.value


def test_members_refusing_are_reported_by_name() -> None:
    async def main() -> None:
        nodes = await cluster(3)
        km = key_manager(nodes[0])
        exc = await refused(km.use_key(KEY3))
        assert str(exc) == "3/3 nodes reported failure"
        assert exc.response.messages == {f"n{i}": "Requested key is not in the keyring"
                                         for i in range(3)}
        exc = await refused(km.remove_key(KEY1))
        assert exc.response.messages["n1"] == "Removing the primary key is not allowed"
        exc = await refused(km.install_key(base64.b64encode(b"short").decode()))
        assert exc.response.messages["n2"] == "key size must be 16, 24 or 32 bytes"
        assert exc.response.num_err == 3
        # nothing changed anywhere
        assert (await km.list_keys()).keys == {KEY1: 3}
        await stop(nodes)

    run(main)


def test_key_that_is_not_base64_never_leaves_the_node() -> None:
    async def main() -> None:
        nodes = await cluster(2)
        sent_before = nodes[0].query_clock.time()
        exc = await refused(key_manager(nodes[0]).install_key("not base64!"))
        assert str(exc) == "illegal base64 data at input byte 3"
        assert exc.response.num_nodes == 0 and exc.response.keys == {}
        assert nodes[0].query_clock.time() == sent_before
        await stop(nodes)

    run(main)


def test_pool_without_encryption() -> None:
    async def main() -> None:
        nodes = await cluster(3, encrypted=False)
        km = key_manager(nodes[0])
        for op in (km.install_key(KEY2), km.use_key(KEY2), km.remove_key(KEY2)):
            exc = await refused(op)
            assert str(exc) == "3/3 nodes reported failure"
            assert set(exc.response.messages.values()) == {
                "No keyring to modify (encryption not enabled)"}
        exc = await refused(km.list_keys())
        assert str(exc) == "3/3 nodes reported failure"
        assert exc.response.keys == {} and exc.response.primary_keys == {"": 3}
        assert all(s.memberlist.keyring is None for s in nodes)
        await stop(nodes)

    run(main)


def test_silent_and_garbled_members() -> None:
    async def main() -> None:
        nodes = await cluster(4)
        # n1 never answers, n2 answers with something that is not a key response, n3 answers
        # with a warning (as a truncated key list does)
        nodes[1].delegate._key_query = lambda kind, event: None  # type: ignore[method-assign]

        def garbled(kind: str, event: QueryEvent) -> None:
            event.respond(b"\x05junk")

        def warned(kind: str, event: QueryEvent) -> None:
            event.respond(codec.encode(NodeKeyResponse(True, "truncated key list", [KEY1],
                                                       KEY1)))

        nodes[2].delegate._key_query = garbled  # type: ignore[method-assign]
        nodes[3].delegate._key_query = warned  # type: ignore[method-assign]
        exc = await refused(key_manager(nodes[0]).list_keys())
        resp = exc.response
        assert str(exc) == "1/4 nodes reported failure"
        assert (resp.num_nodes, resp.num_resp, resp.num_err) == (4, 3, 1)
        assert resp.messages == {"n2": "Invalid key query response type: [5 106 117 110 107]",
                                 "n3": "truncated key list"}
        assert resp.keys == {KEY1: 2} and resp.primary_keys == {KEY1: 2}

        del nodes[2].delegate._key_query, nodes[3].delegate._key_query  # answer as before
        exc = await refused(key_manager(nodes[0]).install_key(KEY2))
        assert str(exc) == "3/4 nodes reported success"
        assert exc.response.num_err == 0 and exc.response.messages == {}
        await stop(nodes)

    run(main)


def test_one_manager_per_pool_and_its_lock() -> None:
    async def main() -> None:
        nodes = await cluster(2)
        assert key_manager(nodes[0]) is key_manager(nodes[0])
        assert key_manager(nodes[0]) is not key_manager(nodes[1])
        assert isinstance(key_manager(nodes[1]), KeyManager)

        lock = _ReadWriteLock()
        order: list[str] = []
        first_read = asyncio.Event()
        release_read = asyncio.Event()

        async def reader(name: str, hold: asyncio.Event | None = None) -> None:
            async with lock.read():
                order.append(f"{name}+")
                if hold is not None:
                    first_read.set()
                    await hold.wait()
                order.append(f"{name}-")

        async def writer() -> None:
            async with lock.write():
                order.append("w+")
                await asyncio.sleep(0.01)
                order.append("w-")

        r1 = asyncio.create_task(reader("r1", release_read))
        await first_read.wait()
        w = asyncio.create_task(writer())
        await asyncio.sleep(0.01)
        r2 = asyncio.create_task(reader("r2"))  # queued behind the waiting writer
        await asyncio.sleep(0.01)
        assert order == ["r1+"]
        release_read.set()
        await asyncio.gather(r1, w, r2)
        assert order == ["r1+", "r1-", "w+", "w-", "r2+", "r2-"]

        # a change and listings at once on a real pool: all finish, none sees half a change
        km = key_manager(nodes[0])
        results = await asyncio.gather(km.list_keys(), km.install_key(KEY2), km.list_keys())
        assert results[0].keys == {KEY1: 2}
        assert results[2].keys == {KEY1: 2, KEY2: 2}
        await stop(nodes)

    run(main)


# -- real serf agents ------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("serf") is None, reason="serf not installed")
def test_rotation_driven_by_us_across_real_serf_agents(tmp_path: Path) -> None:
    from tests.integration.test_serf_interop import KEY1 as SERF_KEY1
    from tests.integration.test_serf_interop import KEY2 as SERF_KEY2
    from tests.integration.test_serf_interop import eventually, pool

    def listed(text: str) -> dict[str, str]:
        """key -> "[n/m]" from `serf keys -list`."""
        found = {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].startswith("["):
                found[parts[0]] = parts[1]
        return found

    async def main() -> None:
        async with pool(tmp_path, encrypt=SERF_KEY1) as p:
            ours = p.ours
            assert await ours.join([p.agents[0].addr]) == 1

            async def four() -> bool:
                views = [await a.members() for a in p.agents]
                return all(len(v) == 4 for v in views) and len(ours.members) == 4

            await eventually(four, what="encrypted pool of four")
            km = key_manager(ours)
            resp = await km.install_key(SERF_KEY2)
            assert (resp.num_nodes, resp.num_resp, resp.num_err) == (4, 4, 0)
            assert listed(await p.agents[1].cli("keys", "-list")) == {
                SERF_KEY1: "[4/4]", SERF_KEY2: "[4/4]"}

            # a refusal from the real agents comes back in their words
            exc = await refused(km.use_key(KEY3))
            assert str(exc) == "4/4 nodes reported failure"
            assert exc.response.messages == {
                name: "Requested key is not in the keyring" for name in ("s1", "s2", "s3", "py1")}

            await km.use_key(SERF_KEY2)
            everywhere = await km.list_keys()
            assert everywhere.primary_keys == {SERF_KEY2: 4}
            assert everywhere.keys == {SERF_KEY1: 4, SERF_KEY2: 4}
            await km.remove_key(SERF_KEY1)
            assert listed(await p.agents[2].cli("keys", "-list")) == {SERF_KEY2: "[4/4]"}
            assert ours.memberlist.keyring is not None
            assert ours.memberlist.keyring.keys == [raw(SERF_KEY2)]

            # the pool keeps working on the key we rotated to
            await p.agents[0].cli("event", "rotated-by-py1", "ok")

            async def got_event() -> bool:
                return any(getattr(e, "name", "") == "rotated-by-py1" for e in p.events)

            await eventually(got_event, what="serf event after our rotation")

    asyncio.run(asyncio.wait_for(main(), 150))


@pytest.mark.skipif(shutil.which("serf") is None, reason="serf not installed")
def test_real_serf_agents_without_encryption(tmp_path: Path) -> None:
    from tests.integration.test_serf_interop import eventually, pool

    async def main() -> None:
        async with pool(tmp_path) as p:
            ours = p.ours
            assert await ours.join([p.agents[0].addr]) == 1

            async def four() -> bool:
                views = [await a.members() for a in p.agents]
                return len(ours.members) == 4 and all(len(v) == 4 for v in views)

            await eventually(four, what="plain pool of four")
            km = key_manager(ours)
            exc = await refused(km.list_keys())
            assert str(exc) == "4/4 nodes reported failure"
            for name in ("s1", "s2", "s3"):
                assert exc.response.messages[name] == "Keyring is empty (encryption not enabled)"
            exc = await refused(km.install_key(KEY2))
            assert set(exc.response.messages.values()) == {
                "No keyring to modify (encryption not enabled)"}
            assert exc.response.num_resp == 4

    asyncio.run(asyncio.wait_for(main(), 150))

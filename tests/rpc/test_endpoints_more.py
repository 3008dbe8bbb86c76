"""More of the RPC endpoints: Consul-shaped calls straight to the port, coordinates, snapshots,
blocking catalog and health reads, and the synchronous views a client agent answers from."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from proconsul.rpc.errors import RemoteError
from tests.rpc.endpoint_support import NODE, Site, body_of, header, run, site


def addr(s: Site) -> str:
    host, port = s.rpc_server.address
    return f"{host}:{port}"


async def ok(s: Site, method: str, target: str, body: Any = None) -> Any:
    resp = await s.call(s.remote, method, target, body)
    assert resp.status == 200, (method, target, resp.status, resp.body)
    return body_of(resp) if resp.body else None


def test_consul_shaped_requests_and_replies() -> None:
    async def main() -> None:
        async with site() as s:
            applied = await s.pool.rpc(addr(s), "KVS.Apply", {
                "Datacenter": "dc1", "Op": "set",
                "DirEnt": {"Key": "k", "Value": b"\x00v", "Flags": 9}})
            assert applied is True
            reply = await s.pool.rpc(addr(s), "KVS.Get", {"Datacenter": "dc1", "Key": "k"})
            [entry] = reply["Entries"]
            assert (entry["Key"], entry["Value"], entry["Flags"]) == ("k", b"\x00v", 9)
            assert entry["CreateIndex"] == entry["ModifyIndex"] == reply["Index"]
            assert reply["KnownLeader"] is True and reply["LastContact"] == 0
            missing = await s.pool.rpc(addr(s), "KVS.Get", {"Key": "nope"})
            assert missing["Entries"] is None and missing["Index"] > 0
            keys = await s.pool.rpc(addr(s), "KVS.ListKeys", {"Prefix": "", "Seperator": "/"})
            assert keys["Keys"] == ["k"]
            nodes = await s.pool.rpc(addr(s), "Catalog.ListNodes", {})
            assert [n["Node"] for n in nodes["Nodes"]] == [NODE]
            assert nodes["ConsistencyLevel"] == "leader"
            stale = await s.pool.rpc(addr(s), "Catalog.ListNodes", {"AllowStale": True})
            assert stale["ConsistencyLevel"] == "stale"
            assert await s.pool.rpc(addr(s), "Status.Leader", {}) == "127.0.0.1:8300"
            assert await s.pool.rpc(addr(s), "Status.Peers", None) == ["127.0.0.1:8300"]
            assert await s.pool.rpc(addr(s), "Catalog.ListDatacenters", {}) == ["dc1"]
            with pytest.raises(RemoteError, match=r"^No path to datacenter$"):
                await s.pool.rpc(addr(s), "KVS.Get", {"Datacenter": "dc9", "Key": "k"})
            with pytest.raises(RemoteError, match=r"^No path to datacenter$"):
                await s.pool.rpc(addr(s), "KVS.Apply", {"Datacenter": "dc9", "Op": "set",
                                                        "DirEnt": {"Key": "k"}})
            with pytest.raises(RemoteError, match=r"^Invalid KVS operation 'nope'$"):
                await s.pool.rpc(addr(s), "KVS.Apply", {"Op": "nope", "DirEnt": {"Key": "k"}})
            with pytest.raises(RemoteError, match=r"^Invalid session operation 'x'$"):
                await s.pool.rpc(addr(s), "Session.Apply", {"Op": "x"})
            with pytest.raises(RemoteError, match="not a map"):
                await s.pool.rpc(addr(s), "KVS.Get", ["k"])
            # a blocking read over the port: MaxQueryTime in nanoseconds bounds the wait
            loop = asyncio.get_running_loop()
            started = loop.time()
            same = await s.pool.rpc(addr(s), "KVS.Get", {
                "Key": "k", "MinQueryIndex": reply["Index"], "MaxQueryTime": 200_000_000})
            assert same["Index"] == reply["Index"]
            assert 0.15 < loop.time() - started < 5

    run(main())


def test_blocking_health_and_catalog_reads_wake_on_registration() -> None:
    async def main() -> None:
        async with site() as s:
            first = await s.call(s.remote, "GET", "/v1/health/service/api")
            assert first.status == 200 and body_of(first) == []
            index = header(first, "X-Consul-Index")
            health = asyncio.ensure_future(
                s.call(s.remote, "GET", f"/v1/health/service/api?index={index}&wait=30s"))
            catalog = asyncio.ensure_future(
                s.call(s.remote, "GET", f"/v1/catalog/services?index={index}&wait=30s"))
            await asyncio.sleep(0.3)
            assert not health.done() and not catalog.done()
            await ok(s, "PUT", "/v1/catalog/register", {
                "Node": "api1", "Address": "10.0.0.9",
                "Service": {"Service": "api", "Port": 9000}})
            resp = await asyncio.wait_for(health, 10)
            assert [e["Service"]["ID"] for e in body_of(resp)] == ["api"]
            resp = await asyncio.wait_for(catalog, 10)
            assert "api" in body_of(resp)
            assert s.caller.calls["Health.ServiceNodes"] == 2
            assert s.caller.calls["Catalog.ListServices"] == 1

    run(main())


def test_coordinates_update_and_read_over_rpc() -> None:
    coord = {"Vec": [0.001] + [0.0] * 7, "Error": 0.5, "Adjustment": 0.0, "Height": 1.0e-5}

    async def main() -> None:
        async with site() as s:
            resp = await s.call(s.remote, "PUT", "/v1/coordinate/update",
                                {"Node": NODE, "Segment": "", "Coord": coord})
            assert (resp.status, resp.body) == (200, b"")
            assert s.server.coordinate.pending() == 1
            await s.server.coordinate.flush()
            assert await ok(s, "GET", "/v1/coordinate/nodes") == [
                {"Node": NODE, "Segment": "", "Coord": coord}]
            for path in ("/v1/coordinate/nodes", f"/v1/coordinate/node/{NODE}",
                         "/v1/coordinate/node/nope", "/v1/coordinate/datacenters"):
                remote = await s.call(s.remote, "GET", path)
                direct = await s.call(s.direct, "GET", path)
                assert (remote.status, remote.body, sorted(remote.headers)) == (
                    direct.status, direct.body, sorted(direct.headers)), path
            bad = {"Node": NODE, "Segment": "", "Coord": {**coord, "Vec": [0.0] * 3}}
            remote = await s.call(s.remote, "PUT", "/v1/coordinate/update", bad)
            direct = await s.call(s.direct, "PUT", "/v1/coordinate/update", bad)
            assert (remote.status, remote.body) == (direct.status, direct.body)
            assert remote.status == 500

    run(main())


def test_snapshot_save_and_restore_over_rpc() -> None:
    async def main() -> None:
        async with site() as s:
            await ok(s, "PUT", "/v1/kv/snap", b"before")
            saved = await s.call(s.remote, "GET", "/v1/snapshot")
            assert saved.status == 200 and len(saved.body) > 0
            assert int(header(saved, "X-Consul-Index") or 0) > 0
            await ok(s, "PUT", "/v1/kv/snap", b"after")
            restored = await s.call(s.remote, "PUT", "/v1/snapshot", saved.body)
            assert restored.status == 200, restored.body
            [entry] = await ok(s, "GET", "/v1/kv/snap")
            assert base64.b64decode(entry["Value"]) == b"before"
            broken = await s.call(s.remote, "PUT", "/v1/snapshot", b"not an archive")
            direct = await s.call(s.direct, "PUT", "/v1/snapshot", b"not an archive")
            assert (broken.status, broken.body) == (direct.status, direct.body)
            assert broken.status == 500

    run(main())


def test_status_is_asked_per_call_and_views_report_lost_servers() -> None:
    async def main() -> None:
        async with site(hold_timeout=0.2) as s:
            leader = await s.call(s.remote, "GET", "/v1/status/leader")
            assert body_of(leader) == "127.0.0.1:8300"
            calls = s.caller.calls["Status.Leader"]
            await s.call(s.remote, "GET", "/v1/status/leader")
            assert s.caller.calls["Status.Leader"] == calls + 1
            calls = s.caller.calls["Catalog.ListDatacenters"]
            await s.backend.view.refresh("Catalog.ListDatacenters")
            assert s.caller.calls["Catalog.ListDatacenters"] > calls
            await s.rpc_server.stop()
            await s.pool.shutdown()
            # with the server gone the status call fails at once
            resp = await s.call(s.remote, "GET", "/v1/status/leader")
            assert resp.status == 500 and resp.body.startswith(b"rpc error")
            # the datacenter view serves the answer in hand once more while a refresh runs;
            # once the refresh has failed, the failure is what callers get
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while True:
                resp = await s.call(s.remote, "GET", "/v1/catalog/datacenters")
                if resp.status != 200:
                    break
                assert loop.time() < deadline, "the view never noticed the lost server"
                await asyncio.sleep(0.05)
            assert resp.status == 500 and resp.body.startswith(b"rpc error")

    run(main())

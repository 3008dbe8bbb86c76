"""The /v1 API served through a server's RPC port (a client agent's path) against the same API on
the server's endpoint objects: a real RPCServer on 127.0.0.1 in front of a real single-voter
server, the RPC backend calling it through ConnPool and ClientRPC."""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Any

from proconsul.errors import NoLeader
from proconsul.http.request import Response
from tests.rpc.endpoint_support import NODE, Site, body_of, header, run, site

WEB1 = {
    "Node": "web1", "Address": "10.0.0.2", "NodeMeta": {"rack": "r1"},
    "Service": {"ID": "web-1", "Service": "web", "Tags": ["v1"], "Port": 80},
    "Checks": [
        {"CheckID": "web-alive", "Name": "web alive", "Status": "passing",
         "ServiceID": "web-1"},
        {"CheckID": "disk", "Name": "disk", "Status": "warning"},
    ],
}
WEB2 = {
    "Node": "web2", "Address": "10.0.0.3",
    "Service": {"ID": "web-2", "Service": "web", "Tags": ["v2"], "Port": 81},
    "Check": {"CheckID": "web2-alive", "Name": "web2 alive", "Status": "critical",
              "ServiceID": "web-2"},
}


async def ok(s: Site, method: str, target: str, body: Any = None) -> Any:
    resp = await s.call(s.remote, method, target, body)
    assert resp.status == 200, (method, target, resp.status, resp.body)
    return body_of(resp) if resp.body else None


def test_kv_put_get_list_keys_cas_delete() -> None:
    async def main() -> None:
        async with site() as s:
            assert await ok(s, "PUT", "/v1/kv/app/a?flags=7", b"one") is True
            assert await ok(s, "PUT", "/v1/kv/app/b/c", b"two") is True
            [entry] = await ok(s, "GET", "/v1/kv/app/a")
            assert entry["Key"] == "app/a" and entry["Flags"] == 7
            assert base64.b64decode(entry["Value"]) == b"one"
            raw = await s.call(s.remote, "GET", "/v1/kv/app/a?raw")
            assert (raw.status, raw.body) == (200, b"one")
            listed = await ok(s, "GET", "/v1/kv/app/?recurse")
            assert [e["Key"] for e in listed] == ["app/a", "app/b/c"]
            assert await ok(s, "GET", "/v1/kv/app/?keys&separator=/") == ["app/a", "app/b/"]
            # check-and-set: a stale index is refused, the current one applies
            stale = entry["ModifyIndex"] - 1
            assert await ok(s, "PUT", f"/v1/kv/app/a?cas={stale}", b"x") is False
            assert await ok(s, "PUT", f"/v1/kv/app/a?cas={entry['ModifyIndex']}", b"3") is True
            assert await ok(s, "PUT", "/v1/kv/app/new?cas=0", b"n") is True
            assert await ok(s, "PUT", "/v1/kv/app/new?cas=0", b"n") is False
            [after] = await ok(s, "GET", "/v1/kv/app/a")
            assert await ok(s, "DELETE", f"/v1/kv/app/a?cas={stale}") is False
            assert await ok(s, "DELETE", f"/v1/kv/app/a?cas={after['ModifyIndex']}") is True
            missing = await s.call(s.remote, "GET", "/v1/kv/app/a")
            assert (missing.status, missing.body) == (404, b"")
            assert int(header(missing, "X-Consul-Index") or 0) > after["ModifyIndex"]
            assert await ok(s, "DELETE", "/v1/kv/app?recurse") is True
            gone = await s.call(s.remote, "GET", "/v1/kv/app/?recurse")
            assert gone.status == 404

    run(main())


def test_catalog_register_reads_and_deregister() -> None:
    async def main() -> None:
        async with site() as s:
            assert await ok(s, "PUT", "/v1/catalog/register", WEB1) is True
            assert await ok(s, "PUT", "/v1/catalog/register", WEB2) is True
            assert await ok(s, "GET", "/v1/catalog/datacenters") == ["dc1"]
            nodes = await ok(s, "GET", "/v1/catalog/nodes")
            assert [n["Node"] for n in nodes] == [NODE, "web1", "web2"]
            assert nodes[1]["Meta"] == {"rack": "r1"} and nodes[1]["CreateIndex"] > 0
            assert await ok(s, "GET", "/v1/catalog/nodes?node-meta=rack:r1") == [nodes[1]]
            services = await ok(s, "GET", "/v1/catalog/services")
            assert services == {"consul": [], "web": ["v1", "v2"]}
            web = await ok(s, "GET", "/v1/catalog/service/web")
            assert [(w["Node"], w["ServiceID"], w["ServicePort"]) for w in web] == [
                ("web1", "web-1", 80), ("web2", "web-2", 81)]
            assert all(w["ModifyIndex"] > 0 for w in web)
            tagged = await ok(s, "GET", "/v1/catalog/service/web?tag=v2")
            assert [w["Node"] for w in tagged] == ["web2"]
            node = await ok(s, "GET", "/v1/catalog/node/web1")
            assert node["Node"]["Address"] == "10.0.0.2" and list(node["Services"]) == ["web-1"]
            assert await ok(s, "GET", "/v1/catalog/node/nope") is None
            ns = await ok(s, "GET", "/v1/catalog/node-services/web2")
            assert [x["ID"] for x in ns["Services"]] == ["web-2"]
            filtered = await ok(s, "GET", '/v1/catalog/services?filter=ServiceTags contains "v2"')
            assert filtered == {"web": ["v2"]}
            assert await ok(s, "PUT", "/v1/catalog/deregister", {"Node": "web2"}) is True
            nodes = await ok(s, "GET", "/v1/catalog/nodes")
            assert [n["Node"] for n in nodes] == [NODE, "web1"]
            bad = await s.call(s.remote, "PUT", "/v1/catalog/register", {"Node": "x"})
            direct = await s.call(s.direct, "PUT", "/v1/catalog/register", {"Node": "x"})
            assert (bad.status, bad.body) == (direct.status, direct.body)
            assert bad.status == 500 and bad.body == (
                b"Must provide address if SkipNodeUpdate is not set")

    run(main())


def test_health_reads() -> None:
    async def main() -> None:
        async with site() as s:
            await ok(s, "PUT", "/v1/catalog/register", WEB1)
            await ok(s, "PUT", "/v1/catalog/register", WEB2)
            checks = await ok(s, "GET", "/v1/health/node/web1")
            assert sorted(c["CheckID"] for c in checks) == ["disk", "web-alive"]
            by_service = await ok(s, "GET", "/v1/health/checks/web")
            assert sorted(c["CheckID"] for c in by_service) == ["web-alive", "web2-alive"]
            critical = await ok(s, "GET", "/v1/health/state/critical")
            assert [c["CheckID"] for c in critical] == ["web2-alive"]
            entries = await ok(s, "GET", "/v1/health/service/web")
            assert [e["Node"]["Node"] for e in entries] == ["web1", "web2"]
            assert [len(e["Checks"]) for e in entries] == [2, 1]
            assert entries[0]["Service"]["ModifyIndex"] > 0
            # ?passing is applied on the server: web1 has a warning check, web2 a critical one
            assert await ok(s, "GET", "/v1/health/service/web?passing") == []
            resp = await s.call(s.remote, "GET", "/v1/health/service/web")
            assert header(resp, "X-Consul-Effective-Consistency") == "leader"
            assert header(resp, "X-Consul-Knownleader") == "true"

    run(main())


def test_sessions_create_info_renew_destroy() -> None:
    async def main() -> None:
        async with site() as s:
            created = await ok(s, "PUT", "/v1/session/create",
                               {"Name": "lock", "TTL": "30s", "Behavior": "delete"})
            sid = created["ID"]
            [info] = await ok(s, "GET", f"/v1/session/info/{sid}")
            assert (info["Node"], info["Name"], info["TTL"], info["Behavior"]) == (
                NODE, "lock", "30s", "delete")
            assert info["CreateIndex"] > 0 and info["NodeChecks"] == ["serfHealth"]
            assert [x["ID"] for x in await ok(s, "GET", "/v1/session/list")] == [sid]
            assert [x["ID"] for x in await ok(s, "GET", f"/v1/session/node/{NODE}")] == [sid]
            [renewed] = await ok(s, "PUT", f"/v1/session/renew/{sid}")
            assert renewed["ID"] == sid
            assert await ok(s, "PUT", f"/v1/kv/locked?acquire={sid}", b"v") is True
            [held] = await ok(s, "GET", "/v1/kv/locked")
            assert held["Session"] == sid and held["LockIndex"] == 1
            assert await ok(s, "PUT", f"/v1/session/destroy/{sid}") is True
            assert await ok(s, "GET", f"/v1/session/info/{sid}") == []
            # behavior "delete": the held key went with the session
            assert (await s.call(s.remote, "GET", "/v1/kv/locked")).status == 404
            unknown = "00000000-0000-4000-8000-000000000000"
            for app in (s.remote, s.direct):
                resp = await s.call(app, "PUT", f"/v1/session/renew/{unknown}")
                assert (resp.status, resp.body) == (
                    404, f"Session id '{unknown}' not found".encode())
            bad = await s.call(s.remote, "PUT", "/v1/session/create", {"TTL": "1s"})
            direct = await s.call(s.direct, "PUT", "/v1/session/create", {"TTL": "1s"})
            assert (bad.status, bad.body) == (direct.status, direct.body)
            assert bad.status == 500 and bad.body.startswith(b"Invalid Session TTL")

    run(main())


def test_txn_apply_rollback_and_read() -> None:
    async def main() -> None:
        async with site() as s:
            ops = [{"KV": {"Verb": "set", "Key": "t/a", "Value": "MQ=="}},
                   {"KV": {"Verb": "set", "Key": "t/b", "Value": "Mg=="}}]
            done = await ok(s, "PUT", "/v1/txn", ops)
            assert [r["KV"]["Key"] for r in done["Results"]] == ["t/a", "t/b"]
            assert done["Errors"] is None
            failed = await s.call(s.remote, "PUT", "/v1/txn", [
                {"KV": {"Verb": "set", "Key": "t/c", "Value": "Mw=="}},
                {"KV": {"Verb": "check-not-exists", "Key": "t/a"}}])
            assert failed.status == 409
            assert body_of(failed) == {"Results": None,
                                       "Errors": [{"OpIndex": 1, "What": 'key "t/a" exists'}]}
            read = await s.call(s.remote, "PUT", "/v1/txn", [
                {"KV": {"Verb": "get", "Key": "t/a"}}, {"KV": {"Verb": "get", "Key": "t/c"}}])
            assert read.status == 409
            assert body_of(read)["Errors"] == [{"OpIndex": 1, "What": 'key "t/c" doesn\'t exist'}]
            good = await ok(s, "PUT", "/v1/txn", [{"KV": {"Verb": "get", "Key": "t/b"}}])
            assert base64.b64decode(good["Results"][0]["KV"]["Value"]) == b"2"
            # a read-only transaction carries its query metadata in the body
            assert good["Index"] >= done["Results"][1]["KV"]["ModifyIndex"]
            assert good["KnownLeader"] is True

    run(main())


def test_status_leader_peers_and_raft_configuration() -> None:
    async def main() -> None:
        async with site() as s:
            for path in ("/v1/status/leader", "/v1/status/peers",
                         "/v1/operator/raft/configuration"):
                remote = await s.call(s.remote, "GET", path)
                direct = await s.call(s.direct, "GET", path)
                assert (remote.status, remote.body) == (direct.status, direct.body), path
            assert body_of(await s.call(s.remote, "GET", "/v1/status/leader")) == \
                "127.0.0.1:8300"

    run(main())


def test_blocking_get_blocks_on_the_server_and_wakes_on_a_write() -> None:
    async def main() -> None:
        async with site() as s:
            await ok(s, "PUT", "/v1/kv/watched", b"1")
            first = await s.call(s.remote, "GET", "/v1/kv/watched")
            index = int(header(first, "X-Consul-Index") or 0)
            calls_before = s.caller.calls["KVS.Get"]
            blocked = asyncio.ensure_future(
                s.call(s.remote, "GET", f"/v1/kv/watched?index={index}&wait=30s"))
            await asyncio.sleep(0.3)
            assert not blocked.done()
            # a write to another key does not wake it
            await ok(s, "PUT", "/v1/kv/other", b"x")
            await asyncio.sleep(0.2)
            assert not blocked.done()
            await ok(s, "PUT", "/v1/kv/watched", b"2")
            resp = await asyncio.wait_for(blocked, 10)
            assert resp.status == 200
            assert int(header(resp, "X-Consul-Index") or 0) > index
            assert base64.b64decode(body_of(resp)[0]["Value"]) == b"2"
            # one call, answered when the write landed: the client did not poll
            assert s.caller.calls["KVS.Get"] - calls_before == 1

    run(main())


def test_blocking_wait_times_out_with_the_same_index() -> None:
    async def main() -> None:
        async with site() as s:
            await ok(s, "PUT", "/v1/kv/quiet", b"1")
            first = await s.call(s.remote, "GET", "/v1/kv/quiet")
            index = header(first, "X-Consul-Index")
            resp = await asyncio.wait_for(
                s.call(s.remote, "GET", f"/v1/kv/quiet?index={index}&wait=200ms"), 10)
            assert resp.status == 200 and header(resp, "X-Consul-Index") == index

    run(main())


def test_errors_keep_their_status_and_text() -> None:
    async def main() -> None:
        async with site(hold_timeout=0.3) as s:
            await ok(s, "PUT", "/v1/catalog/register", WEB1)
            for target in ("/v1/kv/k?acquire=not-a-session", "/v1/kv/k?release=nope"):
                remote = await s.call(s.remote, "PUT", target, b"v")
                direct = await s.call(s.direct, "PUT", target, b"v")
                assert (remote.status, remote.body) == (direct.status, direct.body), target
            bad = await s.call(s.remote, "PUT", "/v1/kv/k?acquire=not-a-session", b"v")
            assert (bad.status, bad.body) == (
                500, b'raft apply failed: invalid session "not-a-session"')
            bad_filter = "/v1/catalog/nodes?filter=Node ==="
            remote = await s.call(s.remote, "GET", bad_filter)
            direct = await s.call(s.direct, "GET", bad_filter)
            assert (remote.status, remote.body) == (direct.status, direct.body)
            # a server without a leader: the client retries within its hold timeout, then
            # answers as a leaderless server does
            async def leaderless(_args: Any) -> Any:
                raise NoLeader()

            s.rpc_server.register("KVS.Get", leaderless)
            resp = await s.call(s.remote, "GET", "/v1/kv/k")
            assert (resp.status, resp.body) == (500, b"No cluster leader")
            assert s.caller.calls["KVS.Get"] == 1

    run(main())


#: One request sequence for the comparison test; `{s0}` is the first session created.
SEQUENCE: list[tuple[str, str, Any]] = [
    ("PUT", "/v1/catalog/register", WEB1),
    ("PUT", "/v1/catalog/register", WEB2),
    ("PUT", "/v1/kv/cfg/a?flags=3", b"alpha"),
    ("PUT", "/v1/kv/cfg/b/c", b"beta"),
    ("GET", "/v1/kv/cfg/a", None),
    ("GET", "/v1/kv/cfg/?recurse", None),
    ("GET", "/v1/kv/cfg/?keys&separator=/", None),
    ("GET", "/v1/kv/cfg/missing", None),
    ("PUT", "/v1/kv/cfg/a?cas=1", b"no"),
    ("GET", "/v1/kv/cfg/a?raw", None),
    ("PUT", "/v1/session/create", {"Name": "s", "TTL": "20s"}),
    ("GET", "/v1/session/info/{s0}", None),
    ("GET", "/v1/session/list", None),
    ("GET", f"/v1/session/node/{NODE}", None),
    ("PUT", "/v1/session/renew/{s0}", None),
    ("PUT", "/v1/kv/lock?acquire={s0}", b"held"),
    ("GET", "/v1/kv/lock", None),
    ("PUT", "/v1/kv/lock?acquire=bogus", b"x"),
    ("PUT", "/v1/kv/lock?release={s0}", b"held"),
    ("PUT", "/v1/session/destroy/{s0}", None),
    ("GET", "/v1/catalog/nodes", None),
    ("GET", "/v1/catalog/nodes?near=_agent", None),
    ("GET", "/v1/catalog/services", None),
    ("GET", "/v1/catalog/service/web?tag=v1", None),
    ("GET", "/v1/catalog/node/web1", None),
    ("GET", "/v1/catalog/node-services/web2", None),
    ("GET", "/v1/catalog/datacenters", None),
    ("GET", "/v1/health/node/web1", None),
    ("GET", "/v1/health/checks/web", None),
    ("GET", "/v1/health/state/any", None),
    ("GET", "/v1/health/service/web", None),
    ("GET", "/v1/health/service/web?passing", None),
    ("GET", "/v1/health/connect/web", None),
    ("PUT", "/v1/txn", [{"KV": {"Verb": "set", "Key": "t", "Value": "dA=="}},
                        {"KV": {"Verb": "get", "Key": "cfg/a"}}]),
    ("PUT", "/v1/txn", [{"KV": {"Verb": "check-not-exists", "Key": "t"}}]),
    ("GET", "/v1/status/leader", None),
    ("GET", "/v1/status/peers", None),
    ("GET", "/v1/coordinate/nodes", None),
    ("GET", "/v1/coordinate/node/web1", None),
    ("GET", "/v1/coordinate/datacenters", None),
    ("PUT", "/v1/catalog/deregister", {"Node": "web2"}),
    ("GET", "/v1/health/service/web", None),
    ("DELETE", "/v1/kv/cfg?recurse", None),
    ("GET", "/v1/kv/cfg/?recurse", None),
    ("GET", "/v1/kv/?dc=dc2", None),
    ("GET", "/v1/kv/cfg/a?stale", None),
    ("GET", "/v1/catalog/nodes?consistent", None),
]


async def play(s: Site, remote: bool) -> list[tuple[int, bytes, list[tuple[str, str]]]]:
    """The responses to SEQUENCE, session IDs replaced by their placeholders."""
    app = s.remote if remote else s.direct
    sessions: list[str] = []
    out = []
    for method, target, body in SEQUENCE:
        for i, sid in enumerate(sessions):
            target = target.replace(f"{{s{i}}}", sid)
        resp: Response = await s.call(app, method, target, body)
        if target == "/v1/session/create" and resp.status == 200:
            sessions.append(body_of(resp)["ID"])
        text = resp.body
        for i, sid in enumerate(sessions):
            text = text.replace(sid.encode(), b"{s%d}" % i)
        out.append((resp.status, text, sorted(resp.headers)))
    return out


def test_same_requests_same_answers_direct_and_over_rpc() -> None:
    async def main() -> None:
        async with site() as direct_site, site() as rpc_site:
            direct = await play(direct_site, remote=False)
            remote = await play(rpc_site, remote=True)
        assert len(direct) == len(remote) == len(SEQUENCE)
        for (method, target, _), d, r in zip(SEQUENCE, direct, remote, strict=True):
            assert r == d, (method, target)
        # the sequence does reach the cases it means to compare
        statuses = [status for status, _, _ in direct]
        assert {200, 404, 409, 500} <= set(statuses)
        assert any(re.search(rb'invalid session "bogus"', body) for _, body, _ in direct)

    run(main())

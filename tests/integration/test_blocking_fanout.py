"""Blocking queries wake only when their own answer may have changed.

1,000 blocking GETs on 1,000 distinct keys are held open at once against a real agent; a write
to one key must wake exactly that one. A blocking prefix query wakes on a write under the
prefix and not on a write outside it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from tests.support import AgentProcess

N = 1000


@pytest.fixture(scope="module")
def big_agent(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    workdir: Path = tmp_path_factory.mktemp("fanout")
    proc = AgentProcess(workdir, ["-hcl", "limits { http_max_conns_per_client = 4000 }"])
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


async def _watch_channels(session: aiohttp.ClientSession, base: str) -> float:
    async with session.get(f"{base}/v1/agent/metrics") as r:
        body = json.loads(await r.read())
    for g in body["Gauges"]:
        if g["Name"] == "consul.state.watch_channels":
            return float(g["Value"])
    return 0.0


def test_one_write_wakes_exactly_one_of_1000(big_agent: AgentProcess) -> None:
    base = big_agent.url

    async def main() -> None:
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn) as s:
            # create the keys so every GET blocks on an existing entry's index
            sem = asyncio.Semaphore(64)

            async def put(i: int, value: str) -> None:
                async with sem, s.put(f"{base}/v1/kv/fan/{i:04d}", data=value) as r:
                    assert r.status == 200

            await asyncio.gather(*(put(i, "v0") for i in range(N)))
            async with s.get(f"{base}/v1/kv/fan/?recurse") as r:
                entries = {e["Key"]: e["ModifyIndex"] for e in json.loads(await r.read())}

            async def blocking_get(i: int) -> tuple[int, str]:
                key = f"fan/{i:04d}"
                url = f"{base}/v1/kv/{key}?index={entries[key]}&wait=60s"
                async with s.get(url) as r:
                    body = json.loads(await r.read())
                    return i, body[0]["Value"]

            tasks = [asyncio.ensure_future(blocking_get(i)) for i in range(N)]
            deadline = asyncio.get_running_loop().time() + 30
            while await _watch_channels(s, base) < N:
                assert asyncio.get_running_loop().time() < deadline, "queries never blocked"
                await asyncio.sleep(0.2)
            assert not any(t.done() for t in tasks)

            await put(500, "changed")
            await asyncio.wait(tasks, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            await asyncio.sleep(1.0)  # give any wrongly woken query time to come back
            done = {t for t in tasks if t.done()}
            assert [t.result()[0] for t in done] == [500]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def test_prefix_query_wakes_inside_not_outside(big_agent: AgentProcess) -> None:
    base = big_agent.url

    async def main() -> None:
        async with aiohttp.ClientSession() as s:
            async with s.put(f"{base}/v1/kv/app/config/a", data="1") as r:
                assert r.status == 200
            async with s.get(f"{base}/v1/kv/app/config/?recurse") as r:
                index = r.headers["X-Consul-Index"]
            url = f"{base}/v1/kv/app/config/?recurse&index={index}&wait=30s"
            waiter = asyncio.ensure_future(s.get(url))
            await asyncio.sleep(0.3)
            async with s.put(f"{base}/v1/kv/app/other", data="x") as r:
                assert r.status == 200
            async with s.put(f"{base}/v1/kv/app/configx", data="x") as r:
                assert r.status == 200
            await asyncio.sleep(0.5)
            assert not waiter.done()
            async with s.put(f"{base}/v1/kv/app/config/b/c", data="2") as r:
                assert r.status == 200
            resp = await asyncio.wait_for(waiter, 10)
            keys = [e["Key"] for e in json.loads(await resp.read())]
            assert keys == ["app/config/a", "app/config/b/c"]
            assert int(resp.headers["X-Consul-Index"]) > int(index)
            resp.release()

    asyncio.run(main())

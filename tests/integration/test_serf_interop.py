"""Our Serf node and real `serf` 0.9.4 agents in one pool on 127.0.0.1.

Each test starts three real serf agents (free ports, killed by PID) and one of our nodes on
real UDP/TCP sockets in this process, and checks both views: `serf members` lists ours with its
tags and ours lists them; user events cross both ways; a serf query is acked and answered by
ours; a killed serf agent is marked failed by ours and our silent node by serf; graceful leaves
are `left` both ways. The encrypted variant runs the same pool with a gossip key and follows a
key rotation done with `serf keys`. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from proconsul.gossip.config import default_lan
from proconsul.gossip.keyring import Keyring
from proconsul.gossip.net_transport import NetTransport
from proconsul.gossip.serf.config import SerfConfig, UserEventRecord
from proconsul.gossip.serf.query import QueryEvent, QueryParam
from proconsul.gossip.serf.serf import Serf, SerfEvent
from tests.support import free_dual_port, free_port

pytestmark = pytest.mark.skipif(shutil.which("serf") is None, reason="serf not installed")

KEY1 = base64.b64encode(bytes(range(32))).decode()
KEY2 = base64.b64encode(bytes(range(32, 64))).decode()


@dataclass
class SerfAgent:
    name: str
    gossip: int
    rpc: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.gossip}"

    async def cli(self, *args: str, timeout: float = 20.0) -> str:
        proc = await asyncio.create_subprocess_exec(
            "serf", args[0], f"-rpc-addr=127.0.0.1:{self.rpc}", *args[1:],
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        text = out.decode()
        assert proc.returncode == 0, f"serf {' '.join(args)}: {text}"
        return text

    async def members(self) -> dict[str, tuple[str, str]]:
        """name -> (status, tags) from `serf members`."""
        out = await self.cli("members")
        found: dict[str, tuple[str, str]] = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 3:
                found[parts[0]] = (parts[2], parts[3] if len(parts) > 3 else "")
        return found


@dataclass
class Pool:
    agents: list[SerfAgent]
    ours: Serf
    events: list[SerfEvent] = field(default_factory=list)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0,
                     what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if await check():
            return
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.1)


def start_agent(name: str, workdir: Path, encrypt: str | None) -> SerfAgent:
    gossip, rpc = free_dual_port(), free_port()
    log = workdir / f"serf-{name}.log"
    args = ["serf", "agent", f"-node={name}", f"-bind=127.0.0.1:{gossip}",
            f"-rpc-addr=127.0.0.1:{rpc}", "-tag", "role=serf", "-log-level=debug",
            "-event-handler", f'query:uptime=echo "uptime-ok {name}"']
    if encrypt:
        args.append(f"-encrypt={encrypt}")
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    return SerfAgent(name, gossip, rpc, proc, log)


@asynccontextmanager
async def pool(workdir: Path, encrypt: str | None = None) -> AsyncIterator[Pool]:
    agents = [start_agent(n, workdir, encrypt) for n in ("s1", "s2", "s3")]
    ours: Serf | None = None
    try:
        for agent in agents:
            await eventually(lambda a=agent: _rpc_up(a), 10, f"{agent.name} RPC")
        for agent in agents[1:]:
            await agent.cli("join", agents[0].addr)
        transport = NetTransport("127.0.0.1", free_dual_port())
        await transport.listen()
        keyring = Keyring.from_base64([encrypt]) if encrypt else None
        config = SerfConfig("py1", {"role": "py", "dc": "dc1"}, protocol_version=5,
                            memberlist=replace(default_lan(), bind_port=0))
        events: list[SerfEvent] = []
        ours = Serf(config, transport, events.append, keyring=keyring)
        await ours.start()
        p = Pool(agents, ours, events)
        yield p
    finally:
        if ours is not None:
            await ours.shutdown()
        for agent in agents:
            if agent.proc.poll() is None:
                agent.proc.kill()
            agent.proc.wait(timeout=10)


async def _rpc_up(agent: SerfAgent) -> bool:
    try:
        await agent.cli("members", timeout=5)
    except AssertionError:
        return False
    return True


def our_status(ours: Serf, name: str) -> str:
    member = ours.members.get(name)
    return member.status_name if member else "none"


async def exercise(p: Pool) -> None:
    """The whole interop scenario; run plain and encrypted."""
    ours = p.ours
    s1, s2, s3 = p.agents
    assert await ours.join([s1.addr]) == 1

    async def all_see_four() -> bool:
        views = [await a.members() for a in p.agents]
        ok = all(v.get("py1", ("",))[0] == "alive" and len(v) == 4 for v in views)
        return ok and all(our_status(ours, a.name) == "alive" for a in p.agents)

    await eventually(all_see_four, what="four alive members everywhere")
    view = await s2.members()
    assert set(view["py1"][1].split(",")) == {"role=py", "dc=dc1"}
    assert ours.members["s3"].tags == {"role": "serf"}

    # user events both ways
    await s1.cli("event", "deploy", "v1")
    ours.user_event("fromus", b"hello", coalesce=False)

    async def got_deploy() -> bool:
        return any(isinstance(e, UserEventRecord) and e.name == "deploy" and e.payload == b"v1"
                   for e in p.events)

    await eventually(got_deploy, what="serf's event at ours")

    async def serf_got_ours() -> bool:
        return all("user-event: fromus" in a.log.read_text() for a in p.agents)

    await eventually(serf_got_ours, what="our event at every serf agent")

    # a serf query: acked and answered by ours (and by the serf agents' handlers)
    def answer(event: SerfEvent) -> None:
        if isinstance(event, QueryEvent) and event.name == "uptime":
            event.respond(b"uptime-ok py1\n")

    ours.on_event = lambda e: (p.events.append(e), answer(e))[0]
    out = await s1.cli("query", "-timeout=3s", "uptime")
    assert "Ack from 'py1'" in out, out
    assert "Response from 'py1': uptime-ok py1" in out, out

    # and a query from ours is acked and answered by the serf agents
    collector = ours.query("uptime", b"", QueryParam(request_ack=True, timeout=3.0))
    acks: set[str] = set()
    answers: dict[str, bytes] = {}
    while (ack := await collector.acks.get()) is not None:
        acks.add(ack)
    while (resp := await collector.responses.get()) is not None:
        answers[resp.from_] = resp.payload
    assert {"s1", "s2", "s3"} <= acks
    assert answers.get("s2", b"").startswith(b"uptime-ok s2")

    # a serf agent killed with SIGKILL is marked failed by ours
    s3.proc.kill()
    s3.proc.wait(timeout=10)

    async def s3_failed() -> bool:
        return our_status(ours, "s3") == "failed"

    await eventually(s3_failed, timeout=30, what="s3 failed at ours")

    # a graceful serf leave is seen as left by ours
    await s2.cli("leave")

    async def s2_left() -> bool:
        return our_status(ours, "s2") == "left"

    await eventually(s2_left, 60, what="s2 left at ours")

    # and our graceful leave is seen as left by serf
    await ours.leave()

    async def py1_left() -> bool:
        return (await s1.members()).get("py1", ("",))[0] == "left"

    await eventually(py1_left, 60, what="py1 left at s1")


def test_interop_plain(tmp_path: Path) -> None:
    async def main() -> None:
        async with pool(tmp_path) as p:
            await exercise(p)

    asyncio.run(asyncio.wait_for(main(), 150))


def test_interop_encrypted_with_key_rotation(tmp_path: Path) -> None:
    async def main() -> None:
        async with pool(tmp_path, encrypt=KEY1) as p:
            ours = p.ours
            await ours.join([p.agents[0].addr])

            async def all_see_four() -> bool:
                views = [await a.members() for a in p.agents]
                return all(len(v) == 4 for v in views) and len(ours.members) == 4

            await eventually(all_see_four, what="encrypted pool of four")
            s1 = p.agents[0]
            out = await s1.cli("keys", "-install", KEY2)
            assert "0/4" not in out
            keyring = ours.memberlist.keyring
            assert keyring is not None
            assert base64.b64decode(KEY2) in keyring.keys
            await s1.cli("keys", "-use", KEY2)
            assert keyring.primary_key == base64.b64decode(KEY2)
            await s1.cli("keys", "-remove", KEY1)
            assert keyring.keys == [base64.b64decode(KEY2)]
            listed = await s1.cli("keys", "-list")
            assert KEY2 in listed and "[4/4]" in listed, listed
            # the pool still works on the new key: an event from serf reaches ours
            await s1.cli("event", "after-rotation", "ok")

            async def got_it() -> bool:
                return any(isinstance(e, UserEventRecord) and e.name == "after-rotation"
                           for e in p.events)

            await eventually(got_it, what="event after the rotation")
            # a killed serf agent is still detected over the rotated key
            p.agents[2].proc.kill()
            p.agents[2].proc.wait(timeout=10)

            async def failed() -> bool:
                return our_status(ours, "s3") == "failed"

            await eventually(failed, timeout=30, what="s3 failed at ours")

    asyncio.run(asyncio.wait_for(main(), 150))


def test_serf_detects_our_node_failing(tmp_path: Path) -> None:
    async def main() -> None:
        async with pool(tmp_path) as p:
            ours = p.ours
            await ours.join([p.agents[0].addr])

            async def four() -> bool:
                return (await p.agents[1].members()).get("py1", ("",))[0] == "alive"

            await eventually(four, what="py1 alive at s2")
            # stop answering without a leave: serf must declare us failed
            await ours.memberlist.shutdown()

            async def failed() -> bool:
                views = [await a.members() for a in p.agents]
                return all(v.get("py1", ("",))[0] == "failed" for v in views)

            await eventually(failed, timeout=30, what="py1 failed at every serf agent")

    asyncio.run(asyncio.wait_for(main(), 120))

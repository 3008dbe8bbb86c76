"""One worker process of bench/gossip_cluster.py: many of our Serf nodes on one event loop.

    python bench/gossip_nodes.py --count M --first I --total N [--prefix ours-] [--loop uvloop]

Starts M `Serf` members (src/proconsul/gossip/serf/serf.py) named `<prefix><I..I+M-1>`, each on
its own `NetTransport` (a real UDP socket and TCP listener on 127.0.0.1, free port), with
Consul's LAN pool settings (`consul_pool` over `consul_lan`: memberlist's LAN timings), no tags,
coordinates on, no snapshot, no encryption — what a `serf agent` runs by default. They start
unjoined; the orchestrator drives them through JSON lines on stdin:

    {"cmd": "join", "seed": "127.0.0.1:PORT", "node": A}  A joins the seed
    {"cmd": "kill", "node": A}                   close A hard: no leave, sockets shut
    {"cmd": "stats"}                             per-node member counts, log-message counts
    {"cmd": "profile", "seconds": S, "path": P}  cProfile the worker for S seconds into P
    {"cmd": "stop"}                              shut every node down and exit

and reads what the nodes see as JSON lines on stdout, each stamped with `time.monotonic()`
(one clock for every process on the machine):

    {"ev": "ready", "pid": P, "nodes": [[name, port], ...]}
    {"ev": "joined", "t": T, "node": A, "error": TEXT}    A's join returned ("" or why not)
    {"ev": "converged", "t": T, "node": A}                A sees all N members alive
    {"ev": "failed", "t": T, "node": A, "member": B}      A marks B failed (serf event)
    {"ev": "suspect", "t": T, "node": A, "member": B}     A's own probe of B failed
    {"ev": "refute", "t": T, "node": A}                   A refuted a suspicion of itself
    {"ev": "killed", "t": T, "node": A}
    {"ev": "stats", ...} and {"ev": "profiled", "path": P}

"suspect" and "refute" are taken where memberlist logs "Suspect %s has failed, no acks received"
and "Refuting a suspect message", the same lines a serf agent prints at INFO and WARN, so both
sides count the same thing. Only those and the member events are reported; nothing is polled,
so an idle worker spends its CPU on gossip alone.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import json
import logging
import os
import resource
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from proconsul.gossip.config import consul_lan
from proconsul.gossip.net_transport import NetTransport
from proconsul.gossip.serf.config import consul_pool
from proconsul.gossip.serf.events import EventType, MemberEvent
from proconsul.gossip.serf.serf import Serf, SerfEvent

SUSPECT_FORMAT = "memberlist: Suspect %s has failed, no acks received"
REFUTE_PREFIX = "memberlist: Refuting a suspect message"

Emit = Callable[[dict[str, Any]], None]
#: the first message logged with each counted format, for the report
EXAMPLES: dict[str, str] = {}


def emit_line(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class WatchedLogger(logging.Logger):
    """A node's own logger: reports the suspicion and refutation lines and counts the other
    warnings and errors by message format instead of printing them (a join storm can log the
    same warning thousands of times, and printing it would be the worker's main cost)."""

    def __init__(self, name: str, node: str, emit: Emit,
                 counts: collections.Counter[str]) -> None:
        super().__init__(name, logging.INFO)
        self.propagate = False
        self.node = node
        self.emit = emit
        self.counts = counts

    def _log(self, level: int, msg: object, args: Any, *more: Any, **kwargs: Any) -> None:
        if msg == SUSPECT_FORMAT and args:
            self.emit({"ev": "suspect", "t": time.monotonic(), "node": self.node,
                       "member": str(args[0])})
        elif isinstance(msg, str) and msg.startswith(REFUTE_PREFIX):
            self.emit({"ev": "refute", "t": time.monotonic(), "node": self.node})
        if level >= logging.WARNING:
            key = str(msg)
            self.counts[key] += 1
            if key not in EXAMPLES:
                try:
                    EXAMPLES[key] = key % args if args else key
                except (TypeError, ValueError):
                    EXAMPLES[key] = key


class Node:
    """One Serf member and what it has seen: the members it holds alive, and whether it has
    reported seeing all of them."""

    def __init__(self, name: str, total: int, emit: Emit,
                 counts: collections.Counter[str]) -> None:
        self.name = name
        self.total = total
        self.emit = emit
        self.alive: set[str] = set()
        self.converged = False
        self.transport = NetTransport("127.0.0.1", 0)
        self.counts = counts
        self.serf: Serf | None = None

    async def start(self) -> int:
        await self.transport.listen()
        port = self.transport.port
        config = consul_pool(self.name, {}, consul_lan(port))
        serf = Serf(config, self.transport, self.on_event,
                    logger=WatchedLogger(f"serf.{self.name}", self.name, self.emit, self.counts))
        serf.memberlist.log = WatchedLogger(f"memberlist.{self.name}", self.name, self.emit,
                                            self.counts)
        self.serf = serf
        await serf.start(rejoin=False)
        return port

    def on_event(self, event: SerfEvent) -> None:
        if not isinstance(event, MemberEvent):
            return
        kind = event.type
        for member in event.members:
            if kind == EventType.MEMBER_JOIN:
                self.alive.add(member.name)
                if not self.converged and len(self.alive) >= self.total:
                    self.converged = True
                    self.emit({"ev": "converged", "t": time.monotonic(), "node": self.name})
            elif kind == EventType.MEMBER_FAILED:
                self.alive.discard(member.name)
                self.emit({"ev": "failed", "t": time.monotonic(), "node": self.name,
                           "member": member.name})
            elif kind in (EventType.MEMBER_LEAVE, EventType.MEMBER_REAP):
                self.alive.discard(member.name)

    async def join(self, seed: str) -> None:
        assert self.serf is not None
        await self.serf.join([seed])

    async def kill(self) -> None:
        if self.serf is not None and self.serf.state != "shutdown":
            await self.serf.shutdown()

    def stats(self, everyone: list[str]) -> dict[str, Any]:
        assert self.serf is not None
        statuses = collections.Counter(m.status_name for m in self.serf.members.values())
        out = {"alive_seen": len(self.alive), "members": dict(statuses),
               "health": self.serf.memberlist.health_score(), "state": self.serf.state}
        if not self.converged:
            missing = [name for name in everyone if name not in self.alive][:5]
            out["missing"] = missing
            # what the layers below hold about them: memberlist state, serf status
            nodes = self.serf.memberlist.node_map
            out["missing_views"] = {
                name: [nodes[name].state_name if name in nodes else "unknown",
                       self.serf.members[name].status_name if name in self.serf.members
                       else "unknown"] for name in missing}
        return out


class Worker:
    def __init__(self, names: list[str], everyone: list[str], emit: Emit) -> None:
        self.everyone = everyone
        total = len(everyone)
        self.counts: collections.Counter[str] = collections.Counter()
        self.nodes = {name: Node(name, total, emit, self.counts) for name in names}
        self.emit = emit
        self.done = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def start(self) -> None:
        ports = [await node.start() for node in self.nodes.values()]
        self.emit({"ev": "ready", "pid": os.getpid(),
                   "nodes": [[name, port] for name, port in zip(self.nodes, ports, strict=True)]})

    async def join(self, seed: str, name: str) -> None:
        error = ""
        try:
            await self.nodes[name].join(seed)
        except Exception as exc:  # reported, not raised: the orchestrator counts failures
            error = f"{type(exc).__name__}: {exc}"
        self.emit({"ev": "joined", "t": time.monotonic(), "node": name, "error": error})

    async def kill(self, name: str) -> None:
        node = self.nodes[name]
        t = time.monotonic()
        await node.kill()
        self.emit({"ev": "killed", "t": t, "node": name})

    async def profile(self, seconds: float, path: str) -> None:
        """Profile everything the loop runs for `seconds` (cProfile's overhead inflates the
        totals; the shares between functions are what to read)."""
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            await asyncio.sleep(seconds)
        finally:
            profiler.disable()
            profiler.dump_stats(path)
        self.emit({"ev": "profiled", "t": time.monotonic(), "path": path})

    async def stop(self) -> None:
        await asyncio.gather(*(n.kill() for n in self.nodes.values()), return_exceptions=True)
        self.done.set()

    def handle(self, cmd: Mapping[str, Any]) -> None:
        what = cmd.get("cmd")
        if what == "join":
            self.spawn(self.join(str(cmd["seed"]), str(cmd["node"])))
        elif what == "kill":
            self.spawn(self.kill(str(cmd["node"])))
        elif what == "stats":
            self.emit({"ev": "stats", "t": time.monotonic(), "pid": os.getpid(),
                       "nodes": {name: n.stats(self.everyone) for name, n in self.nodes.items()},
                       "log_counts": dict(self.counts.most_common(20)),
                       "log_examples": {k: EXAMPLES.get(k, k)
                                        for k, _ in self.counts.most_common(20)}})
        elif what == "stop":
            self.spawn(self.stop())
        elif what == "profile":
            self.spawn(self.profile(float(cmd["seconds"]), str(cmd["path"])))


async def read_commands(worker: Worker) -> None:
    """Commands from stdin, one JSON object a line; end of input stops the worker."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            await worker.stop()
            return
        if line.strip():
            worker.handle(json.loads(line))


async def run(args: argparse.Namespace) -> None:
    everyone = [f"{args.prefix}{i:04d}" for i in range(args.total)]
    worker = Worker(everyone[args.first:args.first + args.count], everyone, emit_line)
    await worker.start()
    commands = asyncio.get_running_loop().create_task(read_commands(worker))
    await worker.done.wait()
    commands.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, required=True, help="nodes in this process")
    parser.add_argument("--first", type=int, default=0, help="index of the first node")
    parser.add_argument("--total", type=int, required=True, help="nodes in the whole cluster")
    parser.add_argument("--prefix", default="ours-", help="node name prefix")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    # two sockets per node plus push/pull connections: lift the soft limit to the hard one
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(run(args))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()

"""The two clusters of bench/gossip_cluster.py and how they are watched.

- `SerfSide`: N real `serf agent` processes (Debian's serf 0.9.4), one per node, each on its own
  bind and RPC port on 127.0.0.1, logging at INFO to a pipe. Joins go over each agent's msgpack
  RPC (`join`, what `serf join` sends), opened and handshaken before the clock starts, so the
  measured time is the agents' own. Killing is SIGKILL to the agent's PID.
- `OursSide`: K worker processes of bench/gossip_nodes.py, each running N/K of our `Serf` nodes
  on one event loop; commands and reports are JSON lines on the workers' stdin and stdout.
  Killing closes one node hard inside its worker (no leave; its sockets are shut).

Both sides join through `start_joins`: the same order, the same number of joins in flight.

Both report through pipes that one `EventHub` thread reads with a selector, so nothing polls
the clusters: a serf agent's log lines (`serf: EventMemberJoin`, `EventMemberFailed`,
`memberlist: Suspect ... no acks received`, `Refuting a suspect message`) are stamped with
`time.monotonic()` as they arrive, our workers stamp the same events with the same clock where
they happen. A `Tracker` folds them into per-node views.

Every process started here is registered in `Procs` and killed by PID when the run ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from ports import free_dual_port, free_port

BENCH_DIR = Path(__file__).resolve().parent
NODES_SCRIPT = BENCH_DIR / "gossip_nodes.py"

_T0 = time.monotonic()
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


class BenchError(Exception):
    """A cluster did not start or a process misbehaved."""


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- ports and /proc






def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of the processes (those that have exited count nothing)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError), \
                open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])
    return total / _CLK_TCK


def rss_bytes(pids: Iterable[int]) -> int:
    """Sum of VmRSS of the processes."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
    return total


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    values = [int(v) for v in parts]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / _CLK_TCK


# ----------------------------------------------------------------------------- processes


class Procs:
    """Every process this run started, so that one `finally` ends them all, by PID."""

    def __init__(self) -> None:
        self.items: list[subprocess.Popen[bytes]] = []
        self.lock = threading.Lock()

    def start(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
        with self.lock:
            self.items.append(proc)
        return proc

    def kill(self, procs: Iterable[subprocess.Popen[bytes]], grace: float = 0.0) -> None:
        """SIGTERM and `grace` seconds to exit (when grace > 0), then SIGKILL; reaps them."""
        procs = [p for p in procs if p.poll() is None]
        if grace > 0:
            for p in procs:
                with contextlib.suppress(OSError):
                    p.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(p.poll() is None for p in procs):
                time.sleep(0.05)
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(OSError):
                    p.kill()
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
        with self.lock:
            done = set(map(id, procs))
            self.items = [p for p in self.items if id(p) not in done or p.poll() is None]

    def kill_all(self) -> None:
        with self.lock:
            items = list(self.items)
        self.kill(items)


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Event:
    t: float
    kind: str
    node: str
    member: str = ""
    data: Any = None


@dataclass
class Tracker:
    """What the events say, per node. Updated by the hub's thread under `EventHub.cond`."""

    names: list[str]
    alive: dict[str, set[str]] = field(default_factory=dict)
    converged: dict[str, float] = field(default_factory=dict)
    failed: list[Event] = field(default_factory=list)
    suspects: list[Event] = field(default_factory=list)
    refutes: list[Event] = field(default_factory=list)
    killed: dict[str, float] = field(default_factory=dict)
    ready: dict[str, Any] = field(default_factory=dict)
    #: node -> (time its join returned, error text or "")
    joined: dict[str, tuple[float, str]] = field(default_factory=dict)
    stats: list[Any] = field(default_factory=list)
    exited: list[str] = field(default_factory=list)
    warnings: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.total = len(self.names)
        self.known = set(self.names)

    def feed(self, ev: Event) -> None:
        kind = ev.kind
        if kind == "join":
            if ev.member in self.known:
                seen = self.alive.setdefault(ev.node, set())
                seen.add(ev.member)
                if len(seen) >= self.total and ev.node not in self.converged:
                    self.converged[ev.node] = ev.t
        elif kind == "converged":
            self.converged.setdefault(ev.node, ev.t)
        elif kind == "failed":
            self.alive.get(ev.node, set()).discard(ev.member)
            self.failed.append(ev)
        elif kind == "left":
            self.alive.get(ev.node, set()).discard(ev.member)
        elif kind == "suspect":
            self.suspects.append(ev)
        elif kind == "refute":
            self.refutes.append(ev)
        elif kind == "killed":
            self.killed[ev.node] = ev.t
        elif kind == "ready":
            self.ready[ev.node] = ev.data
        elif kind == "joined":
            self.joined[ev.node] = (ev.t, str(ev.data or ""))
        elif kind == "stats":
            self.stats.append(ev.data)
        elif kind == "exit":
            self.exited.append(ev.node)
        elif kind == "warn":
            self.warnings[ev.member] += 1

    def failed_by(self, member: str, since: float) -> dict[str, float]:
        """Observer -> first time it marked `member` failed at or after `since`."""
        out: dict[str, float] = {}
        for ev in self.failed:
            if ev.member == member and ev.t >= since and ev.node != member:
                out.setdefault(ev.node, ev.t)
        return out

    def false_alarms(self, start: float, end: float) -> dict[str, int]:
        """Failed marks, failed-probe suspicions and refutations in [start, end] about nodes
        that were never killed."""
        def spurious(evs: list[Event]) -> list[Event]:
            return [e for e in evs if start <= e.t <= end and e.member not in self.killed]

        failed = spurious(self.failed)
        suspects = spurious(self.suspects)
        return {
            "failed": len(failed),
            "failed_members": len({e.member for e in failed}),
            "suspect": len(suspects),
            "suspect_members": len({e.member for e in suspects}),
            "refute": sum(1 for e in self.refutes if start <= e.t <= end
                          and e.node not in self.killed),
        }


Parser = Callable[[str, float], list[Event]]


class EventHub:
    """One thread reading lines from many pipes; each line becomes events for the tracker."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.tracker: Tracker | None = None
        self._selector = selectors.DefaultSelector()
        self._pending: list[tuple[int, Parser, str]] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._buffers: dict[int, bytes] = {}
        self._tails: dict[str, deque[str]] = {}
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="event-hub", daemon=True)
        self._thread.start()

    def add(self, fd: int, name: str, parser: Parser) -> None:
        """Read lines from `fd` (a pipe's read end) for `name`, through `parser`."""
        os.set_blocking(fd, False)
        with self.cond:
            self._pending.append((fd, parser, name))
            self._tails[name] = deque(maxlen=30)
        os.write(self._wake_w, b"x")

    def tail(self, name: str) -> str:
        with self.cond:
            return "\n".join(self._tails.get(name, ()))

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)

    def wait(self, predicate: Callable[[Tracker], bool], timeout: float,
             tick: Callable[[Tracker], None] | None = None, every: float = 2.0) -> bool:
        """Wait until predicate(tracker) or timeout; `tick` is called every `every` s."""
        deadline = time.monotonic() + timeout
        next_tick = time.monotonic() + every
        with self.cond:
            assert self.tracker is not None
            while not predicate(self.tracker):
                now = time.monotonic()
                if now >= deadline:
                    return False
                if tick is not None and now >= next_tick:
                    tick(self.tracker)
                    next_tick = now + every
                self.cond.wait(min(0.2, deadline - now))
            return True

    def _run(self) -> None:
        while not self._stop:
            with self.cond:
                pending, self._pending = self._pending, []
            for fd, parser, name in pending:
                self._selector.register(fd, selectors.EVENT_READ, (parser, name))
            for key, _ in self._selector.select(timeout=1.0):
                if key.data is None:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 4096)
                    continue
                self._read(key.fd, *key.data)

    def _read(self, fd: int, parser: Parser, name: str) -> None:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        now = time.monotonic()
        if not chunk:
            self._selector.unregister(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
            events = [Event(now, "exit", name)]
        else:
            data = self._buffers.pop(fd, b"") + chunk
            *lines, rest = data.split(b"\n")
            if rest:
                self._buffers[fd] = rest
            events = []
            tail = self._tails[name]
            for raw in lines:
                line = raw.decode(errors="replace")
                tail.append(line)
                try:
                    events.extend(parser(line, now))
                except (ValueError, KeyError, TypeError) as exc:
                    tail.append(f"(unparsed: {exc})")
        with self.cond:
            if self.tracker is not None:
                for ev in events:
                    self.tracker.feed(ev)
            self.cond.notify_all()


# ----------------------------------------------------------------------------- joins


def start_joins(names: list[str], window: int, join_one: Callable[[str], None],
                stopping: threading.Event) -> list[threading.Thread]:
    """Join `names` in order with at most `window` joins in flight: `window` threads, each
    taking the next name when its previous join has returned (`join_one` blocks until then).
    A window of 1 joins one node after another, as a script calling `serf join` per agent
    does; a window of N is one burst."""
    pending = iter(names)
    lock = threading.Lock()

    def run() -> None:
        while not stopping.is_set():
            with lock:
                name = next(pending, None)
            if name is None:
                return
            join_one(name)

    threads = [threading.Thread(target=run, name=f"join-{i}", daemon=True)
               for i in range(max(1, min(window, len(names))))]
    for thread in threads:
        thread.start()
    return threads


# ----------------------------------------------------------------------------- serf agents

SERF_LINES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"serf: EventMemberJoin: (\S+)"), "join"),
    (re.compile(r"serf: EventMemberFailed: (\S+)"), "failed"),
    (re.compile(r"serf: EventMemberLeave(?: \(forced\))?: (\S+)"), "left"),
    (re.compile(r"serf: EventMemberReap(?: \(forced\))?: (\S+)"), "left"),
    (re.compile(r"memberlist: Suspect (\S+) has failed, no acks received"), "suspect"),
]
SERF_REFUTE = "memberlist: Refuting a suspect message"
SERF_READY = "==> Serf agent running!"
SERF_WARN = re.compile(r"\[(WARN|ERR)\] (.*)")
_NUMBERS = re.compile(r"\d+")


def serf_parser(agent: str) -> Parser:
    def parse(line: str, now: float) -> list[Event]:
        for pattern, kind in SERF_LINES:
            m = pattern.search(line)
            if m:
                return [Event(now, kind, agent, m.group(1))]
        if SERF_REFUTE in line:
            return [Event(now, "refute", agent), Event(now, "warn", agent, SERF_REFUTE)]
        if SERF_READY in line:
            return [Event(now, "ready", agent)]
        m = SERF_WARN.search(line)
        if m:
            return [Event(now, "warn", agent, f"[{m.group(1)}] " + _NUMBERS.sub("N", m.group(2)))]
        return []

    return parse


class SerfRPC:
    """A blocking client of one agent's msgpack RPC (serf's client/rpc_client.go framing:
    a header map {Command, Seq}, then the request body; replies {Seq, Error} then a body)."""

    def __init__(self, addr: tuple[str, int], timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.unpacker = msgpack.Unpacker(raw=False, unicode_errors="replace")
        self.seq = 0
        self.send("handshake", {"Version": 1})
        self.reply(body=False)

    def send(self, command: str, body: dict[str, Any] | None = None) -> None:
        data = msgpack.packb({"Command": command, "Seq": self.seq})
        if body is not None:
            data += msgpack.packb(body)
        self.seq += 1
        self.sock.sendall(data)

    def poll(self) -> Any | None:
        """The next decoded object if one is complete, reading what has arrived."""
        for obj in self.unpacker:
            return obj
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise BenchError("serf RPC connection closed")
        self.unpacker.feed(chunk)
        for obj in self.unpacker:
            return obj
        return None

    def next(self) -> Any:
        while True:
            obj = self.poll()
            if obj is not None:
                return obj

    def reply(self, body: bool = True) -> Any:
        header = self.next()
        if header.get("Error"):
            raise BenchError(f"serf RPC: {header['Error']}")
        return self.next() if body else None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


@dataclass
class Agent:
    name: str
    bind: int
    rpc: int
    proc: subprocess.Popen[bytes]


class SerfSide:
    label = "serf"

    def __init__(self, procs: Procs, hub: EventHub, serf: str, tmp: Path) -> None:
        self.procs = procs
        self.hub = hub
        self.serf = serf
        self.tmp = tmp
        self.agents: dict[str, Agent] = {}
        self._join_threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    @staticmethod
    def node_names(n: int) -> list[str]:
        return [f"serf-{i:04d}" for i in range(n)]

    def pids(self) -> list[int]:
        return [a.proc.pid for a in self.agents.values() if a.proc.poll() is None]

    def _spawn(self, name: str) -> Agent:
        bind, rpc = free_dual_port(), free_port()
        argv = [self.serf, "agent", f"-node={name}", f"-bind=127.0.0.1:{bind}",
                f"-rpc-addr=127.0.0.1:{rpc}", "-log-level=info"]
        proc = self.procs.start(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=self.tmp)
        assert proc.stdout is not None
        self.hub.add(os.dup(proc.stdout.fileno()), name, serf_parser(name))
        proc.stdout.close()
        return Agent(name, bind, rpc, proc)

    def start(self, n: int, timeout: float) -> None:
        for name in self.node_names(n):
            self.agents[name] = self._spawn(name)
        deadline = time.monotonic() + timeout
        retries = 0
        while True:
            ok = self.hub.wait(lambda t: len(t.ready) >= n or bool(t.exited),
                               deadline - time.monotonic())
            with self.hub.cond:
                assert self.hub.tracker is not None
                exited, self.hub.tracker.exited = list(self.hub.tracker.exited), []
                ready = len(self.hub.tracker.ready)
            if ready >= n:
                return
            if not ok:
                raise BenchError(f"only {ready} of {n} serf agents started within {timeout:.0f}s")
            for name in exited:
                agent = self.agents.get(name)
                if agent is None:
                    continue  # a pipe of an earlier run closing
                with contextlib.suppress(subprocess.TimeoutExpired):
                    agent.proc.wait(timeout=2)
                if agent.proc.poll() is None:
                    continue
                # most likely a port taken between choosing it and the agent binding it
                retries += 1
                if retries > 5:
                    raise BenchError(f"serf agent {name} exited:\n{self.hub.tail(name)}")
                self.agents[name] = self._spawn(name)

    def seed(self) -> Agent:
        return next(iter(self.agents.values()))

    def join(self, window: int) -> float:
        """Every agent but the first joins the first over its RPC, `window` at a time; RPC
        connections are opened and handshaken before the clock starts. Returns the start
        time; each join's return is recorded as a "joined" event."""
        seed = self.seed()
        names = list(self.agents)[1:]
        clients = {name: SerfRPC(("127.0.0.1", self.agents[name].rpc)) for name in names}
        body = {"Existing": [f"127.0.0.1:{seed.bind}"], "Replay": False}

        def join_one(name: str) -> None:
            client = clients[name]
            error = ""
            try:
                client.sock.settimeout(60)
                client.send("join", body)
                client.reply()
            except (OSError, BenchError) as exc:
                error = " ".join(str(exc).split())
            finally:
                client.close()
            with self.hub.cond:
                if self.hub.tracker is not None:
                    self.hub.tracker.feed(Event(time.monotonic(), "joined", name, data=error))
                self.hub.cond.notify_all()

        t0 = time.monotonic()
        self._join_threads = start_joins(names, window, join_one, self._stopping)
        return t0

    def kill(self, name: str) -> float:
        agent = self.agents[name]
        t = time.monotonic()
        agent.proc.send_signal(signal.SIGKILL)
        with self.hub.cond:
            assert self.hub.tracker is not None
            self.hub.tracker.killed[name] = t
        return t

    def members_check(self, names: list[str]) -> dict[str, dict[str, int]]:
        """Status counts from `members` over RPC on a few agents (a cross-check of the log
        view, asked outside every measured window)."""
        out: dict[str, dict[str, int]] = {}
        for name in names:
            agent = self.agents[name]
            try:
                client = SerfRPC(("127.0.0.1", agent.rpc))
                client.send("members")
                body = client.reply()
                client.close()
                out[name] = dict(Counter(str(m.get("Status")) for m in body["Members"]))
            except (OSError, BenchError) as exc:
                out[name] = {f"error: {exc}": 1}
        return out

    def stop(self) -> None:
        self._stopping.set()
        self.procs.kill([a.proc for a in self.agents.values()])
        for thread in self._join_threads:
            thread.join(timeout=2)


# ----------------------------------------------------------------------------- our workers


def ours_parser(worker: str) -> Parser:
    def parse(line: str, now: float) -> list[Event]:
        if not line.startswith("{"):
            return []
        rec = json.loads(line)
        ev = rec["ev"]
        t = float(rec.get("t", now))
        if ev in ("converged", "failed", "suspect", "refute", "killed"):
            return [Event(t, ev, rec["node"], rec.get("member", ""))]
        if ev == "ready":
            return [Event(now, "ready", worker, data=rec)]
        if ev == "joined":
            return [Event(t, "joined", rec["node"], data=rec.get("error", ""))]
        if ev == "stats":
            return [Event(t, "stats", worker, data=rec)]
        return []

    return parse


@dataclass
class WorkerProc:
    name: str
    proc: subprocess.Popen[bytes]
    nodes: list[str]
    ports: dict[str, int] = field(default_factory=dict)


class OursSide:
    label = "ours"

    def __init__(self, procs: Procs, hub: EventHub, tmp: Path, workers: int,
                 loop: str) -> None:
        self.procs = procs
        self.hub = hub
        self.tmp = tmp
        self.workers_wanted = workers
        self.loop = loop
        self.workers: dict[str, WorkerProc] = {}
        self.owner: dict[str, WorkerProc] = {}
        self._join_threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._write_lock = threading.Lock()

    @staticmethod
    def node_names(n: int) -> list[str]:
        return [f"ours-{i:04d}" for i in range(n)]

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers.values() if w.proc.poll() is None]

    def start(self, n: int, timeout: float) -> None:
        k = max(1, min(self.workers_wanted, n))
        first = 0
        for i in range(k):
            count = n // k + (1 if i < n % k else 0)
            name = f"worker-{i}"
            argv = [sys.executable, str(NODES_SCRIPT), "--count", str(count), "--first",
                    str(first), "--total", str(n), "--loop", self.loop]
            with open(self.tmp / f"{name}.err", "wb") as err:
                proc = self.procs.start(argv, stdout=subprocess.PIPE, stderr=err,
                                        stdin=subprocess.PIPE, cwd=BENCH_DIR.parent)
            assert proc.stdout is not None
            self.hub.add(os.dup(proc.stdout.fileno()), name, ours_parser(name))
            proc.stdout.close()
            names = self.node_names(n)[first:first + count]
            worker = WorkerProc(name, proc, names)
            self.workers[name] = worker
            for node in names:
                self.owner[node] = worker
            first += count
        def settled(t: Tracker) -> bool:
            return len(t.ready) >= k or any(w in self.workers for w in t.exited)

        ok = self.hub.wait(settled, timeout)
        with self.hub.cond:
            assert self.hub.tracker is not None
            ready = dict(self.hub.tracker.ready)
            exited = [w for w in self.hub.tracker.exited if w in self.workers]
        if exited or not ok:
            errs = "\n".join(self.err_tail(w) for w in exited or self.workers)
            raise BenchError(f"{len(ready)} of {k} workers ready within {timeout:.0f}s:\n{errs}")
        for name, rec in ready.items():
            self.workers[name].ports = {node: port for node, port in rec["nodes"]}

    def err_tail(self, worker: str) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.tmp / f"{worker}.err").read_text(
                errors="replace").splitlines()[-20:])
        return ""

    def command(self, worker: WorkerProc, cmd: dict[str, Any]) -> None:
        assert worker.proc.stdin is not None
        with self._write_lock:
            worker.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
            worker.proc.stdin.flush()

    def join(self, window: int) -> float:
        """Every node but the first joins the first, `window` at a time (one command per
        join; the worker reports its return). Returns the start time."""
        names = list(self.owner)
        seed = names[0]
        address = f"127.0.0.1:{self.owner[seed].ports[seed]}"

        def join_one(name: str) -> None:
            self.command(self.owner[name], {"cmd": "join", "seed": address, "node": name})
            self.hub.wait(lambda t: name in t.joined or self._stopping.is_set(), 60.0)

        t0 = time.monotonic()
        self._join_threads = start_joins(names[1:], window, join_one, self._stopping)
        return t0

    def kill(self, name: str) -> float:
        """Close the node hard; the kill time is the worker's own stamp."""
        self.command(self.owner[name], {"cmd": "kill", "node": name})
        if not self.hub.wait(lambda t: name in t.killed, 10.0):
            raise BenchError(f"worker did not confirm closing {name}")
        with self.hub.cond:
            assert self.hub.tracker is not None
            return self.hub.tracker.killed[name]

    def stats(self, timeout: float = 10.0) -> list[Any]:
        with self.hub.cond:
            assert self.hub.tracker is not None
            self.hub.tracker.stats.clear()
        for worker in self.workers.values():
            self.command(worker, {"cmd": "stats"})
        k = len(self.workers)
        self.hub.wait(lambda t: len(t.stats) >= k, timeout)
        with self.hub.cond:
            assert self.hub.tracker is not None
            return list(self.hub.tracker.stats)

    def stop(self) -> None:
        self._stopping.set()
        for worker in self.workers.values():
            with contextlib.suppress(OSError, ValueError):
                self.command(worker, {"cmd": "stop"})
                assert worker.proc.stdin is not None
                worker.proc.stdin.close()
        deadline = time.monotonic() + 5
        procs = [w.proc for w in self.workers.values()]
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.05)
        self.procs.kill(procs)
        for thread in self._join_threads:
            thread.join(timeout=2)

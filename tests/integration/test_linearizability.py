"""Linearizability of the KV store under faults, on a cluster of real processes.

Three servers and two clients on 127.0.0.1. Worker threads, each bound to one agent (both
clients and every server's HTTP port), read (`?consistent` and default consistency), write
unique values and check-and-set on three keys through py-consul, recording when each call was
made and answered and what it answered. Meanwhile the leader is SIGKILLed and restarted from
its data directory, and servers (the leader or a follower) are SIGSTOPped for a few seconds
and resumed. After the faults heal, a consistent read of every key closes the history.

The history of writes, CAS and consistent reads must be linearizable (tests/linearizability's
checker): no acknowledged write is lost, no read is stale, no CAS succeeds twice on one index,
and every write's ModifyIndex is above those of the writes before it. Default-consistency
reads are checked and reported but not asserted: Consul lets a leader that was deposed while
paused answer them from its own state until it hears of the new term.

A call that times out, breaks mid-way or fails with an error after it may have been applied
has an unknown outcome (it may take effect later, or never); one refused before anything was
sent (connection refused) or answered "No cluster leader" surely did not take effect.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import consul  # type: ignore[import-untyped]
import pytest
import requests

from tests.integration.test_cluster import Cluster
from tests.linearizability.checker import IndexFacts, Kind, Op, Verdict, check
from tests.support import AgentProcess

KEYS = ["lin/a", "lin/b", "lin/c"]
#: how long the workers run, faults included
WORKLOAD_SECONDS = 50.0
#: a worker's HTTP timeout: past it the call's outcome is unknown
HTTP_TIMEOUT = 10.0
#: a bound on each worker's operations, whatever the speed
MAX_OPS_PER_WORKER = 4000
NO_LEADER = "No cluster leader"
#: reads sent to a paused server shortly before it resumes, and how shortly
PROBES = 6
PROBE_LEAD = 0.5
#: process numbers of the probes start here
PROBE_PROCESS = 1000

pytestmark = pytest.mark.slow


@dataclass
class Record:
    process: int
    agent: str
    kind: Kind
    key: str
    call: float
    ret: float = math.inf
    #: "ok", "fail" (surely not applied) or "unknown"
    outcome: str = "unknown"
    value: str | None = None
    expect: int = 0
    result: object = None
    #: a read's mode: "consistent" or "default"
    consistency: str = ""
    error: str = ""

    def op(self) -> Op:
        return Op(self.process, self.kind, self.key, self.call,
                  self.ret if self.outcome == "ok" else math.inf, value=self.value,
                  expect=self.expect, result=self.result)


class Slot:
    """One agent of the cluster as the workers see it: a restarted server is a new process
    (with a new HTTP port) in the same slot."""

    def __init__(self, name: str, get: Callable[[], AgentProcess]) -> None:
        self.name = name
        self.get = get

    @property
    def port(self) -> int:
        return self.get().http_port


class Worker(threading.Thread):
    def __init__(self, process: int, slot: Slot, stop: threading.Event, seed: int) -> None:
        super().__init__(name=f"lin-worker-{process}", daemon=True)
        self.process = process
        self.slot = slot
        self.stop = stop
        self.rng = random.Random(seed)
        self.records: list[Record] = []
        #: the ModifyIndex this worker last read per key (0: absent or never read)
        self.last_index: dict[str, int] = {}
        self._client: tuple[int, consul.Consul] | None = None
        #: errors that are neither HTTP nor transport failures (answers the API never gives)
        self.unexpected: list[str] = []

    def client(self) -> consul.Consul:
        port = self.slot.port
        if self._client is None or self._client[0] != port:
            self._client = (port, consul.Consul(host="127.0.0.1", port=port,
                                                connections_timeout=HTTP_TIMEOUT))
        return self._client[1]

    def run(self) -> None:
        seq = 0
        while not self.stop.is_set() and len(self.records) < MAX_OPS_PER_WORKER:
            key = self.rng.choice(KEYS)
            roll = self.rng.random()
            rec = Record(self.process, self.slot.name, Kind.READ, key, 0.0)
            if roll < 0.2:
                rec.consistency = "consistent"
            elif roll < 0.35:
                rec.consistency = "default"
            else:
                seq += 1
                rec.value = f"p{self.process}-{seq}"
                if roll < 0.65:
                    rec.kind = Kind.WRITE
                else:
                    rec.kind = Kind.CAS
                    rec.expect = self.last_index.get(key, 0)
            try:
                perform(self.client(), rec)
                if rec.kind is Kind.READ and rec.outcome == "ok":
                    self.last_index[key] = rec.result[1] if isinstance(rec.result, tuple) else 0
            except Exception as err:  # never let a worker die silently
                rec.outcome, rec.error = "unknown", f"{type(err).__name__}: {err}"
                self.unexpected.append(f"{rec.kind.value} {rec.key}: {rec.error}")
            self.records.append(rec)
            if rec.outcome != "ok":
                # the agent is down, paused or without a leader: do not spin
                self.stop.wait(0.1 + self.rng.random() * 0.2)


def perform(c: consul.Consul, rec: Record) -> None:
    """Make the call `rec` describes and record its times, answer and outcome."""
    rec.call = time.monotonic()
    try:
        if rec.kind is Kind.READ:
            _, entry = c.kv.get(rec.key, consistency=rec.consistency)
            rec.result = None if entry is None else (
                (entry["Value"] or b"").decode(), int(entry["ModifyIndex"]))
            rec.ret = time.monotonic()
        elif rec.kind is Kind.WRITE:
            rec.result = c.kv.put(rec.key, rec.value)
            rec.ret = time.monotonic()
            if rec.result is not True:
                raise AssertionError(f"a plain write answered {rec.result!r}")
        else:
            rec.result = c.kv.put(rec.key, rec.value, cas=rec.expect)
            rec.ret = time.monotonic()
        rec.outcome = "ok"
    except requests.exceptions.ConnectionError as err:
        rec.error = f"{type(err).__name__}: {err}"
        refused = isinstance(err.__context__, ConnectionRefusedError) or (
            "Connection refused" in str(err) and "NewConnectionError" in str(err))
        rec.outcome = "fail" if refused else "unknown"
    except requests.exceptions.RequestException as err:
        rec.error = f"{type(err).__name__}: {err}"
        rec.outcome = "unknown"
    except consul.ConsulException as err:
        rec.error = str(err)
        rec.outcome = "fail" if str(err) == f"500 {NO_LEADER}" else "unknown"
    if rec.kind is Kind.READ and rec.outcome != "ok":
        # a read that did not answer tells nothing and changes nothing
        rec.outcome = "fail"


# -- the cluster and its faults ------------------------------------------------------------


def status_leader(agent: AgentProcess, timeout: float = 2.0) -> str:
    try:
        with urllib.request.urlopen(agent.url + "/v1/status/leader", timeout=timeout) as r:
            return str(json.loads(r.read()) or "")
    except (OSError, ValueError):
        return ""


def alive(agent: AgentProcess) -> bool:
    return agent.proc is not None and agent.proc.poll() is None


class Nemesis:
    """Faults, one at a time, each healed (and a leader back) before the next."""

    def __init__(self, cluster: Cluster, rng: random.Random) -> None:
        self.cluster = cluster
        self.rng = rng
        self.paused: set[AgentProcess] = set()
        #: reads sent to a paused server just before it resumes, with their threads
        self.probes: list[tuple[threading.Thread, Record]] = []
        self.log: list[str] = []
        self.started = time.monotonic()

    def note(self, text: str) -> None:
        self.log.append(f"{time.monotonic() - self.started:6.1f}s {text}")

    def leader(self, timeout: float = 45.0) -> AgentProcess | None:
        """The leading server once the servers that answer agree on one, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            up = [a for a in self.cluster.servers if alive(a) and a not in self.paused]
            answers = {status_leader(a) for a in up}
            if len(answers) == 1 and (addr := answers.pop()):
                for agent in up:
                    if f"127.0.0.1:{agent.server_port}" == addr:
                        return agent
            time.sleep(0.2)
        return None

    def kill_and_restart(self, victim: AgentProcess) -> None:
        index = self.cluster.servers.index(victim)
        self.note(f"SIGKILL s{index} (pid {victim.proc.pid if victim.proc else '?'})")
        victim.stop(signal.SIGKILL)
        time.sleep(self.rng.uniform(1.0, 3.0))
        again = self.cluster.fresh_server(index)
        self.cluster.servers[index] = again
        again.start(timeout=60, require_leader=False)
        self.note(f"restarted s{index} from its data dir on HTTP port {again.http_port}")

    def pause(self, victim: AgentProcess, seconds: float, role: str) -> None:
        """SIGSTOP `victim`, then SIGCONT. Reads sent to it just before it resumes probe
        whether it answers them from its old state: by then a paused leader has been replaced
        and the new one has acknowledged writes."""
        index = self.cluster.servers.index(victim)
        assert victim.proc is not None
        self.note(f"SIGSTOP s{index} ({role}) for {seconds:.1f}s")
        self.paused.add(victim)
        os.kill(victim.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(max(0.0, seconds - PROBE_LEAD))
            self.probe(victim)
            time.sleep(min(seconds, PROBE_LEAD))
        finally:
            os.kill(victim.proc.pid, signal.SIGCONT)
            self.paused.discard(victim)
        self.note(f"SIGCONT s{index}")

    def probe(self, victim: AgentProcess) -> None:
        for n in range(PROBES):
            process = PROBE_PROCESS + len(self.probes)
            rec = Record(process, f"probe:{victim.http_port}", Kind.READ,
                         self.rng.choice(KEYS), 0.0,
                         consistency="default" if n % 3 == 2 else "consistent")
            c = consul.Consul(host="127.0.0.1", port=victim.http_port,
                              connections_timeout=HTTP_TIMEOUT)
            thread = threading.Thread(target=perform, args=(c, rec), daemon=True,
                                      name=f"lin-probe-{process}")
            self.probes.append((thread, rec))
            thread.start()

    def run(self, until: float, stop: threading.Event) -> None:
        faults = ["kill-leader", "pause-leader", "pause-follower", "pause-leader",
                  "kill-leader", "pause-leader", "pause-follower", "pause-leader"]
        for n, fault in enumerate(faults):
            # the first kill and the first pause happen however slow the machine is
            if stop.wait(self.rng.uniform(1.5, 3.0)) or (
                    n >= 2 and time.monotonic() > until - 6):
                return
            leader = self.leader()
            if leader is None:
                self.note("no leader agreed on; no further faults")
                return
            if fault == "kill-leader":
                self.kill_and_restart(leader)
            elif fault == "pause-leader":
                self.pause(leader, self.rng.uniform(3.0, 5.0), "leader")
            else:
                follower = self.rng.choice([a for a in self.cluster.servers if a is not leader])
                self.pause(follower, self.rng.uniform(3.0, 5.0), "follower")

    def heal(self) -> None:
        for agent in list(self.paused):
            if agent.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(agent.proc.pid, signal.SIGCONT)
        self.paused.clear()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, 3, 2)
    try:
        c.start()
        yield c
    finally:
        for agent in c.servers:
            # a process left stopped would not see SIGTERM
            if agent.proc is not None and agent.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(agent.proc.pid, signal.SIGCONT)
        c.stop()


# -- the test --------------------------------------------------------------------------------


def final_reads(cluster: Cluster, process: int) -> list[Record]:
    """A consistent read of every key through every agent once the cluster is whole."""
    records: list[Record] = []
    agents = [*cluster.servers, *cluster.clients]
    deadline = time.monotonic() + 60
    for key in KEYS:
        for agent in agents:
            c = consul.Consul(host="127.0.0.1", port=agent.http_port,
                              connections_timeout=HTTP_TIMEOUT)
            while True:
                rec = Record(process, f"final:{agent.http_port}", Kind.READ, key,
                             time.monotonic(), consistency="consistent")
                try:
                    _, entry = c.kv.get(key, consistency="consistent")
                except (requests.exceptions.RequestException, consul.ConsulException) as err:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"final read of {key} failed: {err}") from err
                    time.sleep(0.5)
                    continue
                rec.ret, rec.outcome = time.monotonic(), "ok"
                rec.result = None if entry is None else (
                    (entry["Value"] or b"").decode(), int(entry["ModifyIndex"]))
                records.append(rec)
                break
    return records


def stats(records: list[Record]) -> str:
    lines = []
    for key in KEYS:
        mine = [r for r in records if r.key == key]
        by = Counter((r.kind.value + (f"/{r.consistency}" if r.consistency else ""), r.outcome)
                     for r in mine)
        parts = ", ".join(f"{kind} {outcome}={n}" for (kind, outcome), n in sorted(by.items()))
        lines.append(f"  {key}: {len(mine)} ops: {parts}")
    errors = Counter(r.error.split(" (")[0][:80] for r in records if r.error)
    lines.append("  errors: " + "; ".join(f"{e} x{n}" for e, n in errors.most_common(8)))
    return "\n".join(lines)


def dump(records: list[Record], path: Path) -> None:
    """The history as JSON lines, to check again or read after a failure."""
    with path.open("w") as f:
        for r in records:
            row = {**r.__dict__, "kind": r.kind.value,
                   "ret": None if r.ret == math.inf else r.ret}
            f.write(json.dumps(row) + "\n")


def test_kv_history_is_linearizable_under_leader_kills_and_pauses(
        cluster: Cluster, tmp_path: Path) -> None:
    seed = int(os.environ.get("PROCONSUL_LIN_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    nemesis = Nemesis(cluster, rng)
    assert nemesis.leader(60) is not None, "the cluster elected no leader"

    slots = [Slot(f"c{i}", partial(cluster.clients.__getitem__, i)) for i in range(2)]
    slots += [Slot(f"s{i}", partial(cluster.servers.__getitem__, i)) for i in range(3)]
    stop = threading.Event()
    workers = [Worker(n, slot, stop, rng.randrange(1 << 30))
               for n, slot in enumerate([*slots[:2], *slots])]
    started = time.monotonic()
    for w in workers:
        w.start()
    try:
        nemesis.run(started + WORKLOAD_SECONDS, stop)
        # some operations after the last fault healed, even when the faults ran late
        stop.wait(max(2.0, started + WORKLOAD_SECONDS - time.monotonic()))
    finally:
        stop.set()
        nemesis.heal()
        for w in workers:
            w.join(HTTP_TIMEOUT + 5)
        for thread, _ in nemesis.probes:
            thread.join(HTTP_TIMEOUT + 5)
    assert not any(w.is_alive() for w in workers), "a worker did not stop"
    assert not any(t.is_alive() for t, _ in nemesis.probes), "a probe did not return"
    workload = time.monotonic() - started

    assert nemesis.leader(60) is not None, "no leader after the faults healed"
    records = [r for w in workers for r in w.records]
    records += [rec for _, rec in nemesis.probes]
    records += final_reads(cluster, PROBE_PROCESS - 1)

    recorded = [r for r in records if r.outcome != "fail"]
    # every read tells which ModifyIndex its value got, whatever its consistency
    facts = IndexFacts(r.op() for r in recorded)
    strict = [r.op() for r in recorded if r.consistency != "default"]
    checked = time.monotonic()
    report = check(strict, facts=facts, deadline=30)
    check_seconds = time.monotonic() - checked
    # a stale default read makes the search exhaust every order before it says so: bounded
    # tighter, since this verdict is only reported
    default = check([r.op() for r in recorded], facts=facts, max_states=200_000, deadline=15)

    dump(records, tmp_path / "history.jsonl")
    summary = "\n".join([
        f"seed {seed}; workload {workload:.1f}s; {len(records)} ops "
        f"({sum(r.outcome == 'ok' for r in records)} ok, "
        f"{sum(r.outcome == 'fail' for r in records)} failed, "
        f"{sum(r.outcome == 'unknown' for r in records)} unknown); "
        f"check {check_seconds:.2f}s; history in {tmp_path / 'history.jsonl'}",
        stats(records),
        f"  probes of paused servers: {len(nemesis.probes)} sent, "
        f"{sum(rec.outcome == 'ok' for _, rec in nemesis.probes)} answered",
        "faults:", *("  " + line for line in nemesis.log),
        "writes, CAS and consistent reads: " + report.describe(),
        "with default-consistency reads too: " + default.describe(),
        *(f"unexpected: {e}" for w in workers for e in w.unexpected[:5]),
    ])
    print("\n" + summary)
    assert report.verdict is Verdict.LINEARIZABLE, summary
    assert not [e for w in workers for e in w.unexpected], summary
    # the faults happened, and the workload got through them
    assert any("SIGKILL" in line for line in nemesis.log), summary
    assert any("SIGSTOP" in line for line in nemesis.log), summary
    assert sum(r.outcome == "ok" and r.kind is not Kind.READ for r in records) >= 50, summary

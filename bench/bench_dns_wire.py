"""Compiled vs pure timing of the per-packet DNS path.

python bench/bench_dns_wire.py [--rounds N]
    times both twins of proconsul.dns.wire on the packets a Consul DNS server sees most (an A
    query for a service and an SRV query with glue from an EDNS client, both for a 100-instance
    service) and prints nanoseconds per operation with the pure/compiled ratio. The lookups are
    cache hits: parse, key, plan probe and render, which is all a hit costs.
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import dns.message

SERVICE = "web.service.consul"
INSTANCES = 100
A_QUERY = dns.message.make_query(SERVICE + ".", "A", use_edns=False).to_wire()
SRV_QUERY = dns.message.make_query(SERVICE + ".", "SRV", use_edns=0, payload=4096).to_wire()
TWINS = {"py": "proconsul.dns.wire_py", "c": "proconsul._speedups.dns_wire"}


def a_plan(wire: ModuleType) -> Any:
    """A answers for every healthy instance, shuffled, as the resolver builds them."""
    owner = wire.Name(SERVICE)
    answers = [wire.Record(owner, wire.TYPE_A, 0, bytes((10, 0, i // 250, i % 250 + 1)))
               for i in range(INSTANCES)]
    return wire.Plan(0, answers, shuffle=True)


def srv_plan(wire: ModuleType) -> Any:
    """SRV answers with an A glue record per instance's node."""
    owner = wire.Name(SERVICE)
    answers, extras = [], []
    for i in range(INSTANCES):
        target = wire.Name(f"node-{i}.node.dc1.consul")
        answers.append(wire.Record(owner, wire.TYPE_SRV, 0, (1, 1, 20000 + i, target)))
        extras.append(wire.Record(target, wire.TYPE_A, 0, bytes((10, 0, i // 250, i % 250 + 1))))
    return wire.Plan(0, answers, extras=extras, extra_of=[(i,) for i in range(INSTANCES)],
                     shuffle=True)


def parse_op(wire: ModuleType) -> Callable[[], object]:
    parse = wire.parse_query
    return lambda: parse(A_QUERY)


def lookup_op(data: bytes, make_plan: Callable[[ModuleType], Any]) -> Callable[
        [ModuleType], Callable[[], object]]:
    def make(wire: ModuleType) -> Callable[[], object]:
        responder = wire.Responder(wire.RenderOptions(), seed=1)
        responder.store(wire.parse_query(data), make_plan(wire))
        lookup = responder.lookup
        assert isinstance(lookup(data, False), bytes)
        return lambda: lookup(data, False)

    return make


def render_op(data: bytes, make_plan: Callable[[ModuleType], Any]) -> Callable[
        [ModuleType], Callable[[], object]]:
    def make(wire: ModuleType) -> Callable[[], object]:
        query = wire.parse_query(data)
        plan = make_plan(wire)
        opts = wire.RenderOptions()
        rng = wire.Rng(1)
        render = wire.render
        return lambda: render(query, plan, False, opts, rng)

    return make


OPS: dict[str, Callable[[ModuleType], Callable[[], object]]] = {
    "parse_query (A)": parse_op,
    "lookup hit: A, 100 -> 3 answers": lookup_op(A_QUERY, a_plan),
    "lookup hit: SRV + glue, EDNS 4096": lookup_op(SRV_QUERY, srv_plan),
    "render: A, 100 -> 3 answers": render_op(A_QUERY, a_plan),
    "render: SRV + glue, EDNS 4096": render_op(SRV_QUERY, srv_plan),
}


def per_op_ns(op: Callable[[], object], rounds: int) -> float:
    """Best of five timed loops, in nanoseconds per call."""
    for _ in range(min(rounds, 2000)):
        op()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            op()
        best = min(best, time.perf_counter() - start)
    return best / rounds * 1e9


def bench(rounds: int) -> None:
    modules: dict[str, ModuleType] = {}
    for label, name in TWINS.items():
        try:
            modules[label] = importlib.import_module(name)
        except ImportError:
            print(f"({name} not available: build with setup.py build_ext --inplace)")
    print(f"{'operation':36} {'pure ns':>9} {'compiled ns':>12} {'pure/compiled':>14}")
    for title, make in OPS.items():
        py = per_op_ns(make(modules["py"]), rounds)
        if "c" in modules:
            c = per_op_ns(make(modules["c"]), rounds)
            print(f"{title:36} {py:9.0f} {c:12.0f} {py / c:13.1f}x")
        else:
            print(f"{title:36} {py:9.0f} {'-':>12} {'-':>14}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20000)
    args = parser.parse_args()
    bench(args.rounds)


if __name__ == "__main__":
    main()

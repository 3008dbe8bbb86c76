"""The linearizability checker on hand-written histories (legal and not), on random histories
made by a real sequential register with overlapping intervals, and on those same histories
after a mutation that no order can explain."""

from __future__ import annotations

import math
import random
import time
from dataclasses import replace

import pytest

from tests.linearizability.checker import IndexFacts, Kind, Op, Verdict, check

INF = math.inf


def rd(p: int, call: float, ret: float, result: tuple[str, int] | None,
       key: str = "k") -> Op:
    return Op(p, Kind.READ, key, call, ret, result=result)


def wr(p: int, call: float, ret: float, value: str, key: str = "k") -> Op:
    return Op(p, Kind.WRITE, key, call, ret, value=value, result=True)


def cas(p: int, call: float, ret: float, expect: int, value: str, ok: bool | None,
        key: str = "k") -> Op:
    return Op(p, Kind.CAS, key, call, ret, value=value, expect=expect, result=ok)


def verdict(*ops: Op) -> Verdict:
    return check(list(ops)).verdict


# -- hand-written histories ----------------------------------------------------------------


def test_sequential_write_then_read() -> None:
    assert verdict(wr(0, 0, 1, "a"), rd(1, 2, 3, ("a", 5))) is Verdict.LINEARIZABLE
    assert verdict(rd(0, 0, 1, None), wr(0, 2, 3, "a"), rd(1, 4, 5, ("a", 5)),
                   wr(1, 6, 7, "b"), rd(0, 8, 9, ("b", 9))) is Verdict.LINEARIZABLE


def test_empty_history_and_reads_of_an_absent_key() -> None:
    assert check([]).ok
    assert verdict(rd(0, 0, 1, None), rd(1, 0.5, 2, None)) is Verdict.LINEARIZABLE


def test_stale_read_is_illegal() -> None:
    history = [wr(0, 0, 1, "a"), wr(0, 2, 3, "b"), rd(1, 4, 5, ("a", 5)),
               rd(2, 6, 7, ("b", 6))]
    report = check(history)
    assert report.verdict is Verdict.ILLEGAL
    assert "could not place" in report.keys["k"].reason


def test_lost_acknowledged_write_is_illegal() -> None:
    # the write was acknowledged, yet a later read finds the key absent
    assert verdict(wr(0, 0, 1, "a"), rd(1, 2, 3, None)) is Verdict.ILLEGAL
    # or finds the value it overwrote
    assert verdict(wr(0, 0, 1, "a"), rd(2, 1.5, 1.8, ("a", 3)), wr(1, 2, 3, "b"),
                   rd(1, 4, 5, ("a", 3))) is Verdict.ILLEGAL


def test_read_before_the_write_was_invoked_is_illegal() -> None:
    assert verdict(rd(0, 0, 1, ("a", 3)), wr(1, 2, 3, "a")) is Verdict.ILLEGAL


def test_cas_double_success_is_illegal() -> None:
    base = [wr(0, 0, 1, "a"), rd(1, 2, 3, ("a", 4)), rd(2, 2, 3, ("a", 4))]
    both = [*base, cas(1, 4, 6, 4, "b", True), cas(2, 4.5, 6.5, 4, "c", True)]
    assert verdict(*both) is Verdict.ILLEGAL
    one = [*base, cas(1, 4, 6, 4, "b", True), cas(2, 4.5, 6.5, 4, "c", False)]
    assert verdict(*one) is Verdict.LINEARIZABLE


def test_cas_must_fail_or_succeed_as_the_state_says() -> None:
    base = [wr(0, 0, 1, "a"), rd(1, 2, 3, ("a", 4))]
    # nothing changed the key since index 4 was read: the CAS cannot fail
    assert verdict(*base, cas(1, 4, 5, 4, "b", False)) is Verdict.ILLEGAL
    # a write in between makes the index stale: the CAS cannot succeed
    assert verdict(*base, wr(0, 3.5, 3.8, "x"), cas(1, 4, 5, 4, "b", True)) is Verdict.ILLEGAL
    # ... unless the write overlaps the CAS and can go after it
    assert verdict(*base, wr(0, 3.5, 4.5, "x"), cas(1, 4, 5, 4, "b", True)) is \
        Verdict.LINEARIZABLE
    # a failed CAS changes nothing
    assert verdict(*base, wr(0, 3.5, 3.8, "x"), cas(1, 4, 5, 4, "b", False),
                   rd(1, 6, 7, ("x", 8))) is Verdict.LINEARIZABLE
    # a CAS's value read back, with a later index than the one it replaced
    assert verdict(*base, cas(1, 4, 5, 4, "b", True), rd(0, 6, 7, ("b", 9))) is \
        Verdict.LINEARIZABLE


def test_cas_zero_creates_only_an_absent_key() -> None:
    assert verdict(cas(0, 0, 2, 0, "a", True), cas(1, 1, 3, 0, "b", True)) is Verdict.ILLEGAL
    assert verdict(cas(0, 0, 2, 0, "a", True), cas(1, 1, 3, 0, "b", False),
                   rd(2, 4, 5, ("a", 3))) is Verdict.LINEARIZABLE
    assert verdict(wr(0, 0, 1, "a"), cas(1, 2, 3, 0, "b", True)) is Verdict.ILLEGAL
    assert verdict(cas(0, 0, 1, 0, "a", False)) is Verdict.ILLEGAL


def test_concurrent_writes_allow_either_order() -> None:
    writes = [wr(0, 0, 10, "a"), wr(1, 1, 9, "b")]
    assert verdict(*writes, rd(2, 11, 12, ("a", 5))) is Verdict.LINEARIZABLE
    assert verdict(*writes, rd(2, 11, 12, ("b", 5))) is Verdict.LINEARIZABLE
    # reads inside the writes' intervals may see b, then a
    assert verdict(*writes, rd(2, 2, 3, ("b", 4)), rd(2, 4, 5, ("a", 6))) is \
        Verdict.LINEARIZABLE
    # but a, b, a needs a to be written twice
    assert verdict(*writes, rd(2, 2, 3, ("a", 4)), rd(2, 4, 5, ("b", 6)),
                   rd(2, 6, 7, ("a", 4))) is Verdict.ILLEGAL
    # once both writes returned the value is fixed
    assert verdict(*writes, rd(2, 11, 12, ("a", 5)), rd(3, 13, 14, ("b", 4))) is \
        Verdict.ILLEGAL


def test_modify_indexes_grow_along_the_order() -> None:
    # b was written after a returned, so it cannot carry a lower ModifyIndex
    assert verdict(wr(0, 0, 1, "a"), wr(0, 2, 3, "b"), rd(1, 0.5, 0.9, ("a", 10)),
                   rd(1, 4, 5, ("b", 7))) is Verdict.ILLEGAL
    # concurrent writes may take effect in the order of their indexes
    assert verdict(wr(0, 0, 3, "a"), wr(1, 1, 2, "b"), rd(1, 4, 5, ("a", 10)),
                   rd(2, 1.5, 1.8, ("b", 7))) is Verdict.LINEARIZABLE


def test_contradictions_among_reads_are_illegal() -> None:
    report = check([rd(0, 0, 1, ("ghost", 3))])
    assert report.verdict is Verdict.ILLEGAL
    assert "never written" in report.keys["k"].reason
    report = check([wr(0, 0, 1, "a"), rd(1, 2, 3, ("a", 3)), rd(1, 4, 5, ("a", 4))])
    assert "read at ModifyIndex 3 and 4" in report.keys["k"].reason
    report = check([wr(0, 0, 1, "a"), wr(0, 2, 3, "b"), rd(1, 1.5, 1.6, ("a", 3)),
                    rd(1, 4, 5, ("b", 3))])
    assert "ModifyIndex 3 read with values" in report.keys["k"].reason


def test_unknown_write_may_take_effect_late_or_never() -> None:
    lost = wr(0, 0, INF, "a")
    assert verdict(lost, rd(1, 5, 6, ("a", 3))) is Verdict.LINEARIZABLE
    assert verdict(lost, rd(1, 5, 6, None)) is Verdict.LINEARIZABLE
    assert verdict(lost, rd(1, 5, 6, None), rd(1, 7, 8, ("a", 3))) is Verdict.LINEARIZABLE
    # once seen it stays (nothing else was written)
    assert verdict(lost, rd(1, 5, 6, ("a", 3)), rd(1, 7, 8, None)) is Verdict.ILLEGAL
    # and it cannot take effect before it was invoked
    assert verdict(rd(1, 0, 1, ("a", 3)), wr(0, 2, INF, "a")) is Verdict.ILLEGAL
    # a later acknowledged write may still be overwritten by the late one
    assert verdict(lost, wr(1, 1, 2, "b"), rd(2, 3, 4, ("b", 4)),
                   rd(2, 5, 6, ("a", 5))) is Verdict.LINEARIZABLE
    # unless the indexes say the late one came first
    assert verdict(lost, wr(1, 1, 2, "b"), rd(2, 3, 4, ("b", 4)),
                   rd(2, 5, 6, ("a", 3))) is Verdict.ILLEGAL


def test_unknown_cas_may_or_may_not_have_written() -> None:
    base = [wr(0, 0, 1, "a"), rd(1, 2, 3, ("a", 4)), cas(1, 4, INF, 4, "b", None)]
    assert verdict(*base, rd(2, 5, 6, ("a", 4))) is Verdict.LINEARIZABLE
    assert verdict(*base, rd(2, 5, 6, ("b", 7))) is Verdict.LINEARIZABLE
    assert verdict(*base, rd(2, 5, 6, ("b", 7)), rd(2, 7, 8, ("a", 4))) is Verdict.ILLEGAL
    # its value cannot appear when its index was already stale
    assert verdict(*base[:2], wr(0, 3.5, 3.8, "x"), base[2],
                   rd(2, 5, 6, ("b", 7))) is Verdict.ILLEGAL
    # an unknown CAS can explain a failed one: it took the index first
    assert verdict(*base, cas(2, 4.5, 5, 4, "c", False)) is Verdict.LINEARIZABLE


def test_cas_on_an_index_no_read_saw_may_go_either_way() -> None:
    # the current value's index is unknown too: the history cannot tell whether they match
    assert verdict(wr(0, 0, 1, "a"), cas(1, 2, 3, 17, "b", True)) is Verdict.LINEARIZABLE
    assert verdict(wr(0, 0, 1, "a"), cas(1, 2, 3, 17, "b", False)) is Verdict.LINEARIZABLE
    # when the current value's index is known and differs, it cannot succeed
    assert verdict(wr(0, 0, 1, "a"), rd(1, 1.5, 1.8, ("a", 5)),
                   cas(1, 2, 3, 17, "b", True)) is Verdict.ILLEGAL


def test_keys_are_checked_apart() -> None:
    report = check([wr(0, 0, 1, "a", key="x"), rd(1, 2, 3, ("a", 3), key="x"),
                    wr(0, 0, 1, "a", key="y"), rd(1, 2, 3, None, key="y")])
    assert report.keys["x"].verdict is Verdict.LINEARIZABLE
    assert report.keys["y"].verdict is Verdict.ILLEGAL
    assert report.verdict is Verdict.ILLEGAL
    assert "y: illegal" in report.describe()


def test_the_search_is_bounded() -> None:
    # many concurrent writes none of which is read: every order has to be ruled out
    ops = [wr(p, 0, 100, f"v{p}") for p in range(30)]
    ops.append(rd(99, 101, 102, ("nope", 1)))
    ops.append(wr(98, 0, 0.5, "nope"))
    ops.append(rd(97, 0.6, 0.7, ("nope", 1)))
    ops.append(rd(97, 0.8, 0.9, ("v0", 2)))
    ops.append(rd(97, 0.95, 0.99, ("nope", 1)))
    started = time.monotonic()
    report = check(ops, max_states=5000)
    assert time.monotonic() - started < 10
    assert report.verdict is Verdict.UNKNOWN
    assert "search stopped" in report.keys["k"].reason


# -- random histories from a real register ---------------------------------------------------


class Register:
    """Consul's KV entries, one Raft index per write."""

    def __init__(self) -> None:
        self.index = 0
        self.keys: dict[str, tuple[str, int]] = {}

    def apply(self, op: Op) -> object:
        current = self.keys.get(op.key)
        if op.kind is Kind.READ:
            return current
        if op.kind is Kind.CAS and (current[1] if current else 0) != op.expect:
            return False
        self.index += 1
        assert op.value is not None
        self.keys[op.key] = (op.value, self.index)
        return True


def random_history(rng: random.Random, processes: int, per_process: int,
                   keys: list[str], unknown_rate: float = 0.05) -> list[Op]:
    """Each process runs its operations one after another; each takes effect at a random
    moment inside its interval (an unknown one: later, possibly after its process moved on,
    or never). The register runs them in the order they take effect."""
    ops: list[Op] = []
    points: list[tuple[float, int]] = []
    for p in range(processes):
        t = rng.random()
        for _ in range(per_process):
            call = t
            ret = call + rng.expovariate(2.0)
            kind = rng.choice([Kind.READ, Kind.READ, Kind.WRITE, Kind.CAS])
            op = Op(p, kind, rng.choice(keys), call, ret)
            if kind is not Kind.READ:
                op.value = f"p{p}-{len(ops)}"
            unknown = kind is not Kind.READ and rng.random() < unknown_rate
            if unknown:
                op.ret = INF
                if rng.random() < 0.6:
                    points.append((rng.uniform(call, ret + 3.0), len(ops)))
            else:
                points.append((rng.uniform(call, ret), len(ops)))
            ops.append(op)
            t = ret + rng.expovariate(4.0)
    register = Register()
    last_read: dict[tuple[int, str], int] = {}
    applied: set[int] = set()
    for _, i in sorted(points):
        op = ops[i]
        applied.add(i)
        if op.kind is Kind.CAS:
            # the index its process read last (its earlier operations took effect already)
            op.expect = last_read.get((op.process, op.key), 0)
        result = register.apply(op)
        if op.kind is Kind.READ:
            last_read[(op.process, op.key)] = result[1] if isinstance(result, tuple) else 0
        if op.known:
            op.result = result
    for i, op in enumerate(ops):
        if op.kind is Kind.CAS and i not in applied:
            # never took effect: any index will do
            op.expect = last_read.get((op.process, op.key), 0)
    return ops


@pytest.mark.parametrize("seed", range(12))
def test_random_register_histories_are_linearizable(seed: int) -> None:
    rng = random.Random(seed)
    history = random_history(rng, processes=rng.randint(2, 8), per_process=60,
                             keys=["a", "b", "c"])
    report = check(history)
    assert report.verdict is Verdict.LINEARIZABLE, report.describe()


def _stale_read_mutation(history: list[Op]) -> list[Op] | None:
    """Make a read that started after a write of its key returned answer a value older than
    that write: illegal in every order, since indexes grow along it."""
    facts = IndexFacts(history)
    for i, read in enumerate(history):
        if read.kind is not Kind.READ or not read.known or read.result is None:
            continue
        assert isinstance(read.result, tuple)
        value, index = read.result
        older = [(v, ix) for (k, v), ix in facts.index_of.items()
                 if k == read.key and ix < index]
        writer = [w for w in history if w.key == read.key and w.value == value and w.known
                  and w.ret < read.call]
        if older and writer:
            mutated = list(history)
            mutated[i] = replace(read, result=max(older, key=lambda p: p[1]))
            return mutated
    return None


@pytest.mark.parametrize("seed", range(8))
def test_stale_read_mutation_is_caught(seed: int) -> None:
    rng = random.Random(100 + seed)
    history = random_history(rng, processes=4, per_process=50, keys=["a", "b"])
    mutated = _stale_read_mutation(history)
    assert mutated is not None
    report = check(mutated, facts=IndexFacts(history))
    assert report.verdict is Verdict.ILLEGAL, report.describe()


def test_random_mutations_mostly_fail() -> None:
    rng = random.Random(7)
    caught = total = 0
    for _ in range(40):
        history = random_history(rng, processes=4, per_process=40, keys=["a", "b"])
        facts = IndexFacts(history)
        mutable = [i for i, op in enumerate(history)
                   if op.known and (op.kind is Kind.CAS or
                                    (op.kind is Kind.READ and op.result is not None))]
        i = rng.choice(mutable)
        op = history[i]
        if op.kind is Kind.CAS:
            changed = replace(op, result=not op.result)
        else:
            pairs = [(v, ix) for (k, v), ix in facts.index_of.items()
                     if k == op.key and (v, ix) != op.result]
            if not pairs:
                continue
            changed = replace(op, result=rng.choice(pairs))
        mutated = [*history[:i], changed, *history[i + 1:]]
        total += 1
        caught += check(mutated, facts=facts).verdict is Verdict.ILLEGAL
    assert total >= 30
    assert caught >= 0.7 * total, (caught, total)


def test_a_few_thousand_operations_check_quickly() -> None:
    rng = random.Random(42)
    history = random_history(rng, processes=10, per_process=400, keys=["a", "b", "c", "d"],
                             unknown_rate=0.03)
    started = time.monotonic()
    report = check(history)
    took = time.monotonic() - started
    assert report.verdict is Verdict.LINEARIZABLE, report.describe()
    assert took < 60, report.describe()
    print(f"\n{len(history)} ops checked in {took:.2f}s\n{report.describe()}")

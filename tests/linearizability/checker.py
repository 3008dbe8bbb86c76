"""A linearizability checker for histories of Consul KV operations (Wing & Gong's search with
Lowe's memoization, as Porcupine and Knossos's "wgl" checker do it).

A history is a list of `Op`s: reads, writes and check-and-set writes on keys, each with the
monotonic times it was invoked and answered. The checker asks whether the operations can be
put in one order that (1) respects real time: an operation that returned before another was
invoked comes first, and (2) is a legal sequence for a register per key.

The register is Consul's KV entry as a client sees it. A write stores a value; every write a
Raft cluster applies gets the log index it was applied at as its ModifyIndex; a read answers
the value with that ModifyIndex, or nothing (404); `PUT ?cas=N` writes only when the key's
ModifyIndex is N, `cas=0` only when the key does not exist. Writes never repeat a value, so
the reads tell which ModifyIndex each value got. The model uses that twice:

* a CAS's expected ModifyIndex names the value it expects (the one a read saw at that index);
* ModifyIndexes grow along the order writes took effect (the Raft log's order), so the model
  also refuses an order that puts a write with a higher index before one with a lower index.

Operations whose outcome is unknown (a timeout, a broken connection, an error after the
request may have been applied) may have taken effect at any moment after their invocation, or
never: their return time is infinite and their answer unconstrained. "Never" is the same as
"after everything else", so the search succeeds once every operation with a known outcome is
placed. Operations that surely did not take effect are left out by the caller.

Keys are independent registers, so each key's operations are checked on their own
(P-compositionality), which keeps the search small. The search is bounded: past `max_states`
explored configurations (or `deadline` seconds) a key's verdict is UNKNOWN instead of a hang.
Memoized configurations are kept small: operations are numbered by invocation, so the set of
placed ones is mostly a prefix, stored as its length plus the few bits after it.
"""

from __future__ import annotations

import enum
import itertools
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: a key's model state: (the value, or None when absent; the highest ModifyIndex placed yet)
State = tuple[str | None, int]

INITIAL: State = (None, 0)


class Kind(enum.Enum):
    READ = "read"
    WRITE = "write"
    CAS = "cas"


class Verdict(enum.Enum):
    LINEARIZABLE = "linearizable"
    ILLEGAL = "illegal"
    #: the search hit its bound before deciding
    UNKNOWN = "unknown"


@dataclass(slots=True)
class Op:
    """One operation of the history.

    `result` is, for a read, None (the key was absent) or (value, ModifyIndex); for a CAS,
    whether it wrote; for a write, True. With `ret == math.inf` the outcome is unknown and
    `result` is ignored."""

    process: int
    kind: Kind
    key: str
    call: float
    ret: float
    #: the value a write or CAS stores
    value: str | None = None
    #: a CAS's expected ModifyIndex (0: only if the key is absent)
    expect: int = 0
    result: object = None

    @property
    def known(self) -> bool:
        return self.ret != math.inf

    def __str__(self) -> str:
        if self.kind is Kind.READ:
            what = f"read {self.key}"
        elif self.kind is Kind.WRITE:
            what = f"write {self.key}={self.value}"
        else:
            what = f"cas {self.key}={self.value} if index={self.expect}"
        answer = repr(self.result) if self.known else "unknown"
        return (f"p{self.process} {what} -> {answer} "
                f"[{self.call:.6f}, {self.ret if self.known else 'inf'}]")


@dataclass
class KeyReport:
    key: str
    verdict: Verdict
    ops: int
    unknown_ops: int
    states: int
    seconds: float
    #: why the key is not linearizable (or why the search gave up)
    reason: str = ""


@dataclass
class Report:
    keys: dict[str, KeyReport] = field(default_factory=dict)

    @property
    def verdict(self) -> Verdict:
        verdicts = {k.verdict for k in self.keys.values()}
        if Verdict.ILLEGAL in verdicts:
            return Verdict.ILLEGAL
        if Verdict.UNKNOWN in verdicts:
            return Verdict.UNKNOWN
        return Verdict.LINEARIZABLE

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.LINEARIZABLE

    def describe(self) -> str:
        lines = [f"history is {self.verdict.value}"]
        for k in sorted(self.keys.values(), key=lambda r: r.key):
            lines.append(f"  {k.key}: {k.verdict.value}, {k.ops} ops ({k.unknown_ops} unknown), "
                         f"{k.states} states, {k.seconds:.3f}s")
            if k.reason:
                lines.extend("    " + line for line in k.reason.splitlines())
        return "\n".join(lines)


class IndexFacts:
    """What the reads tell of ModifyIndexes: the index each value got, the value at each index.

    Built from every read of the history (also reads left out of the linearizability check,
    such as default-consistency reads: they still show which index a value was written at)."""

    def __init__(self, ops: Iterable[Op]) -> None:
        self.index_of: dict[tuple[str, str], int] = {}
        self.value_at: dict[tuple[str, int], str] = {}
        #: (key, what is wrong) for every contradiction among the reads
        self.problems: list[tuple[str, str]] = []
        written: set[tuple[str, str]] = set()
        reads: list[Op] = []
        for op in ops:
            if op.kind is Kind.READ:
                if op.known and op.result is not None:
                    reads.append(op)
            elif op.value is not None:
                written.add((op.key, op.value))
        for op in reads:
            value, index = _read_result(op)
            if (op.key, value) not in written:
                self.problems.append((op.key, f"read of a value never written: {op}"))
                continue
            seen = self.index_of.setdefault((op.key, value), index)
            if seen != index:
                self.problems.append((op.key, f"value {value!r} read at ModifyIndex {seen} "
                                              f"and {index}: {op}"))
            other = self.value_at.setdefault((op.key, index), value)
            if other != value:
                self.problems.append((op.key, f"ModifyIndex {index} read with values "
                                              f"{other!r} and {value!r}: {op}"))


def _read_result(op: Op) -> tuple[str, int]:
    result = op.result
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ValueError(f"a read's result is None or (value, ModifyIndex): {op}")
    value, index = result
    return str(value), int(index)


class _KeyModel:
    """The register of one key, with what the reads told of its ModifyIndexes."""

    def __init__(self, key: str, facts: IndexFacts) -> None:
        self.key = key
        self.facts = facts

    def _written(self, state: State, value: str | None) -> State | None:
        """The state after `value` is written, or None when its ModifyIndex is known and not
        above the highest one already placed (writes take effect in log order)."""
        index = self.facts.index_of.get((self.key, value or ""))
        if index is None:
            return (value, state[1])
        if index <= state[1]:
            return None
        return (value, index)

    def _matches(self, state: State, expect: int) -> bool | None:
        """Whether a CAS expecting ModifyIndex `expect` finds it; None when the history cannot
        tell (no read ever saw that index and the current value's index is unknown too)."""
        current = state[0]
        if expect == 0:
            return current is None
        if current is None:
            return False
        expected = self.facts.value_at.get((self.key, expect))
        if expected is not None:
            return current == expected
        if (self.key, current) in self.facts.index_of:
            return False
        return None

    def step(self, state: State, op: Op) -> tuple[State, ...]:
        """The states `op` can leave when placed at `state` (none: it cannot be placed)."""
        if op.kind is Kind.READ:
            if op.result is None:
                return (state,) if state[0] is None else ()
            value, _ = _read_result(op)
            return (state,) if state[0] == value else ()
        if op.kind is Kind.WRITE:
            after = self._written(state, op.value)
            return () if after is None else (after,)
        match = self._matches(state, op.expect)
        wrote = self._written(state, op.value) if match is not False else None
        if not op.known:
            # it either found the index and wrote, or did not and changed nothing
            outcomes: list[State] = []
            if wrote is not None:
                outcomes.append(wrote)
            if match is not True:
                outcomes.append(state)
            return tuple(outcomes)
        if op.result:
            return () if wrote is None else (wrote,)
        return () if match is True else (state,)


def check(history: Sequence[Op], *, max_states: int = 500_000,
          deadline: float = 120.0, facts: IndexFacts | None = None) -> Report:
    """Check `history` key by key. `facts` defaults to what the history's own reads tell."""
    facts = facts if facts is not None else IndexFacts(history)
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in history:
        by_key[op.key].append(op)
    report = Report()
    for key, ops in by_key.items():
        problems = [text for k, text in facts.problems if k == key]
        if problems:
            unknown = sum(not op.known for op in ops)
            report.keys[key] = KeyReport(key, Verdict.ILLEGAL, len(ops), unknown, 0, 0.0,
                                         "\n".join(problems))
            continue
        report.keys[key] = check_key(key, ops, facts, max_states=max_states,
                                     deadline=deadline)
    return report


def check_key(key: str, ops: Sequence[Op], facts: IndexFacts, *, max_states: int,
              deadline: float) -> KeyReport:
    """WGL over one key's operations."""
    started = time.monotonic()
    model = _KeyModel(key, facts)
    # numbered by invocation, the placed operations are mostly a prefix of them: the cache
    # keeps the prefix as its length and only the bits after it
    ops = sorted(ops, key=lambda op: op.call)
    n = len(ops)
    unknown = sum(not op.known for op in ops)
    # the entries: call of op i is 2i, its return 2i+1; sorted by time, calls first on ties
    order = sorted(range(2 * n), key=lambda e: (
        ops[e >> 1].ret if e & 1 else ops[e >> 1].call, e & 1))
    end = 2 * n
    head = 2 * n + 1
    nxt = [0] * (2 * n + 2)
    prv = [0] * (2 * n + 2)
    chain = [head, *order, end]
    for a, b in itertools.pairwise(chain):
        nxt[a] = b
        prv[b] = a

    def lift(call: int) -> None:
        for e in (call, call + 1):
            nxt[prv[e]] = nxt[e]
            prv[nxt[e]] = prv[e]

    def unlift(call: int) -> None:
        for e in (call + 1, call):
            prv[nxt[e]] = e
            nxt[prv[e]] = e

    state = INITIAL
    linearized = 0
    remaining = n - unknown
    stack: list[tuple[int, State, int]] = []
    cache: set[tuple[int, int, State]] = set()
    entry = nxt[head]
    start = 0
    deepest = -1
    stuck = ""
    while remaining:
        if entry & 1 == 0:
            op = ops[entry >> 1]
            bit = 1 << (entry >> 1)
            successors = model.step(state, op)
            chosen = -1
            placed = linearized | bit
            prefix = ((placed + 1) & ~placed).bit_length() - 1
            window = placed >> prefix
            for k in range(start, len(successors)):
                candidate = (prefix, window, successors[k])
                if candidate not in cache:
                    cache.add(candidate)
                    chosen = k
                    break
            start = 0
            if chosen < 0:
                entry = nxt[entry]
                continue
            stack.append((entry, state, chosen))
            state = successors[chosen]
            linearized |= bit
            if op.known:
                remaining -= 1
            lift(entry)
            entry = nxt[head]
            if len(cache) > max_states or time.monotonic() - started > deadline:
                return KeyReport(key, Verdict.UNKNOWN, n, unknown, len(cache),
                                 time.monotonic() - started,
                                 f"search stopped after {len(cache)} states")
        else:
            # an operation returned before it could be placed: undo the last placement
            if len(stack) > deepest:
                deepest = len(stack)
                stuck = _stuck(ops, entry >> 1, state, stack)
            if not stack:
                return KeyReport(key, Verdict.ILLEGAL, n, unknown, len(cache),
                                 time.monotonic() - started, stuck)
            entry, state, chosen = stack.pop()
            linearized &= ~(1 << (entry >> 1))
            if ops[entry >> 1].known:
                remaining += 1
            unlift(entry)
            start = chosen + 1
    return KeyReport(key, Verdict.LINEARIZABLE, n, unknown, len(cache),
                     time.monotonic() - started)


def _stuck(ops: Sequence[Op], index: int, state: State,
           stack: list[tuple[int, State, int]]) -> str:
    """The deepest dead end: the operation that could not be placed, the state the longest
    partial order reached, and the last operations of that order."""
    placed = [str(ops[e >> 1]) for e, _, _ in stack[-8:]]
    return "\n".join([
        f"longest legal order placed {len(stack)} ops, then could not place:",
        f"  {ops[index]}",
        f"at state value={state[0]!r} highest ModifyIndex={state[1]}; last placed:",
        *("  " + p for p in placed),
    ])

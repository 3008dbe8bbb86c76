"""The broadcast queue against a plain model of memberlist's GetBroadcasts, on random
operation sequences: the same messages in the same order, the same finished callbacks.

The queue finds each message by bisection; the model sorts everything and scans it, which is
slow but obviously memberlist's rule (fewest transmissions first, then longest, then newest;
take each message that still fits).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from proconsul.gossip.config import retransmit_limit
from proconsul.gossip.queue import Broadcast, TransmitLimitedQueue


@dataclass
class ModelItem:
    message: bytes
    name: str | None
    id: int
    transmits: int = 0


class Model:
    def __init__(self, mult: int, nodes: int) -> None:
        self.limit = retransmit_limit(mult, nodes)
        self.items: list[ModelItem] = []
        self.next_id = 0
        self.finished: list[int] = []

    def queue(self, message: bytes, name: str | None) -> None:
        if name is not None:
            for old in [i for i in self.items if i.name == name]:
                self.items.remove(old)
                self.finished.append(old.id)
        self.next_id += 1
        self.items.append(ModelItem(message, name, self.next_id))

    def ordered(self) -> list[ModelItem]:
        return sorted(self.items, key=lambda i: (i.transmits, -len(i.message), -i.id))

    def get(self, overhead: int, limit: int) -> list[bytes]:
        used = 0
        picked = []
        for item in self.ordered():
            if limit - used - overhead <= 0:
                break
            if used + len(item.message) + overhead <= limit:
                used += len(item.message) + overhead
                picked.append(item)
        for item in picked:
            item.transmits += 1
            if item.transmits >= self.limit:
                self.items.remove(item)
                self.finished.append(item.id)
        return [i.message for i in picked]

    def prune(self, keep: int) -> None:
        while len(self.items) > keep:
            last = self.ordered()[-1]
            self.items.remove(last)
            self.finished.append(last.id)


Op = tuple[str, int, int | str | None]
ops = st.lists(st.one_of(
    st.tuples(st.just("queue"), st.integers(1, 120),
              st.one_of(st.none(), st.sampled_from("abcdef"))),
    st.tuples(st.just("get"), st.integers(0, 4), st.integers(0, 400)),
    st.tuples(st.just("prune"), st.integers(0, 20), st.none()),
), max_size=80)


@settings(max_examples=300, deadline=None)
@given(ops=ops, mult=st.integers(1, 4), nodes=st.integers(1, 500))
def test_queue_matches_the_model(ops: list[Op], mult: int,
                                 nodes: int) -> None:
    model = Model(mult, nodes)
    queue = TransmitLimitedQueue(mult, lambda: nodes)
    finished: list[int] = []
    counter = 0
    for op, a, b in ops:
        if op == "queue":
            counter += 1
            ident = counter
            # the length says which message it is; the counter makes it unique
            message = ident.to_bytes(4, "big") + b"x" * a
            model.queue(message, b if isinstance(b, str) else None)
            queue.queue(Broadcast(message, b if isinstance(b, str) else None,
                                  functools.partial(finished.append, ident)))
        elif op == "get":
            assert isinstance(b, int)
            assert queue.get_broadcasts(a, b) == model.get(a, b)
        else:
            model.prune(a)
            queue.prune(a)
        assert len(queue) == len(model.items)
        assert sorted(finished) == sorted(model.finished)


def test_a_full_packet_takes_the_largest_that_fit_tier_by_tier() -> None:
    q = TransmitLimitedQueue(4, lambda: 9)
    for size in (300, 200, 100, 50):
        q.queue(Broadcast(b"n" * size))
    # room for 300 + 100 with 2 bytes each: 200 does not fit after 300, 50 does not after 100
    assert [len(m) for m in q.get_broadcasts(2, 404)] == [300, 100]
    # the two never sent come first, then the sent ones, largest first
    assert [len(m) for m in q.get_broadcasts(2, 1000)] == [200, 50, 300, 100]


def test_a_long_queue_fills_a_small_room_with_the_newest() -> None:
    q = TransmitLimitedQueue(4, lambda: 400)
    for i in range(2000):
        q.queue(Broadcast(f"alive node-{i:04d}".encode() + b"." * 44, f"node-{i}"))
    got = q.get_broadcasts(2, 200)
    assert [m[:15] for m in got] == [b"alive node-1999", b"alive node-1998",
                                     b"alive node-1997"]
    assert len(q) == 2000

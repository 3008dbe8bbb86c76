"""Lamport clock rules as serf's lamport.go: increment returns the new value, witnessing a
value at or past ours moves us one beyond it, older values change nothing."""

from __future__ import annotations

from proconsul.gossip.serf.lamport import LamportClock


def test_serf_lamport_sequence() -> None:
    clock = LamportClock()
    assert clock.time() == 0
    assert clock.increment() == 1
    assert clock.time() == 1
    clock.witness(41)
    assert clock.time() == 42
    clock.witness(41)
    assert clock.time() == 42
    clock.witness(30)
    assert clock.time() == 42


def test_witness_of_equal_value_moves_past_it() -> None:
    clock = LamportClock(5)
    clock.witness(5)
    assert clock.time() == 6


def test_push_pull_merge_witnesses_value_minus_one() -> None:
    """A push/pull carries the sender's *next* time: witnessing LTime - 1 leaves us at the
    sender's value, so our next stamp cannot collide with anything it already sent."""
    ours, theirs = LamportClock(1), LamportClock(1)
    for _ in range(4):
        theirs.increment()
    ours.witness(theirs.time() - 1)
    assert ours.time() == theirs.time() == 5


def test_uint64_wraps_as_go() -> None:
    top = (1 << 64) - 1
    clock = LamportClock(top)
    assert clock.increment() == 0
    clock = LamportClock(3)
    clock.witness(top)
    assert clock.time() == 0
    assert repr(LamportClock(7)) == "LamportClock(7)"
